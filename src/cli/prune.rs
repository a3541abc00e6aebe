use prunq::eval::Progress;
use prunq::prune::structured::{Amount, Importance, StructuredReport};
use prunq::prune::{Method, PruneConfig, PruneReport, Pruned, Scope};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The ONNX model to prune (never modified).
    model: PathBuf,
    /// Where to write the pruned model.
    #[arg(short, long)]
    output: PathBuf,
    #[command(flatten)]
    checks: super::Checks,
    /// Unstructured: fraction of each layer's weights to zero (0.5 = half).
    #[arg(long, default_value_t = 0.5)]
    sparsity: f64,
    /// Unstructured: how weights are scored: magnitude |w|, wanda |w|·‖x‖ or sparsegpt (both need --calib).
    #[arg(long, value_enum, default_value = "magnitude")]
    method: Method,
    /// `layer`: the same share of every layer (or channel group); `global`: one ranking across all.
    #[arg(long, value_enum, default_value = "layer")]
    scope: Scope,
    /// Unstructured: N:M sparsity along the inputs, e.g. 2:4 (overrides --sparsity).
    #[arg(long, value_parser = parse_pattern)]
    pattern: Option<(usize, usize)>,
    /// Calibration data (for wanda, sparsegpt, activation importance and the structured repair).
    #[arg(long)]
    calib: Option<PathBuf>,
    /// Leave these nodes (by name) or op types alone. Repeatable.
    #[arg(long)]
    exclude: Vec<String>,
    /// Unstructured: also prune the first and the last layer (kept dense by default).
    #[arg(long)]
    prune_ends: bool,
    /// Unstructured: also prune grouped (depthwise) convs, kept dense by default: a handful of
    /// weights per channel, each carrying a whole channel.
    #[arg(long)]
    prune_grouped: bool,
    /// Unstructured: write pruned weights as ONNX sparse_initializer where that is smaller
    /// (past 2/3 zeros for float32). ONNX Runtime reads them; tract does not.
    #[arg(long, conflicts_with = "structured")]
    sparse_storage: bool,
    /// Remove whole channels (conv filters, FC neurons) instead of zeroing weights.
    #[arg(long)]
    structured: bool,
    /// Structured: fraction of channels to remove (default 0.3 when no other amount is given).
    #[arg(long, conflicts_with_all = ["threshold", "target_macs", "target_params"])]
    ratio: Option<f64>,
    /// Structured: remove channels scoring below this fraction of their group's best.
    #[arg(long, conflicts_with_all = ["target_macs", "target_params"])]
    threshold: Option<f64>,
    /// Structured: remove at least this fraction of the model's MACs (0.5 halves them).
    #[arg(long, conflicts_with = "target_params")]
    target_macs: Option<f64>,
    /// Structured: remove at least this fraction of the model's parameters.
    #[arg(long)]
    target_params: Option<f64>,
    /// Structured: how channels are scored.
    #[arg(long, value_enum, default_value = "l1")]
    importance: Importance,
    /// Structured: keep channel counts multiples of N. 16 is the channel block of ONNX Runtime's
    /// AVX-512 conv kernels (and a multiple of AVX2's 8); other counts fall off the fast path.
    #[arg(long, default_value_t = 16)]
    round_to: usize,
    /// Structured: never keep fewer channels in a group (default: --round-to).
    #[arg(long)]
    min_channels: Option<usize>,
    /// Structured: do not re-fit the layers that lost inputs (done by default with --calib).
    #[arg(long)]
    no_repair: bool,
    /// Input shape for dynamic dims, e.g. `x=1x3x48x320` (others default to 1).
    #[arg(long, value_parser = super::parse_shape)]
    shape: Vec<(String, Vec<usize>)>,
    /// Do not fold the graph's shape computations into constants (done by default, before
    /// unstructured pruning and after structured pruning, and kept only when the outputs are
    /// unchanged).
    #[arg(long)]
    no_simplify: bool,
}

fn parse_pattern(s: &str) -> Result<(usize, usize), String> {
    let (n, m) = s.split_once(':').ok_or("expected N:M, e.g. 2:4")?;
    let n = n.trim().parse().map_err(|_| format!("'{n}' is not a number"))?;
    let m = m.trim().parse().map_err(|_| format!("'{m}' is not a number"))?;
    Ok((n, m))
}

impl Args {
    fn config(&self) -> PruneConfig {
        PruneConfig {
            structured: self.structured,
            sparsity: self.sparsity,
            method: self.method,
            scope: self.scope,
            pattern: self.pattern,
            exclude: self.exclude.clone(),
            prune_ends: self.prune_ends,
            prune_grouped: self.prune_grouped,
            sparse_storage: self.sparse_storage,
            ratio: self.ratio,
            threshold: self.threshold,
            target_macs: self.target_macs,
            target_params: self.target_params,
            importance: self.importance,
            round_to: self.round_to,
            min_channels: self.min_channels,
            repair: !self.no_repair,
            shape: self.shape.iter().cloned().collect(),
            simplify: !self.no_simplify,
        }
    }
}

pub fn run(a: Args, progress: &dyn Progress) -> anyhow::Result<()> {
    prunq::onnx::ensure_not_input(&a.model, &a.output)?;
    let original = prunq::onnx::load(&a.model)?;
    let calib = a.calib.as_ref().map(super::open_data).transpose()?;
    let config = a.config();
    let mut model = original.clone();
    match prunq::prune::prune(&mut model, &config, calib.as_ref(), progress)? {
        Pruned::Sparse(report) => sparse(a, original, model, *report, progress),
        Pruned::Structured(report, unrepaired) => {
            structured(a, &config, original, model, *report, unrepaired.map(|m| *m), progress)
        }
    }
}

fn sparse(
    a: Args,
    original: prunq::ir::Model,
    model: prunq::ir::Model,
    mut report: PruneReport,
    progress: &dyn Progress,
) -> anyhow::Result<()> {
    super::print_simplified(&report.simplified);
    if let Some(said) = super::untouched_subgraphs(&model, "pruned", report.layers.is_empty())? {
        report.notes.push(said);
    }
    report.output_check = Some(super::check_before_write(&original, &model, a.checks.data(a.calib.as_ref()))?);
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
    if a.sparse_storage {
        let (sparse, dense): (Vec<_>, Vec<_>) = report.storage.iter().partition(|r| r.sparse);
        let saved: usize = sparse.iter().map(|r| r.dense_bytes - r.sparse_bytes).sum();
        println!(
            "{} weights stored sparse ({} bytes saved; ONNX Runtime reads them, tract does not), {} kept dense",
            sparse.len(),
            saved,
            dense.len()
        );
    }
    report.comparison = super::validate(&original, &model, a.checks.val.as_deref(), progress)?;
    report.runtime = super::runtime_used(a.calib.is_some() || a.checks.val.is_some())?;
    let timing_data = a.checks.data(a.calib.as_ref());
    report.latency = super::check_latency(&original, &model, timing_data, a.checks.no_latency_check, progress)?;
    let about = super::Reported {
        command: "prune".into(),
        input: (&a.model, &original),
        output: (&a.output, &model),
        data: timing_data,
    };
    super::write_report(a.checks.report.as_deref(), about, &report)
}

fn structured(
    a: Args,
    config: &PruneConfig,
    original: prunq::ir::Model,
    model: prunq::ir::Model,
    mut report: StructuredReport,
    unrepaired: Option<prunq::ir::Model>,
    progress: &dyn Progress,
) -> anyhow::Result<()> {
    super::print_simplified(&report.simplified);
    if let Some(said) = super::untouched_subgraphs(&model, "pruned", false)? {
        report.notes.push(said);
    }
    report.output_check = Some(super::check_before_write(&original, &model, a.checks.data(a.calib.as_ref()))?);
    prunq::onnx::save(&model, &a.output, &Default::default())?;
    print!("{}", prunq::report::text::structured(&report));
    let prunable = report.groups.iter().filter(|g| g.blocked.is_empty()).count();
    if prunable > 0
        && report.groups.iter().all(|g| g.removed.is_empty())
        && matches!(config.amount()?, Amount::Ratio(_))
    {
        println!(
            "note: nothing removed: groups keep a multiple of {} channels (--round-to) and at least {} \
             (--min-channels), and each prunable group rounds back to its size at this ratio",
            a.round_to.max(1),
            a.min_channels.unwrap_or(a.round_to)
        );
    }
    if let Some(before_repair) = &unrepaired {
        if a.checks.val.is_some() {
            println!("\nwithout repair:");
            report.comparison_without_repair =
                super::validate(&original, before_repair, a.checks.val.as_deref(), progress)?;
            println!("\nwith repair:");
        }
    }
    report.comparison = super::validate(&original, &model, a.checks.val.as_deref(), progress)?;
    report.runtime = super::runtime_used(a.calib.is_some() || a.checks.val.is_some())?;
    let timing_data = a.checks.data(a.calib.as_ref());
    report.latency = super::check_latency(&original, &model, timing_data, a.checks.no_latency_check, progress)?;
    let about = super::Reported {
        command: "prune --structured".into(),
        input: (&a.model, &original),
        output: (&a.output, &model),
        data: timing_data,
    };
    super::write_report(a.checks.report.as_deref(), about, &report)
}
