use prunq::eval::{compare, Progress, RunOptions};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The reference model (usually the original).
    reference: PathBuf,
    /// The model to judge against it.
    candidate: PathBuf,
    /// Input data: `.npz` (arrays named like the model's inputs) or `.npy`.
    #[arg(long)]
    data: PathBuf,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args, progress: &dyn Progress) -> anyhow::Result<()> {
    let reference = prunq::onnx::load(&a.reference)?;
    let candidate = prunq::onnx::load(&a.candidate)?;
    let data = super::open_data(&a.data)?;
    let options = RunOptions { batch_size: a.batch_size, ..Default::default() };
    let report = compare(&reference, &candidate, &data, &options, progress)?;
    if a.json {
        super::print_json(&report)
    } else {
        print!("{}", prunq::report::text::compare(&report));
        Ok(())
    }
}
