//! `quantize`: the one entry point of quantization. A [`QuantConfig`] says
//! everything `prunq quantize` can be told (its `Default` holds the documented
//! defaults); the passes below it keep their own option structs. Serializable,
//! so a recipe step is a `QuantConfig` written as TOML.

use super::calibrate::Method;
use super::{
    CodebookOptions, DynamicOptions, Fp16Options, QType, QuantReport, StaticOptions, Table, WeightFormat,
    WeightOptions, DEFAULT_FALLBACK_SQNR_DB,
};
use crate::data::Dataset;
use crate::ir::Model;
use crate::measure::Progress;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// What is quantized.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum QuantMode {
    /// Weight-only: low-bit constant weights, dequantized at load; no data needed.
    #[default]
    Weights,
    /// MatMul/Gemm in integers with activations quantized at run time.
    Dynamic,
    /// Weights and activations in int8, activation ranges calibrated (QDQ).
    Static,
    /// float16 constants and computations, float32 kept where float16 cannot hold the values.
    Fp16,
}

/// How linear weights are rounded onto their grid.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Rounding {
    /// To nearest, keeping each channel's or block's sum.
    #[default]
    Rtn,
    /// GPTQ on the calibration data.
    Gptq,
}

/// What values weights take.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum WeightScheme {
    /// Integers times a scale.
    #[default]
    Linear,
    /// 0 and ±scale·2^-e (sign and exponent in `bits`), a scale per output channel.
    Log2,
}

/// Static mode's activation type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Activations {
    /// uint8 affine: ONNX Runtime's fast kernels.
    #[default]
    U8,
    /// int8 symmetric.
    S8,
    /// uint16 affine (opset 21; accuracy over speed).
    U16,
    /// int16 symmetric (opset 21).
    S16,
}

/// Everything a quantization run can be told. Field names are `prunq quantize`'s
/// options (the CLI's flags are derived from this struct, help and defaults included);
/// in TOML they are written as the flags are (`target-sqnr = 0`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[serde(rename_all = "kebab-case", default, deny_unknown_fields)]
pub struct QuantConfig {
    /// What is quantized: weights only (no data needed), dynamic (MatMul/Gemm in integers,
    /// activations quantized at run time), static (activation ranges calibrated, QDQ) or fp16.
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = QuantConfig::default().mode))]
    pub mode: QuantMode,
    /// Weight bits: 8 (per channel by default) or 4 (blocks by default); with the log2 scheme, 2 to 8.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = QuantConfig::default().bits,
        value_parser = clap::value_parser!(u32).range(2..=8)))]
    pub bits: u32,
    /// Weights and static modes: how weights are rounded onto the grid: to nearest (`rtn`), or by
    /// GPTQ (`gptq`: column by column, each column's error compensated by the columns not yet
    /// rounded, from the layer's input statistics on the calibration data; Conv/Gemm/MatMul
    /// weights, int8 per channel or int4 blocks).
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = QuantConfig::default().algorithm))]
    pub algorithm: Rounding,
    /// Weights mode: what values weights take (integers × scale, or log2 levels).
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = QuantConfig::default().scheme))]
    pub scheme: WeightScheme,
    /// Weights mode: each weight an index into a table of K values (2–256) fitted by k-means —
    /// one table per output channel when K ≤ 16 (two indices per byte), per tensor otherwise (see
    /// --per-tensor). With calibration data, values are weighted by their input feature's
    /// activation energy.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "cli", arg(long, value_parser = clap::value_parser!(u16).range(2..=256)))]
    pub codebook: Option<u16>,
    /// Block size along the input features (4-bit default 32; 8-bit default none = per channel).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "cli", arg(long))]
    pub block_size: Option<usize>,
    /// One scale per weight tensor instead of per channel or block.
    #[cfg_attr(feature = "cli", arg(long))]
    pub per_tensor: bool,
    /// How weight-only weights are written: `portable` (int8 + Cast/Mul, int4 packed in uint8 and
    /// unpacked by plain ops: ONNX Runtime and tract fold them at load, so the model runs at float
    /// speed) or `qdq` (DequantizeLinear on every weight, INT4 at opset 21: for toolchains that read
    /// QDQ weights; ONNX Runtime dequantizes on every run).
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = QuantConfig::default().weight_format,
        alias = "int4-format"))]
    pub weight_format: WeightFormat,
    /// Weights use 7 of their 8 bits (as onnxruntime.quantization's reduce_range). Rarely
    /// needed: where ONNX Runtime's int8 kernels saturate, uint8 weights are the default.
    #[cfg_attr(feature = "cli", arg(long))]
    pub reduce_range: bool,
    /// Static and dynamic: weights as uint8 around zero point 128 instead of
    /// int8. `None` decides by the runtime: uint8 where ONNX Runtime runs on an
    /// x86 CPU without VNNI (see [`QuantConfig::uses_unsigned_weights`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "cli", arg(skip))]
    pub unsigned_weights: Option<bool>,
    /// Affine (with zero point) weights instead of symmetric.
    #[cfg_attr(feature = "cli", arg(long))]
    pub asymmetric: bool,
    /// Leave these nodes (by name) or op types in float. Repeatable.
    #[cfg_attr(feature = "cli", arg(long))]
    pub exclude: Vec<String>,
    /// How activation ranges are chosen from the calibration data.
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = QuantConfig::default().method))]
    pub method: Method,
    /// The percentile kept on each side with `--method percentile`.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = QuantConfig::default().percentile))]
    pub percentile: f64,
    /// Activation type: u8 (affine, the default: the fast kernels in ONNX Runtime), s8 (symmetric),
    /// or 16-bit s16 (symmetric) / u16 (affine) for accuracy over speed (opset 21; ONNX Runtime only).
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = QuantConfig::default().activations))]
    pub activations: Activations,
    /// With calibration data, the most sensitive layers stay float until the output SQNR on
    /// it is estimated to reach this many dB (0 turns the fallback off).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = QuantConfig::default().target_sqnr))]
    pub target_sqnr: f64,
    /// Weights mode under 8 bits (--bits 4, --codebook up to 16, log2 under 8 bits), with --calib:
    /// the layers the fallback keeps from the low-bit format get int8 weights per channel (mixed
    /// precision per layer: a quarter of float's size at nearly its quality). `--fallback-float`
    /// keeps them float instead.
    #[cfg_attr(feature = "cli", arg(long = "fallback-float", action = clap::ArgAction::SetFalse))]
    pub fallback_int8: bool,
    /// Quantize only these op types (static mode). Repeatable.
    #[cfg_attr(feature = "cli", arg(long))]
    pub op_types: Vec<String>,
    /// fp16 mode: make the graph's inputs and outputs float16 too.
    #[cfg_attr(feature = "cli", arg(long))]
    pub fp16_io: bool,
    /// Static mode: correct each Conv/Gemm bias for its layer's mean output drift on the
    /// calibration data, layer by layer (kept only when the output SQNR on held-out calibration
    /// rows improves). Most useful with --target-sqnr 0 (everything int8).
    #[cfg_attr(feature = "cli", arg(long))]
    pub bias_correction: bool,
    /// Static mode: SmoothQuant — each MatMul's activation divided per channel by
    /// s = max|X|^α / max|W|^(1−α) and its weight rows multiplied, so activation outliers move
    /// into the per-channel-quantized weights. `auto`: per group the α (up to 0.6; 0.7–0.9 where
    /// none up to 0.6 does) whose simulated int8 product errs least, only where that cuts the error
    /// to 40 % or less (activations with outlier channels); a number (0–1) for every group; `off`.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = QuantConfig::default().smooth))]
    pub smooth: super::smooth::Alpha,
    /// Static: keep in float the op groups whose float form measures faster in
    /// the runtime (timed, so the choice depends on the machine; see `decided`).
    /// A job sets it from its latency check (`--no-latency-check` turns both off).
    #[cfg_attr(feature = "cli", arg(skip))]
    pub keep_faster: bool,
    /// Static: the result runs in LiteRT (a `.tflite` output; a job sets it from its output's
    /// name): `keep_faster`'s trials are timed there and the fallback's choice is checked there
    /// (each candidate converted). Dynamic MatMuls, which LiteRT models do not hold, are then
    /// not tried.
    #[serde(skip)]
    #[cfg_attr(feature = "cli", arg(skip))]
    pub in_litert: bool,
    /// Fold the graph's shape computations into constants first (kept only when the outputs are
    /// unchanged); `--no-simplify` leaves the graph as it is.
    #[cfg_attr(feature = "cli", arg(long = "no-simplify", action = clap::ArgAction::SetFalse))]
    pub simplify: bool,
    /// Static: which nodes run int8 and which dynamic, as an earlier run chose
    /// them (its report's `decided`): replaces the fallback and speed trials, so a
    /// recipe replays to the same bytes on any machine.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "cli", arg(skip))]
    pub decided: Option<super::StaticDecision>,
}

impl Default for QuantConfig {
    fn default() -> Self {
        QuantConfig {
            mode: QuantMode::Weights,
            bits: 8,
            algorithm: Rounding::Rtn,
            scheme: WeightScheme::Linear,
            codebook: None,
            block_size: None,
            per_tensor: false,
            weight_format: WeightFormat::Portable,
            reduce_range: false,
            unsigned_weights: None,
            asymmetric: false,
            exclude: vec![],
            method: Method::Auto,
            percentile: super::calibrate::DEFAULT_PERCENTILE,
            activations: Activations::U8,
            target_sqnr: DEFAULT_FALLBACK_SQNR_DB,
            fallback_int8: true,
            op_types: vec![],
            fp16_io: false,
            bias_correction: false,
            smooth: super::smooth::Alpha::Auto,
            keep_faster: false,
            in_litert: false,
            simplify: true,
            decided: None,
        }
    }
}

impl QuantConfig {
    /// Combinations that mean nothing, named by option.
    pub fn validate(&self) -> Result<()> {
        let nonlinear = self.codebook.is_some() || self.scheme == WeightScheme::Log2;
        let usage = |s: &str| Err(Error::Usage(s.into()));
        if self.scheme == WeightScheme::Linear && self.bits != 4 && self.bits != 8 {
            return Err(Error::Usage(format!("bits {} is not supported: use 4 or 8", self.bits)));
        }
        if !(2..=8).contains(&self.bits) {
            return Err(Error::Usage(format!("bits {} is not supported: use 2 to 8", self.bits)));
        }
        if nonlinear && self.mode != QuantMode::Weights {
            return usage("codebook and the log2 scheme are weight formats: use mode weights");
        }
        if self.codebook.is_some() && self.scheme == WeightScheme::Log2 {
            return usage("codebook fits its values, the log2 scheme fixes them: choose one");
        }
        if self.algorithm == Rounding::Gptq
            && (nonlinear || !matches!(self.mode, QuantMode::Weights | QuantMode::Static))
        {
            return usage("algorithm gptq rounds linear weights from the layers' inputs: use mode weights or static");
        }
        Ok(())
    }

    /// Whether static and dynamic weights are uint8 (zero point 128): as told,
    /// else where ONNX Runtime runs on an x86 CPU without VNNI — its u8×s8
    /// kernels add pairs of products in 16 bits and saturate on int8 weights
    /// there, its u8×u8 kernels do not and ran as fast (measured on an AVX2-only
    /// EPYC: ppocr_rec_v4 all-int8 with bias correction read 68.8 % of lines with
    /// int8 weights, 84.4 % with 7-bit ones, 85.2 % with uint8 ones, as tract).
    /// tract accumulates in 32 bits, so measured in tract int8 is kept.
    pub fn uses_unsigned_weights(&self) -> bool {
        self.unsigned_weights.unwrap_or_else(|| {
            matches!(self.mode, QuantMode::Static | QuantMode::Dynamic)
                && crate::runtime::int8_pairs_saturate()
                && crate::runtime::default_backend().is_ok_and(|b| b == crate::runtime::Backend::Ort)
        })
    }

    /// The codebook (or log2) pass's options (for `--codebook` or `--scheme log2`).
    pub(in crate::quant) fn codebook_options(&self) -> CodebookOptions {
        CodebookOptions {
            table: match self.codebook {
                Some(k) => Table::KMeans(k as usize),
                None => Table::Log2(self.bits),
            },
            per_tensor: self.per_tensor.then_some(true),
            exclude: self.exclude.clone(),
            ..Default::default()
        }
    }

    /// The dynamic pass's options.
    pub(in crate::quant) fn dynamic_options(&self) -> DynamicOptions {
        DynamicOptions {
            exclude: self.exclude.clone(),
            per_tensor: self.per_tensor,
            only_nodes: None,
            reduce_range: self.reduce_range,
            unsigned_weights: self.uses_unsigned_weights(),
        }
    }

    pub(in crate::quant) fn weight_options(&self) -> WeightOptions {
        let four = self.bits == 4;
        WeightOptions {
            qtype: match (four, self.asymmetric) {
                (true, false) => QType::Int4,
                (true, true) => QType::UInt4,
                (false, false) => QType::Int8,
                (false, true) => QType::UInt8,
            },
            symmetric: !self.asymmetric,
            block_size: self.block_size.or(if four && !self.per_tensor { Some(32) } else { None }),
            per_tensor: self.per_tensor,
            exclude: self.exclude.clone(),
            format: self.weight_format,
            reduce_range: self.reduce_range,
            fallback_int8: self.int8_fallback(),
            ..Default::default()
        }
    }

    /// Whether the layers the sensitivity fallback keeps from a weight format
    /// under 8 bits get int8 weights (the default) rather than float: only
    /// where there is such a format and a fallback.
    pub fn int8_fallback(&self) -> bool {
        let low_bit = match (self.codebook, self.scheme) {
            (Some(k), _) => k <= 16,
            (None, WeightScheme::Log2) => self.bits < 8,
            (None, WeightScheme::Linear) => self.bits == 4,
        };
        self.fallback_int8 && low_bit && self.mode == QuantMode::Weights && self.target_sqnr > 0.0
    }

    fn static_options(&self) -> StaticOptions {
        let (activation_type, symmetric) = match self.activations {
            Activations::S8 => (QType::Int8, true),
            Activations::S16 => (QType::Int16, true),
            Activations::U16 => (QType::UInt16, false),
            Activations::U8 => (QType::UInt8, false),
        };
        StaticOptions {
            method: self.method,
            percentile: self.percentile,
            activation_type,
            symmetric_activations: symmetric,
            exclude: self.exclude.clone(),
            op_types: self.op_types.clone(),
            fallback_sqnr_db: (self.target_sqnr > 0.0).then_some(self.target_sqnr),
            reduce_range: self.reduce_range,
            unsigned_weights: self.uses_unsigned_weights(),
            keep_faster: self.keep_faster,
            in_litert: self.in_litert,
            bias_correction: self.bias_correction,
            smooth: (self.smooth != super::smooth::Alpha::Off).then_some(self.smooth),
            gptq: self.algorithm == Rounding::Gptq,
            decided: self.decided.clone(),
            ..Default::default()
        }
    }
}

/// Quantizes `model` as `config` says. `calib` is the calibration data (needed
/// by static mode and GPTQ; with weights and dynamic mode it turns on the
/// measured float fallback; fp16 checks its ranges on it). The report holds what
/// was done; sizes, comparison and latency are the caller's to fill.
///
/// Load → quantize (static, calibrated) → save:
///
/// ```
/// use prunq::quant::{quantize, QuantConfig, QuantMode};
///
/// let mut model = prunq::onnx::load("demo/digits_cnn.onnx")?;
/// let calib = prunq::data::Dataset::open("demo/digits_calib.npz")?;
/// let config = QuantConfig { mode: QuantMode::Static, ..Default::default() };
/// let report = quantize(&mut model, &config, Some(&calib), &prunq::measure::Silent)?;
/// assert!(report.tensors.len() > 4, "the convs and their activations are int8");
/// let dir = tempfile::tempdir()?;
/// let out = dir.path().join("digits_cnn.int8.onnx");
/// prunq::onnx::save(&model, &out, &Default::default())?;
/// assert!(std::fs::metadata(&out)?.len() < std::fs::metadata("demo/digits_cnn.onnx")?.len() / 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn quantize(
    model: &mut Model,
    config: &QuantConfig,
    calib: Option<&Dataset>,
    progress: &dyn Progress,
) -> Result<QuantReport> {
    config.validate()?;
    let mode = match config.mode {
        QuantMode::Weights => "weights",
        QuantMode::Dynamic => "dynamic",
        QuantMode::Static => "static",
        QuantMode::Fp16 => "fp16",
    };
    let mut report =
        QuantReport { mode: mode.into(), opset_before: model.onnx_opset().unwrap_or(0), ..Default::default() };
    if config.simplify {
        progress.start(1, "simplify");
        report.simplified = Some(crate::transform::simplify(model)?);
        progress.finish();
    }
    let fallback = config.target_sqnr > 0.0;
    let needs = |what: &str| Error::Usage(format!("{what} needs calibration data"));
    let nonlinear = config.codebook.is_some() || config.scheme == WeightScheme::Log2;
    match config.mode {
        QuantMode::Weights if nonlinear => {
            let options = CodebookOptions { fallback_int8: config.int8_fallback(), ..config.codebook_options() };
            super::quantize_codebook(model, &options, calib, config.target_sqnr, &mut report, progress)?
        }
        QuantMode::Weights => {
            let options = config.weight_options();
            match calib {
                Some(data) if config.algorithm == Rounding::Gptq => {
                    super::quantize_weights_gptq(model, &options, data, config.target_sqnr, &mut report, progress)?
                }
                None if config.algorithm == Rounding::Gptq => return Err(needs("algorithm gptq")),
                Some(data) if fallback => super::quantize_weights_with_fallback(
                    model,
                    &options,
                    data,
                    config.target_sqnr,
                    &mut report,
                    progress,
                )?,
                _ => super::quantize_weights(model, &options, &mut report)?,
            }
        }
        QuantMode::Static => {
            let data = calib.ok_or_else(|| needs("mode static"))?;
            super::quantize_static(model, data, &config.static_options(), &mut report, progress)?
        }
        QuantMode::Fp16 => {
            let options = Fp16Options {
                keep_io_types: !config.fp16_io,
                backends: vec![crate::runtime::default_backend()?],
                exclude: config.exclude.clone(),
            };
            super::convert_fp16(model, &options, calib, &mut report)?
        }
        QuantMode::Dynamic => {
            let options = config.dynamic_options();
            match calib {
                Some(data) if fallback => super::quantize_dynamic_with_fallback(
                    model,
                    &options,
                    data,
                    config.target_sqnr,
                    &mut report,
                    progress,
                )?,
                _ => super::quantize_dynamic(model, &options, &mut report)?,
            }
        }
    }
    // An attention Softmax over masked scores stays float in every mode, and ONNX Runtime's runs 5×
    // slower where exp underflows — minilm_l6's static output spent 16 % of its time there (1.81× →
    // 2.07× fp32's speed floored; weight-only 1.00× → 1.08×). LiteRT's Softmax does not; float16
    // outputs keep theirs (the floor is written in float32).
    if config.mode != QuantMode::Fp16 && !config.in_litert {
        let floored = crate::transform::floor_masked_softmax(model)?;
        if floored > 0 {
            report.notes.push(format!(
                "{floored} Softmax over masked scores floored at each row's maximum − 80, where exp stays a normal \
                 float (probabilities the same to 2·10⁻³⁵)"
            ));
        }
    }
    super::passes::bodies::quantize_bodies(model, config, &mut report, progress)?;
    report.opset_after = model.onnx_opset().unwrap_or(0);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(config: QuantConfig) -> String {
        config.validate().expect_err("refused").to_string()
    }

    #[test]
    fn the_defaults_are_valid_int8_weights() {
        let d = QuantConfig::default();
        assert!(d.validate().is_ok());
        assert_eq!(
            (d.mode, d.bits, d.target_sqnr, d.simplify),
            (QuantMode::Weights, 8, DEFAULT_FALLBACK_SQNR_DB, true)
        );
        assert_eq!(d.weight_options().qtype, QType::Int8);
    }

    #[test]
    fn linear_weights_are_4_or_8_bits_and_log2_2_to_8() {
        assert!(refused(QuantConfig { bits: 6, ..Default::default() }).contains("use 4 or 8"));
        assert!(QuantConfig { bits: 6, scheme: WeightScheme::Log2, ..Default::default() }.validate().is_ok());
        let one = QuantConfig { bits: 1, scheme: WeightScheme::Log2, ..Default::default() };
        assert!(refused(one).contains("use 2 to 8"));
    }

    #[test]
    fn weight_formats_are_for_weights_mode_only() {
        let codebook_static = QuantConfig { mode: QuantMode::Static, codebook: Some(16), ..Default::default() };
        assert!(refused(codebook_static).contains("use mode weights"));
        let both = QuantConfig { codebook: Some(16), scheme: WeightScheme::Log2, ..Default::default() };
        assert!(refused(both).contains("choose one"));
    }

    #[test]
    fn gptq_rounds_linear_weights_in_weights_or_static_mode() {
        let dynamic = QuantConfig { mode: QuantMode::Dynamic, algorithm: Rounding::Gptq, ..Default::default() };
        assert!(refused(dynamic).contains("algorithm gptq"));
        let codebook = QuantConfig { codebook: Some(16), algorithm: Rounding::Gptq, ..Default::default() };
        assert!(refused(codebook).contains("algorithm gptq"));
        let stat = QuantConfig { mode: QuantMode::Static, algorithm: Rounding::Gptq, ..Default::default() };
        assert!(stat.validate().is_ok());
    }

    #[test]
    fn the_int8_fallback_is_the_default_where_a_format_under_8_bits_has_a_fallback() {
        let four = QuantConfig { bits: 4, ..Default::default() };
        assert!(four.int8_fallback() && four.weight_options().fallback_int8);
        assert!(!QuantConfig { fallback_int8: false, ..four.clone() }.int8_fallback());
        assert!(!QuantConfig { target_sqnr: 0.0, ..four.clone() }.int8_fallback());
        assert!(!QuantConfig::default().int8_fallback(), "int8 weights have no int8 fallback");
        assert!(QuantConfig { codebook: Some(16), ..Default::default() }.int8_fallback());
        assert!(!QuantConfig { codebook: Some(64), ..Default::default() }.int8_fallback());
        assert!(QuantConfig { scheme: WeightScheme::Log2, bits: 4, ..Default::default() }.int8_fallback());
        assert!(!QuantConfig { mode: QuantMode::Static, bits: 4, ..Default::default() }.int8_fallback());
    }

    #[test]
    fn four_bit_weights_default_to_blocks_of_32_and_per_tensor_has_none() {
        let four = QuantConfig { bits: 4, ..Default::default() };
        assert_eq!((four.weight_options().qtype, four.weight_options().block_size), (QType::Int4, Some(32)));
        let per_tensor = QuantConfig { per_tensor: true, ..four.clone() };
        assert_eq!(per_tensor.weight_options().block_size, None);
        let affine = QuantConfig { asymmetric: true, ..four };
        assert_eq!(affine.weight_options().qtype, QType::UInt4);
    }

    #[test]
    fn static_options_follow_the_activation_type_and_the_fallback_target() {
        let s8 = QuantConfig { activations: Activations::S8, ..Default::default() }.static_options();
        assert_eq!((s8.activation_type, s8.symmetric_activations), (QType::Int8, true));
        let u16 = QuantConfig { activations: Activations::U16, ..Default::default() }.static_options();
        assert_eq!((u16.activation_type, u16.symmetric_activations), (QType::UInt16, false));
        let off = QuantConfig { target_sqnr: 0.0, ..Default::default() }.static_options();
        assert_eq!(off.fallback_sqnr_db, None, "a target of 0 turns the fallback off");
    }

    #[test]
    fn recipes_round_trip_through_toml_as_the_flags_are_spelt() {
        let c = QuantConfig { mode: QuantMode::Static, target_sqnr: 0.0, bias_correction: true, ..Default::default() };
        let text = toml::to_string(&c).unwrap();
        assert!(text.contains("target-sqnr = 0") && text.contains("bias-correction = true"), "{text}");
        assert_eq!(toml::from_str::<QuantConfig>(&text).unwrap(), c);
        assert!(toml::from_str::<QuantConfig>("target_sqnr = 3").is_err(), "unknown keys are refused");
    }

    #[test]
    fn a_told_weight_type_wins_and_weight_only_is_never_unsigned_by_itself() {
        let told = QuantConfig { mode: QuantMode::Static, unsigned_weights: Some(true), ..Default::default() };
        assert!(told.uses_unsigned_weights() && told.static_options().unsigned_weights);
        let int8 = QuantConfig { mode: QuantMode::Dynamic, unsigned_weights: Some(false), ..Default::default() };
        assert!(!int8.uses_unsigned_weights());
        assert!(!QuantConfig::default().uses_unsigned_weights(), "weight-only writes int8 on every CPU");
    }

    /// The CLI's flags are derived from this struct: without flags they are its `Default`.
    #[cfg(feature = "cli")]
    #[test]
    fn the_command_lines_defaults_are_the_librarys() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            config: QuantConfig,
        }
        assert_eq!(Cli::parse_from(["quantize"]).config, QuantConfig::default());
        let c =
            Cli::parse_from(["quantize", "--mode", "static", "--no-simplify", "--exclude", "a", "--exclude", "Conv"]);
        assert_eq!((c.config.mode, c.config.simplify), (QuantMode::Static, false));
        assert_eq!(c.config.exclude, ["a", "Conv"]);
        assert!(Cli::try_parse_from(["quantize", "--bits", "9"]).is_err(), "bits are 2 to 8");
        assert!(Cli::try_parse_from(["quantize", "--codebook", "1"]).is_err(), "codebooks are 2 to 256 entries");
        assert_eq!(Cli::parse_from(["quantize", "--int4-format", "qdq"]).config.weight_format, WeightFormat::Qdq);
    }
}
