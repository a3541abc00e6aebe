use crate::measure::Progress;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The ONNX model (never modified).
    model: PathBuf,
    /// Where to write the LiteRT model (`.tflite`).
    #[arg(short, long)]
    output: PathBuf,
    /// The size of an input with dynamic dims other than the batch, e.g. `x=1,3,48,320`
    /// (the batch is 1 by default: LiteRT models have fixed sizes).
    #[arg(long = "input-shape", value_parser = crate::analysis::parse_shape)]
    input_shape: Vec<(String, Vec<usize>)>,
    /// Store weights as float16: half the size, computed in float32 (or float16 where the CPU
    /// has it).
    #[arg(long)]
    fp16: bool,
    /// Fully connected layers with float activations and int8 weights (weight-only quantization,
    /// static's float fallback) compute in float from their weights, not in LiteRT's
    /// dynamic-range form (activations quantized per row at run time).
    #[arg(long)]
    no_dynamic_range: bool,
    /// Data to run the output beside the original on before it is written (else --calib,
    /// else made-up inputs).
    #[arg(long)]
    val: Option<PathBuf>,
    /// Data to run it on when there is no --val.
    #[arg(long)]
    calib: Option<PathBuf>,
    /// Write what was done and measured as JSON.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Freeze an input to a value first (NAME=VALUE, e.g. sr=16000; repeatable): each If it
    /// decides becomes the branch taken (LiteRT models are written without control flow).
    #[arg(long, value_name = "NAME=VALUE")]
    fix_input: Vec<crate::transform::FixedInput>,
}

pub fn run(a: Args, progress: &dyn Progress) -> anyhow::Result<()> {
    crate::onnx::ensure_not_input(&a.model, &a.output)?;
    let original = crate::onnx::load(&a.model)?;
    let data = super::Opened::new(a.calib.as_ref(), a.val.as_ref())?;
    let checks = crate::job::Checks { report: a.report.clone(), fix_inputs: a.fix_input, ..Default::default() };
    let job = data.job(&original, &a.model, &a.output, checks);
    let options = crate::litert::ConvertOptions {
        input_shapes: a.input_shape.into_iter().collect(),
        fp16: a.fp16,
        dynamic_range: !a.no_dynamic_range,
    };
    job.convert(&options, progress)?;
    Ok(())
}
