use crate::eval::{compare, compare_layers, RunOptions};
use crate::measure::Progress;
use crate::runtime::ModelFile;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The reference model (usually the original).
    reference: PathBuf,
    /// The model to judge against it (ONNX, or a `.tflite` run in LiteRT).
    candidate: PathBuf,
    /// Input data: `.npz` (arrays named like the model's inputs) or `.npy`.
    #[arg(long)]
    data: PathBuf,
    /// Rows run at once.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Compare every intermediate tensor the two models share by name (worst first), not only
    /// the outputs: where the error starts.
    #[arg(long)]
    per_layer: bool,
    /// With --per-layer: how many of the worst tensors the table shows (JSON has all).
    #[arg(long, default_value_t = 20)]
    top: usize,
}

pub fn run(a: Args, runtime: super::RuntimeArg, progress: &dyn Progress) -> anyhow::Result<()> {
    let data = super::open_data(&a.data)?;
    let reference = super::model_in(ModelFile::open(&a.reference)?, runtime, &data)?;
    let candidate = super::model_in(ModelFile::open(&a.candidate)?, runtime, &data)?;
    let options = RunOptions { batch_size: a.batch_size, ..Default::default() };
    if a.per_layer {
        let (ModelFile::Onnx(reference), ModelFile::Onnx(candidate)) = (&reference, &candidate) else {
            return Err(crate::Error::Usage("--per-layer compares the tensors of two ONNX models".into()).into());
        };
        let report = compare_layers(reference, candidate, &data, &options, progress)?;
        if a.json {
            return super::print_json(&report);
        }
        print!("{}", crate::report::text::compare_layers(&report, a.top));
        return Ok(());
    }
    let report = compare(&reference, &candidate, &data, &options, progress)?;
    if a.json {
        super::print_json(&report)
    } else {
        print!("{}", crate::report::text::compare(&report));
        Ok(())
    }
}
