use prunq::eval::Progress;
use prunq::quant::calibrate::Method;
use prunq::quant::{Activations, QuantConfig, QuantMode, Rounding, WeightFormat, WeightScheme};
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
    #[arg(long, value_enum, default_value = "weights")]
    mode: QuantMode,
    /// Weight bits: 8 (per channel by default) or 4 (blocks by default); with --scheme log2, 2 to 8.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(2..=8))]
    bits: u32,
    /// Weights and static modes: how weights are rounded onto the grid: to nearest (`rtn`), or by
    /// GPTQ (`gptq`: column by column, each column's error compensated by the columns not yet
    /// rounded, from the layer's input statistics on --calib; Conv/Gemm/MatMul weights, int8 per
    /// channel or int4 blocks).
    #[arg(long, value_enum, default_value = "rtn")]
    algorithm: Rounding,
    /// Weights mode: what values weights take.
    #[arg(long, value_enum, default_value = "linear")]
    scheme: WeightScheme,
    /// Weights mode: each weight an index into a table of K values (2–256) fitted by k-means —
    /// one table per output channel when K ≤ 16 (two indices per byte), per tensor otherwise (see
    /// --per-tensor). With --calib, values are weighted by their input feature's activation energy.
    #[arg(long, value_parser = clap::value_parser!(u16).range(2..=256))]
    codebook: Option<u16>,
    /// Block size along the input features (4-bit default 32; 8-bit default none = per channel).
    #[arg(long)]
    block_size: Option<usize>,
    /// One scale per weight tensor instead of per channel or block.
    #[arg(long)]
    per_tensor: bool,
    /// How weight-only weights are written: `portable` (int8 + Cast/Mul, int4 packed in uint8 and
    /// unpacked by plain ops: ONNX Runtime and tract fold them at load, so the model runs at float
    /// speed) or `qdq` (DequantizeLinear on every weight, INT4 at opset 21: for toolchains that read
    /// QDQ weights; ONNX Runtime dequantizes on every run).
    #[arg(long, value_enum, default_value = "portable", alias = "int4-format")]
    weight_format: WeightFormat,
    /// Weights use 7 of their 8 bits (as onnxruntime.quantization's reduce_range). Rarely
    /// needed: where ONNX Runtime's int8 kernels saturate, uint8 weights are the default.
    #[arg(long)]
    reduce_range: bool,
    /// Static and dynamic: the weights' integer type. auto: uint8 (zero point 128) where ONNX
    /// Runtime runs on an x86 CPU without VNNI — its AVX2 u8×s8 kernels add pairs of products
    /// in 16 bits and saturate on int8 weights, its u8×u8 kernels do not — else int8 (the fast
    /// one on VNNI and ARM, and in tract).
    #[arg(long, value_enum, default_value_t = WeightType::Auto)]
    weight_type: WeightType,
    /// Affine (with zero point) weights instead of symmetric.
    #[arg(long)]
    asymmetric: bool,
    /// Leave these nodes (by name) or op types in float. Repeatable.
    #[arg(long)]
    exclude: Vec<String>,
    /// Calibration data: required by static mode; with weights mode, measures each layer's
    /// sensitivity and keeps the worst float (see --target-sqnr).
    #[arg(long)]
    calib: Option<PathBuf>,
    /// How activation ranges are chosen from the calibration data.
    #[arg(long, value_enum, default_value = "auto")]
    method: Method,
    /// The percentile kept on each side with `--method percentile`.
    #[arg(long, default_value_t = 99.999)]
    percentile: f64,
    /// Activation type: u8 (affine, the default: the fast kernels in ONNX Runtime), s8 (symmetric),
    /// or 16-bit s16 (symmetric) / u16 (affine) for accuracy over speed (opset 21; ONNX Runtime only).
    #[arg(long, value_enum, default_value = "u8")]
    activations: Activations,
    /// With calibration data, the most sensitive layers stay float until the output SQNR on
    /// it is estimated to reach this many dB (0 turns the fallback off).
    #[arg(long, default_value_t = prunq::quant::DEFAULT_FALLBACK_SQNR_DB)]
    target_sqnr: f64,
    /// Weights mode under 8 bits (--bits 4, --codebook up to 16, log2 under 8 bits), with --calib:
    /// the layers the fallback keeps get int8 weights per channel instead of float (mixed precision
    /// per layer: smaller than float fallback at nearly its quality).
    #[arg(long)]
    fallback_int8: bool,
    /// Quantize only these op types (static mode). Repeatable.
    #[arg(long)]
    op_types: Vec<String>,
    /// fp16 mode: make the graph's inputs and outputs float16 too.
    #[arg(long)]
    fp16_io: bool,
    /// Write weights to `<OUT>.<hash>.data` beside the model (ONNX external data). Done anyway
    /// when the model would pass protobuf's 2 GB limit.
    #[arg(long)]
    external_data: bool,
    /// Static mode: correct each Conv/Gemm bias for its layer's mean output drift on the
    /// calibration data, layer by layer (kept only when the output SQNR on held-out calibration
    /// rows improves). Most useful with --target-sqnr 0 (everything int8).
    #[arg(long)]
    bias_correction: bool,
    /// Static mode: SmoothQuant with this α (0–1, typically 0.5): each MatMul's activation divided
    /// per channel by s = max|X|^α / max|W|^(1−α) and its weight rows multiplied, so activation
    /// outliers move into the per-channel-quantized weights.
    #[arg(long)]
    smooth: Option<prunq::quant::Alpha>,
    /// Do not fold the graph's shape computations into constants first (done by default, and
    /// kept only when the outputs are unchanged).
    #[arg(long)]
    no_simplify: bool,
}

impl Args {
    fn config(&self) -> QuantConfig {
        QuantConfig {
            mode: self.mode,
            bits: self.bits,
            algorithm: self.algorithm,
            scheme: self.scheme,
            codebook: self.codebook,
            block_size: self.block_size,
            per_tensor: self.per_tensor,
            weight_format: self.weight_format,
            reduce_range: self.reduce_range,
            unsigned_weights: match self.weight_type {
                WeightType::Auto => None,
                WeightType::Int8 => Some(false),
                WeightType::Uint8 => Some(true),
            },
            asymmetric: self.asymmetric,
            exclude: self.exclude.clone(),
            method: self.method,
            percentile: self.percentile,
            activations: self.activations,
            target_sqnr: self.target_sqnr,
            fallback_int8: self.fallback_int8,
            op_types: self.op_types.clone(),
            fp16_io: self.fp16_io,
            bias_correction: self.bias_correction,
            smooth: self.smooth,
            keep_faster: !self.checks.no_latency_check,
            simplify: !self.no_simplify,
            decided: None,
        }
    }
}

pub fn run(a: Args, progress: &dyn Progress) -> anyhow::Result<()> {
    let config = a.config();
    config.validate()?;
    if a.algorithm == Rounding::Gptq && a.calib.is_none() {
        return Err(prunq::Error::Usage("--algorithm gptq needs --calib DATA".into()).into());
    }
    if a.mode == QuantMode::Static && a.calib.is_none() {
        return Err(prunq::Error::Usage("--mode static needs --calib DATA".into()).into());
    }
    prunq::onnx::ensure_not_input(&a.model, &a.output)?;
    let original = prunq::onnx::load(&a.model)?;
    let mut model = original.clone();
    // fp16 checks its ranges on the data it will be judged on.
    let data_path = if a.mode == QuantMode::Fp16 { a.checks.data(a.calib.as_ref()) } else { a.calib.as_deref() };
    let data = data_path.map(super::open_data).transpose()?;
    let mut report = prunq::quant::quantize(&mut model, &config, data.as_ref(), progress)?;
    super::print_simplified(&report.simplified);
    report.size_before = std::fs::metadata(&a.model)?.len();
    let nothing_done = report.tensors.is_empty() && a.mode != QuantMode::Fp16;
    if let Some(said) = super::untouched_subgraphs(&model, "quantized", nothing_done)? {
        report.notes.push(said);
    }
    report.output_check = Some(super::check_before_write(&original, &model, a.checks.data(a.calib.as_ref()))?);
    let external = if a.external_data { prunq::onnx::ExternalMode::Always } else { Default::default() };
    prunq::onnx::save(&model, &a.output, &prunq::onnx::SaveOptions { external })?;
    report.size_after = std::fs::metadata(&a.output)?.len();
    println!(
        "{} tensors quantized, {} left float; {} → {} ({:.2}×); opset {} → {}",
        report.tensors.len(),
        report.skipped.len(),
        prunq::report::table::bytes(report.size_before),
        prunq::report::table::bytes(report.size_after),
        report.size_after as f64 / report.size_before as f64,
        report.opset_before,
        report.opset_after
    );
    for note in &report.notes {
        println!("note: {note}");
    }
    // The report always carries a comparison: on --val, else on the calibration data.
    let judge_on = a.checks.val.as_ref().or(if a.checks.report.is_some() { a.calib.as_ref() } else { None });
    report.comparison = super::validate(&original, &model, judge_on.map(PathBuf::as_path), progress)?;
    report.runtime = super::runtime_used(a.calib.is_some() || judge_on.is_some())?;
    if matches!(a.mode, QuantMode::Static | QuantMode::Dynamic)
        && a.weight_type == WeightType::Auto
        && config.uses_unsigned_weights()
    {
        println!(
            "note: weights are uint8 (zero point 128): this x86 CPU has no VNNI, and ONNX Runtime's u8×s8 \
             kernels here add pairs of products in 16 bits, which saturate on int8 weights \
             (--weight-type int8 for VNNI or ARM targets)"
        );
    }
    let timing_data = a.checks.data(a.calib.as_ref());
    report.latency = super::check_latency(&original, &model, timing_data, a.checks.no_latency_check, progress)?;
    let about = super::Reported {
        command: format!("quantize --mode {}", report.mode),
        input: (&a.model, &original),
        output: (&a.output, &model),
        data: timing_data,
    };
    super::write_report(a.checks.report.as_deref(), about, &report)
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
