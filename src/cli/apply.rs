use prunq::eval::Progress;
use prunq::optimize::{Recipe, StepReport};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The recipe: TOML `[[step]]` tables, each `kind = "prune"` or `"quantize"` with the
    /// options of that command (as `prunq optimize --save-recipe` writes them).
    recipe: PathBuf,
    /// The ONNX model (never modified).
    model: PathBuf,
    /// Where to write the result.
    #[arg(short, long)]
    output: PathBuf,
    #[command(flatten)]
    checks: super::Checks,
    /// Calibration data for the steps that need it (the same the recipe was made with, for the
    /// same bytes).
    #[arg(long)]
    calib: Option<PathBuf>,
}

#[derive(serde::Serialize)]
struct ApplyReport {
    recipe: String,
    steps: Vec<StepReport>,
    comparison: Option<prunq::eval::CompareReport>,
    latency: Option<prunq::eval::LatencyCheck>,
    output_check: Option<prunq::eval::OutputCheck>,
}

pub fn run(a: Args, progress: &dyn Progress) -> anyhow::Result<()> {
    let recipe = Recipe::read(&a.recipe)?;
    prunq::onnx::ensure_not_input(&a.model, &a.output)?;
    if recipe.needs_data() && a.calib.is_none() {
        return Err(prunq::Error::Usage(format!(
            "{}: a step needs calibration data: give --calib DATA",
            a.recipe.display()
        ))
        .into());
    }
    let original = prunq::onnx::load(&a.model)?;
    let calib = a.calib.as_ref().map(super::open_data).transpose()?;
    let mut model = original.clone();
    let steps = prunq::optimize::apply(&mut model, &recipe, calib.as_ref(), progress)?;
    let output_check = Some(super::check_before_write(&original, &model, a.checks.data(a.calib.as_ref()))?);
    prunq::onnx::save(&model, &a.output, &Default::default())?;
    println!("applied {} step(s): {}", recipe.steps.len(), recipe.label());
    let comparison = super::validate(&original, &model, a.checks.val.as_deref(), progress)?;
    let timing_data = a.checks.data(a.calib.as_ref());
    let latency = super::check_latency(&original, &model, timing_data, a.checks.no_latency_check, progress)?;
    let report = ApplyReport { recipe: recipe.label(), steps, comparison, latency, output_check };
    let about = super::Reported {
        command: "apply".into(),
        input: (&a.model, &original),
        output: (&a.output, &model),
        data: timing_data,
    };
    super::write_report(a.checks.report.as_deref(), about, &report)
}
