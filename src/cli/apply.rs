use crate::measure::Progress;
use crate::optimize::Recipe;
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

impl Args {
    pub(super) fn output(&self) -> &std::path::Path {
        &self.output
    }
}

pub fn run(a: Args, progress: &dyn Progress) -> anyhow::Result<()> {
    let recipe = Recipe::read(&a.recipe)?;
    crate::onnx::ensure_not_input(&a.model, &a.output)?;
    let original = crate::onnx::load(&a.model)?;
    let data = super::Opened::new(a.calib.as_ref(), a.checks.val.as_ref())?;
    let job = data.job(&original, &a.model, &a.output, a.checks.job()?);
    job.apply(&recipe, progress).map_err(|e| match e {
        crate::Error::Usage(m) => crate::Error::Usage(format!("{}: {m}", a.recipe.display())),
        e => e,
    })?;
    Ok(())
}
