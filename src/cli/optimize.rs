use crate::measure::Progress;
use crate::optimize::{Budget, Metric, Objective, OptimizeConfig};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// The ONNX model (never modified).
    model: PathBuf,
    /// Where to write the best model found.
    #[arg(short, long)]
    output: PathBuf,
    /// Calibration data (static quantization, GPTQ, the structured repair).
    #[arg(long)]
    calib: PathBuf,
    /// Validation data every candidate is judged on.
    #[arg(long)]
    val: PathBuf,
    /// How candidates are judged (default: accuracy when --val has labels, exact-lines with
    /// --text, else top-1 agreement with the original; choose cosine for embeddings).
    #[arg(long, value_enum)]
    metric: Option<Metric>,
    /// Expected text of each validation sample, one a line (exact-lines, cer).
    #[arg(long)]
    text: Option<PathBuf>,
    /// The most quality may drop from the original's, in the metric's unit (points for
    /// percentages; default 1, or 0.01 for cosine).
    #[arg(long, conflicts_with = "min_quality")]
    max_drop: Option<f64>,
    /// The least quality a result may have (the most, for cer).
    #[arg(long)]
    min_quality: Option<f64>,
    /// What the winner is best at among those that keep the budget.
    #[arg(long, value_enum, default_value = "latency")]
    objective: Objective,
    /// No new candidate is started after this long (e.g. 90s, 10m, 1h); the best so far wins.
    #[arg(long, default_value = "10m", value_parser = crate::optimize::parse_duration)]
    time_budget: std::time::Duration,
    /// Write the search (every candidate, the Pareto front, the winner): JSON, or an HTML page
    /// with plots when the name ends in .html.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Write the winner's recipe (TOML) for `prunq apply`.
    #[arg(long)]
    save_recipe: Option<PathBuf>,
    /// Write weights to `<OUT>.<hash>.data` beside the model (ONNX external data). Done anyway
    /// when the model would pass protobuf's 2 GB limit.
    #[arg(long)]
    external_data: bool,
}

pub(super) fn read_texts(path: Option<&Path>) -> anyhow::Result<Option<Vec<String>>> {
    let Some(p) = path else { return Ok(None) };
    let text = std::fs::read_to_string(p).map_err(|e| crate::Error::io(p, e))?;
    Ok(Some(text.lines().map(str::to_string).collect()))
}

impl Args {
    pub(super) fn output(&self) -> &std::path::Path {
        &self.output
    }
}

pub fn run(a: Args, progress: &dyn Progress) -> anyhow::Result<()> {
    crate::onnx::ensure_not_input(&a.model, &a.output)?;
    let original = crate::onnx::load(&a.model)?;
    let (calib, val) = (super::open_data(&a.calib)?, super::open_data(&a.val)?);
    let texts = read_texts(a.text.as_deref())?;
    let metric = match a.metric {
        Some(m) => m,
        None => crate::job::default_metric(&original, &val, texts.is_some())?,
    };
    let data = super::Opened { calib: Some(calib), val: Some(val) };
    let budget = Budget::given(a.max_drop, a.min_quality)?.unwrap_or_else(|| crate::job::default_budget(metric));
    let config =
        OptimizeConfig { metric, budget, objective: a.objective, time_budget: a.time_budget, texts, litert: false };
    let checks = crate::job::Checks {
        latency: false,
        external_data: a.external_data,
        report: a.report.clone(),
        ..Default::default()
    };
    let job = data.job(&original, &a.model, &a.output, checks);
    job.optimize(&config, &crate::job::Announce(progress, metric), a.save_recipe.as_deref(), progress)?;
    Ok(())
}
