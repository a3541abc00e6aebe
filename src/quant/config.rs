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
use crate::eval::Progress;
use crate::ir::Model;
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
/// options; in TOML they are written as the flags are (`target-sqnr = 0`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default, deny_unknown_fields)]
pub struct QuantConfig {
    /// Weights only, dynamic, static or fp16.
    pub mode: QuantMode,
    /// 8 or 4 for linear weights; 2 to 8 for log2.
    pub bits: u32,
    /// How weights are rounded: to nearest or GPTQ.
    pub algorithm: Rounding,
    /// Linear (integers × scale) or log2 levels.
    pub scheme: WeightScheme,
    /// Weights as indices into K-entry k-means tables (weights mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub codebook: Option<u16>,
    /// Block size along the input features (4-bit default 32; 8-bit: per channel).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_size: Option<usize>,
    /// One scale per tensor instead of per channel.
    pub per_tensor: bool,
    /// How quantized weights are written (portable, QDQ, MatMulNBits).
    pub weight_format: WeightFormat,
    /// Leave one bit of the weight type unused (for kernels that saturate).
    pub reduce_range: bool,
    /// Static and dynamic: weights as uint8 around zero point 128 instead of
    /// int8. `None` decides by the runtime: uint8 where ONNX Runtime runs on an
    /// x86 CPU without VNNI (see [`QuantConfig::uses_unsigned_weights`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unsigned_weights: Option<bool>,
    /// Asymmetric weights (with zero points).
    pub asymmetric: bool,
    /// Nodes (by name) or op types left float.
    pub exclude: Vec<String>,
    /// How activation ranges are chosen (static).
    pub method: Method,
    /// The percentile of `method = percentile`.
    pub percentile: f64,
    /// Static: the activations' integer type.
    pub activations: Activations,
    /// With calibration data, the most sensitive layers stay float until the
    /// output SQNR is estimated to reach this (dB); 0 turns the fallback off.
    pub target_sqnr: f64,
    /// Weights mode under 8 bits (int4, codebooks up to 16 entries, log2): the
    /// layers the fallback keeps get int8 weights instead of float.
    pub fallback_int8: bool,
    /// Static: quantize only these op types (all the registry knows when empty).
    pub op_types: Vec<String>,
    /// fp16: float16 graph inputs and outputs too.
    pub fp16_io: bool,
    /// Static: correct biases for the mean output drift.
    pub bias_correction: bool,
    /// Static: SmoothQuant's α.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smooth: Option<super::smooth::Alpha>,
    /// Static: keep in float the op groups whose float form measures faster in
    /// the runtime (timed, so the choice depends on the machine; see `decided`).
    pub keep_faster: bool,
    /// Fold the graph's shape computations into constants first (kept only
    /// when the outputs are unchanged).
    pub simplify: bool,
    /// Static: which nodes run int8 and which dynamic, as an earlier run chose
    /// them (its report's `decided`): replaces the fallback and speed trials, so a
    /// recipe replays to the same bytes on any machine.
    #[serde(skip_serializing_if = "Option::is_none")]
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
            percentile: 99.999,
            activations: Activations::U8,
            target_sqnr: DEFAULT_FALLBACK_SQNR_DB,
            fallback_int8: false,
            op_types: vec![],
            fp16_io: false,
            bias_correction: false,
            smooth: None,
            keep_faster: false,
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
        if self.fallback_int8 {
            let low_bit = match (self.codebook, self.scheme) {
                (Some(k), _) => k <= 16,
                (None, WeightScheme::Log2) => self.bits < 8,
                (None, WeightScheme::Linear) => self.bits == 4,
            };
            if self.mode != QuantMode::Weights || !low_bit || self.target_sqnr <= 0.0 {
                return usage(
                    "fallback-int8 gives int8 weights to the layers the fallback keeps from a format under 8 bits: \
                     use mode weights with bits 4, a codebook of up to 16 entries or log2 under 8 bits, and a \
                     target-sqnr above 0",
                );
            }
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

    fn weight_options(&self) -> WeightOptions {
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
            fallback_int8: self.fallback_int8,
            ..Default::default()
        }
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
            bias_correction: self.bias_correction,
            smooth: self.smooth,
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
/// let report = quantize(&mut model, &config, Some(&calib), &prunq::eval::Silent)?;
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
        report.simplified = Some(crate::transform::simplify(model)?);
    }
    let fallback = config.target_sqnr > 0.0;
    let needs = |what: &str| Error::Usage(format!("{what} needs calibration data"));
    let nonlinear = config.codebook.is_some() || config.scheme == WeightScheme::Log2;
    match config.mode {
        QuantMode::Weights if nonlinear => {
            let options = CodebookOptions {
                table: match config.codebook {
                    Some(k) => Table::KMeans(k as usize),
                    None => Table::Log2(config.bits),
                },
                per_tensor: config.per_tensor.then_some(true),
                exclude: config.exclude.clone(),
                fallback_int8: config.fallback_int8,
                ..Default::default()
            };
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
            let options = DynamicOptions {
                exclude: config.exclude.clone(),
                per_tensor: config.per_tensor,
                only_nodes: None,
                reduce_range: config.reduce_range,
                unsigned_weights: config.uses_unsigned_weights(),
            };
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
    report.opset_after = model.onnx_opset().unwrap_or(0);
    Ok(report)
}
