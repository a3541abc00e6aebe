use crate::measure::Progress;
use crate::quant::QuantConfig;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The ONNX model to quantize (never modified).
    model: PathBuf,
    /// Where to write the quantized model.
    #[arg(short, long)]
    output: PathBuf,
    #[command(flatten)]
    checks: super::Checks,
    #[command(flatten)]
    config: QuantConfig,
    /// Static and dynamic: the weights' integer type. auto: uint8 (zero point 128) where ONNX
    /// Runtime runs on an x86 CPU without VNNI — its AVX2 u8×s8 kernels add pairs of products
    /// in 16 bits and saturate on int8 weights, its u8×u8 kernels do not — else int8 (the fast
    /// one on VNNI and ARM, and in tract).
    #[arg(long, value_enum, default_value_t = WeightType::Auto)]
    weight_type: WeightType,
    /// Calibration data: required by static mode; with weights mode, measures each layer's
    /// sensitivity and keeps the worst float (see --target-sqnr).
    #[arg(long)]
    calib: Option<PathBuf>,
}

impl Args {
    fn config(&self) -> QuantConfig {
        let unsigned_weights = match self.weight_type {
            WeightType::Auto => None,
            WeightType::Int8 => Some(false),
            WeightType::Uint8 => Some(true),
        };
        QuantConfig { unsigned_weights, ..self.config.clone() }
    }
}

impl Args {
    pub(super) fn output(&self) -> &std::path::Path {
        &self.output
    }
}

pub fn run(a: Args, progress: &dyn Progress) -> anyhow::Result<()> {
    let config = a.config();
    config.validate()?;
    crate::onnx::ensure_not_input(&a.model, &a.output)?;
    let original = crate::onnx::load(&a.model)?;
    let data = super::Opened::new(a.calib.as_ref(), a.checks.val.as_ref())?;
    data.job(&original, &a.model, &a.output, a.checks.job()?).quantize(&config, progress)?;
    Ok(())
}

/// `--weight-type`: which integer type static and dynamic weights take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum WeightType {
    /// uint8 where ONNX Runtime's int8 kernels saturate (x86 without VNNI), else int8.
    Auto,
    /// Signed, zero point 0.
    Int8,
    /// Unsigned, zero point 128.
    Uint8,
}
