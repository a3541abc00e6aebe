use crate::measure::Progress;
use crate::prune::PruneConfig;
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
    #[command(flatten)]
    config: PruneConfig,
    /// Calibration data (for wanda, sparsegpt, activation importance and the structured repair).
    #[arg(long)]
    calib: Option<PathBuf>,
    /// Input shape for dynamic dims, e.g. `x=1x3x48x320` (others default to 1).
    #[arg(long, value_parser = crate::analysis::parse_shape)]
    shape: Vec<(String, Vec<usize>)>,
}

impl Args {
    fn config(&self) -> PruneConfig {
        PruneConfig { shape: self.shape.iter().cloned().collect(), ..self.config.clone() }
    }
}

impl Args {
    pub(super) fn output(&self) -> &std::path::Path {
        &self.output
    }
}

pub fn run(a: Args, progress: &dyn Progress) -> anyhow::Result<()> {
    crate::onnx::ensure_not_input(&a.model, &a.output)?;
    let original = crate::onnx::load(&a.model)?;
    let data = super::Opened::new(a.calib.as_ref(), a.checks.val.as_ref())?;
    data.job(&original, &a.model, &a.output, a.checks.job()?).prune(&a.config(), progress)?;
    Ok(())
}
