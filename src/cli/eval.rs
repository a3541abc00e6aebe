use crate::eval::{evaluate, RunOptions};
use crate::measure::Progress;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The model: ONNX, or a `.tflite` run in LiteRT.
    model: PathBuf,
    /// Input data: `.npz` (arrays named like the model's inputs) or `.npy`.
    #[arg(long)]
    data: PathBuf,
    /// The label array (default: `label`, `labels` or `y` if present).
    #[arg(long)]
    labels: Option<String>,
    /// Expected text, one line per sample: decode the output as CTC with the
    /// model's `character` metadata; report exact-line match and CER (lines
    /// compared with their ends trimmed).
    #[arg(long)]
    text: Option<PathBuf>,
    /// Rows run at once (the latency is per batch of this many).
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args, runtime: super::RuntimeArg, progress: &dyn Progress) -> anyhow::Result<()> {
    let data = super::open_data(&a.data)?;
    let model = super::model_in(crate::runtime::ModelFile::open(&a.model)?, runtime, &data)?;
    let texts = match &a.text {
        Some(p) => {
            Some(std::fs::read_to_string(p).map_err(|e| crate::Error::io(p, e))?.lines().map(str::to_string).collect())
        }
        None => None,
    };
    let options = RunOptions { batch_size: a.batch_size, labels: a.labels, texts };
    let report = evaluate(&model, &data, &options, progress)?;
    if a.json {
        super::print_json(&report)
    } else {
        print!("{}", crate::report::text::eval(&report));
        Ok(())
    }
}
