use prunq::eval::Progress;
use prunq::prune::{prune_sparse, Method, PruneReport, Scope, SparseOptions};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The ONNX model to prune (never modified).
    model: PathBuf,
    /// Where to write the pruned model.
    #[arg(short, long)]
    output: PathBuf,
    /// Fraction of each layer's weights to zero (0.5 = half).
    #[arg(long, default_value_t = 0.5)]
    sparsity: f64,
    /// How weights are scored: magnitude |w|, or wanda |w|·‖x‖ (needs --calib).
    #[arg(long, value_enum, default_value = "magnitude")]
    method: Method,
    /// `layer`: the same sparsity in every output row; `global`: one threshold over all layers.
    #[arg(long, value_enum, default_value = "layer")]
    scope: Scope,
    /// N:M structured sparsity along the inputs, e.g. 2:4 (overrides --sparsity).
    #[arg(long, value_parser = parse_pattern)]
    pattern: Option<(usize, usize)>,
    /// Calibration data (for --method wanda).
    #[arg(long)]
    calib: Option<PathBuf>,
    /// Leave these nodes (by name) or op types dense. Repeatable.
    #[arg(long)]
    exclude: Vec<String>,
    /// Also prune the first and the last layer (kept dense by default).
    #[arg(long)]
    prune_ends: bool,
    /// Data to compare the result with the original on (printed and reported).
    #[arg(long)]
    val: Option<PathBuf>,
    /// Write per-layer sparsity, what was skipped and the comparison as JSON.
    #[arg(long)]
    report: Option<PathBuf>,
}

fn parse_pattern(s: &str) -> Result<(usize, usize), String> {
    let (n, m) = s.split_once(':').ok_or("expected N:M, e.g. 2:4")?;
    let n = n.trim().parse().map_err(|_| format!("'{n}' is not a number"))?;
    let m = m.trim().parse().map_err(|_| format!("'{m}' is not a number"))?;
    Ok((n, m))
}

pub fn run(a: Args, progress: &dyn Progress) -> anyhow::Result<()> {
    prunq::onnx::ensure_not_input(&a.model, &a.output)?;
    let original = prunq::onnx::load(&a.model)?;
    let mut model = original.clone();
    let calib = a.calib.as_ref().map(prunq::data::Dataset::open).transpose()?;
    let options = SparseOptions {
        sparsity: a.sparsity,
        method: a.method,
        scope: a.scope,
        pattern: a.pattern,
        exclude: a.exclude.clone(),
        prune_ends: a.prune_ends,
        ..Default::default()
    };
    let mut report = PruneReport::default();
    prune_sparse(&mut model, &options, calib.as_ref(), &mut report, progress)?;
    prunq::onnx::save(&model, &a.output, &Default::default())?;
    println!(
        "{} layers pruned to {:.1} % sparsity overall, {} left dense",
        report.layers.len(),
        report.sparsity * 100.0,
        report.skipped.len()
    );
    for (node, why) in &report.skipped {
        println!("  dense: {node} ({why})");
    }
    report.comparison = super::validate(&original, &model, a.val.as_deref(), progress)?;
    super::write_report(a.report.as_deref(), &report)
}
