use prunq::eval::Progress;
use prunq::quant::calibrate::Method;
use prunq::quant::{
    convert_fp16, quantize_codebook, quantize_dynamic, quantize_dynamic_with_fallback, quantize_static,
    quantize_weights, quantize_weights_gptq, quantize_weights_with_fallback, CodebookOptions, DynamicOptions,
    Fp16Options, QType, QuantReport, StaticOptions, Table, WeightFormat, WeightOptions,
};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Mode {
    /// Weight-only: low-bit constant weights + DequantizeLinear; no data needed.
    Weights,
    /// MatMul/Gemm in integers with activations quantized at run time; no data needed.
    Dynamic,
    /// Weights and activations in int8, activation ranges calibrated on --calib; QDQ format.
    Static,
    /// Every float32 constant and computation in float16; float32 inputs and outputs kept.
    Fp16,
}

/// How weights are rounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Algorithm {
    /// Round to nearest (keeping each channel's or block's sum).
    Rtn,
    /// GPTQ on the calibration data.
    Gptq,
}

/// What values weights take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scheme {
    /// Integers times a scale (per tensor, channel or block).
    Linear,
    /// 0 and ±scale·2^-e: sign and exponent in --bits (2–8) bits, a scale per output channel
    /// (for shift-only hardware); stored as table indices like --codebook.
    Log2,
}

#[derive(clap::Args)]
pub struct Args {
    /// The ONNX model to quantize (never modified).
    model: PathBuf,
    /// Where to write the quantized model.
    #[arg(short, long)]
    output: PathBuf,
    #[arg(long, value_enum, default_value = "weights")]
    mode: Mode,
    /// Weight bits: 8 (per channel by default) or 4 (blocks by default); with --scheme log2, 2 to 8.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(2..=8))]
    bits: u32,
    /// Weights mode: how weights are rounded onto the grid: to nearest (`rtn`), or by GPTQ
    /// (`gptq`: column by column, each column's error compensated by the columns not yet rounded,
    /// from the layer's input statistics on --calib; Conv/Gemm/MatMul weights, int8 per channel or
    /// int4 blocks).
    #[arg(long, value_enum, default_value = "rtn")]
    algorithm: Algorithm,
    /// Weights mode: what values weights take.
    #[arg(long, value_enum, default_value = "linear")]
    scheme: Scheme,
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
    /// Weights use 7 of their 8 bits (as onnxruntime.quantization's reduce_range): for x86 CPUs
    /// without VNNI, where ONNX Runtime's AVX2 u8×s8 kernels add pairs of products in 16 bits
    /// and full-range weights can saturate. Costs accuracy; not needed on VNNI or ARM.
    #[arg(long)]
    reduce_range: bool,
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
    #[arg(long, value_enum, default_value = "min-max")]
    method: Method,
    /// The percentile kept on each side with `--method percentile`.
    #[arg(long, default_value_t = 99.999)]
    percentile: f64,
    /// Activation type: u8 (affine, the default: the fast kernels in ONNX Runtime), s8 (symmetric),
    /// or 16-bit s16 (symmetric) / u16 (affine) for accuracy over speed (opset 21; ONNX Runtime only).
    #[arg(long, default_value = "u8", value_parser = ["u8", "s8", "u16", "s16"])]
    activations: String,
    /// With calibration data, the most sensitive layers stay float until the output SQNR on
    /// it is estimated to reach this many dB (0 turns the fallback off).
    #[arg(long, default_value_t = prunq::quant::DEFAULT_FALLBACK_SQNR_DB)]
    target_sqnr: f64,
    /// Quantize only these op types (static mode). Repeatable.
    #[arg(long)]
    op_types: Vec<String>,
    /// fp16 mode: make the graph's inputs and outputs float16 too.
    #[arg(long)]
    fp16_io: bool,
    /// Data to compare the result with the original on (printed and reported; the report falls
    /// back to the calibration data).
    #[arg(long)]
    val: Option<PathBuf>,
    /// Write weights to `<OUT>.<hash>.data` beside the model (ONNX external data). Done anyway
    /// when the model would pass protobuf's 2 GB limit.
    #[arg(long)]
    external_data: bool,
    /// Write what was done (per tensor, skipped, sensitivity, sizes, comparison, speed): JSON, or a
    /// self-contained HTML page with plots when the name ends in .html.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Static mode: correct each Conv/Gemm bias for its layer's mean output drift on the
    /// calibration data, layer by layer (kept only when the output SQNR on held-out calibration
    /// rows improves). Most useful with --target-sqnr 0 (everything int8).
    #[arg(long)]
    bias_correction: bool,
    /// Static mode: SmoothQuant with this α (0–1, typically 0.5): each MatMul's activation divided
    /// per channel by s = max|X|^α / max|W|^(1−α) and its weight rows multiplied, so activation
    /// outliers move into the per-channel-quantized weights.
    #[arg(long)]
    smooth: Option<f64>,
    /// Do not time the output against the input (done by default: batch 1, one thread, in the
    /// runtime chosen by --runtime, on --val or --calib data or else inputs of ones).
    #[arg(long)]
    no_latency_check: bool,
    /// Do not fold the graph's shape computations into constants first (done by default, and
    /// kept only when the outputs are unchanged).
    #[arg(long)]
    no_simplify: bool,
}

pub fn run(a: Args, progress: &dyn Progress) -> anyhow::Result<()> {
    let nonlinear = a.codebook.is_some() || a.scheme == Scheme::Log2;
    if a.bits != 4 && a.bits != 8 && a.scheme == Scheme::Linear {
        return Err(prunq::Error::Usage(format!("--bits {} is not supported: use 4 or 8", a.bits)).into());
    }
    if nonlinear && !matches!(a.mode, Mode::Weights) {
        return Err(
            prunq::Error::Usage("--codebook and --scheme log2 are weight formats: use --mode weights".into()).into()
        );
    }
    if a.algorithm == Algorithm::Gptq && (a.calib.is_none() || nonlinear || !matches!(a.mode, Mode::Weights)) {
        return Err(prunq::Error::Usage(
            "--algorithm gptq rounds linear weights from the layers' inputs: use --mode weights with --calib".into(),
        )
        .into());
    }
    if a.codebook.is_some() && a.scheme == Scheme::Log2 {
        return Err(
            prunq::Error::Usage("--codebook fits its values, --scheme log2 fixes them: choose one".into()).into()
        );
    }
    prunq::onnx::ensure_not_input(&a.model, &a.output)?;
    let original = prunq::onnx::load(&a.model)?;
    let mut model = original.clone();
    let mut report = QuantReport {
        mode: format!("{:?}", a.mode).to_lowercase(),
        opset_before: original.onnx_opset().unwrap_or(0),
        size_before: std::fs::metadata(&a.model)?.len(),
        ..Default::default()
    };
    report.simplified = super::simplify(&mut model, a.no_simplify)?;
    match a.mode {
        Mode::Weights if nonlinear => {
            let options = CodebookOptions {
                table: match a.codebook {
                    Some(k) => Table::KMeans(k as usize),
                    None => Table::Log2(a.bits),
                },
                per_tensor: a.per_tensor.then_some(true),
                exclude: a.exclude.clone(),
                ..Default::default()
            };
            let data = a.calib.as_ref().map(super::open_data).transpose()?;
            quantize_codebook(&mut model, &options, data.as_ref(), a.target_sqnr, &mut report, progress)?
        }
        Mode::Weights => {
            let four = a.bits == 4;
            let options = WeightOptions {
                qtype: match (four, a.asymmetric) {
                    (true, false) => QType::Int4,
                    (true, true) => QType::UInt4,
                    (false, false) => QType::Int8,
                    (false, true) => QType::UInt8,
                },
                symmetric: !a.asymmetric,
                block_size: a.block_size.or(if four && !a.per_tensor { Some(32) } else { None }),
                per_tensor: a.per_tensor,
                exclude: a.exclude.clone(),
                format: a.weight_format,
                reduce_range: a.reduce_range,
                ..Default::default()
            };
            match (&a.calib, a.target_sqnr > 0.0) {
                (Some(calib), _) if a.algorithm == Algorithm::Gptq => {
                    let data = super::open_data(calib)?;
                    quantize_weights_gptq(&mut model, &options, &data, a.target_sqnr, &mut report, progress)?
                }
                (Some(calib), true) => {
                    let data = super::open_data(calib)?;
                    quantize_weights_with_fallback(&mut model, &options, &data, a.target_sqnr, &mut report, progress)?
                }
                _ => quantize_weights(&mut model, &options, &mut report)?,
            }
        }
        Mode::Static => {
            let calib =
                a.calib.as_ref().ok_or_else(|| prunq::Error::Usage("--mode static needs --calib DATA".into()))?;
            let data = super::open_data(calib)?;
            let (activation_type, symmetric) = match a.activations.as_str() {
                "s8" => (QType::Int8, true),
                "s16" => (QType::Int16, true),
                "u16" => (QType::UInt16, false),
                _ => (QType::UInt8, false),
            };
            let options = StaticOptions {
                method: a.method,
                percentile: a.percentile,
                activation_type,
                symmetric_activations: symmetric,
                exclude: a.exclude.clone(),
                op_types: a.op_types.clone(),
                fallback_sqnr_db: (a.target_sqnr > 0.0).then_some(a.target_sqnr),
                reduce_range: a.reduce_range,
                keep_faster: !a.no_latency_check,
                bias_correction: a.bias_correction,
                smooth: a.smooth,
                ..Default::default()
            };
            quantize_static(&mut model, &data, &options, &mut report, progress)?;
        }
        Mode::Fp16 => {
            let data = a.val.as_ref().or(a.calib.as_ref()).map(super::open_data).transpose()?;
            let options = Fp16Options { keep_io_types: !a.fp16_io, backends: super::check_backends()? };
            convert_fp16(&mut model, &options, data.as_ref(), &mut report)?
        }
        Mode::Dynamic => {
            let options = DynamicOptions {
                exclude: a.exclude.clone(),
                per_tensor: a.per_tensor,
                only_nodes: None,
                reduce_range: a.reduce_range,
            };
            match (&a.calib, a.target_sqnr > 0.0) {
                (Some(calib), true) => {
                    let data = super::open_data(calib)?;
                    quantize_dynamic_with_fallback(&mut model, &options, &data, a.target_sqnr, &mut report, progress)?
                }
                _ => quantize_dynamic(&mut model, &options, &mut report)?,
            }
        }
    }
    let nothing_done = report.tensors.is_empty() && !matches!(a.mode, Mode::Fp16);
    if let Some(said) = super::untouched_subgraphs(&model, "quantized", nothing_done)? {
        report.notes.push(said);
    }
    report.output_check = Some(super::check_before_write(&original, &model, a.val.as_ref().or(a.calib.as_ref()))?);
    let external = if a.external_data { prunq::onnx::ExternalMode::Always } else { Default::default() };
    prunq::onnx::save(&model, &a.output, &prunq::onnx::SaveOptions { external })?;
    report.opset_after = model.onnx_opset().unwrap_or(0);
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
    let judge_on = a.val.as_ref().or(if a.report.is_some() { a.calib.as_ref() } else { None });
    report.comparison = super::validate(&original, &model, judge_on.map(PathBuf::as_path), progress)?;
    report.runtime = super::runtime_used(a.calib.is_some() || judge_on.is_some())?;
    let integer_kernels = matches!(a.mode, Mode::Static | Mode::Dynamic);
    // About ONNX Runtime's kernels: not said when tract did the measuring.
    let in_tract = report.runtime.as_ref().is_some_and(|r| r.backend == prunq::runtime::Backend::Tract);
    if integer_kernels && !in_tract && !a.reduce_range && prunq::runtime::int8_pairs_saturate() {
        println!(
            "note: this x86 CPU has no VNNI: ONNX Runtime's u8×s8 kernels here add pairs of products in 16 bits \
             and can saturate on full-range weights (measured in ONNX Runtime, such layers were kept float); \
             --reduce-range avoids it on such CPUs"
        );
    }
    let timing_data = a.val.as_ref().or(a.calib.as_ref()).map(PathBuf::as_path);
    report.latency = super::check_latency(&original, &model, timing_data, a.no_latency_check, progress)?;
    let about = super::Reported {
        command: format!("quantize --mode {}", report.mode),
        input: (&a.model, &original),
        output: (&a.output, &model),
        data: timing_data,
    };
    super::write_report(a.report.as_deref(), about, &report)
}
