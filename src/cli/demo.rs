//! `prunq demo`: the library's demo job (`job::demo`) in a temporary folder, or in `--out`.

use crate::measure::Progress;

#[derive(clap::Args)]
pub struct Args {
    /// Keep the demo's files in this folder instead of a temporary one.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

pub fn run(a: Args, progress: &dyn Progress) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = a.out.unwrap_or_else(|| tmp.path().to_path_buf());
    Ok(crate::job::demo(&dir, super::DATA_OPTIONS.get().unwrap_or(&Default::default()), progress)?)
}
