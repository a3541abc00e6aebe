//! What a quantization pass did, for `--report FILE.json`.

use super::scheme::{Granularity, QParams, QScheme, QType};
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct TensorRecord {
    pub name: String,
    pub qtype: QType,
    pub symmetric: bool,
    pub granularity: Granularity,
    /// One bit of the type left unused (`--reduce-range`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub reduce_range: bool,
    pub shape: Vec<usize>,
    pub scale_min: f32,
    pub scale_max: f32,
    pub bytes_before: usize,
    /// Rounded by GPTQ (not to nearest).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub gptq: bool,
    /// For weights stored as table indices: how the table was made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub codebook: Option<String>,
}

impl TensorRecord {
    pub fn new(name: &str, scheme: &QScheme, p: &QParams, bytes_before: usize, shape: &[usize]) -> Self {
        let (lo, hi) = p.scale.iter().fold((f32::INFINITY, 0f32), |(lo, hi), &s| (lo.min(s), hi.max(s)));
        TensorRecord {
            name: name.into(),
            qtype: scheme.qtype,
            symmetric: scheme.symmetric,
            granularity: scheme.granularity,
            reduce_range: scheme.reduce_range,
            shape: shape.to_vec(),
            scale_min: lo,
            scale_max: hi,
            bytes_before,
            gptq: false,
            codebook: None,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Skipped {
    pub name: String,
    pub reason: String,
}

impl Skipped {
    pub fn new(name: &str, reason: String) -> Self {
        Skipped { name: name.into(), reason }
    }
}

/// A group of layers quantized alone while the rest stays float: how much
/// of the output it costs (the sensitivity search's measurement).
#[derive(Clone, Debug, Serialize)]
pub struct GroupSensitivity {
    pub group: String,
    /// Output SQNR on the calibration samples with only this group quantized.
    pub sqnr_db: f64,
    pub kept_float: bool,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct QuantReport {
    pub mode: String,
    /// Tensors quantized and how.
    pub tensors: Vec<TensorRecord>,
    /// Tensors or nodes left in float, and why.
    pub skipped: Vec<Skipped>,
    /// What a user should know about the result (e.g. that no integer kernel
    /// measured faster than float here).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Each candidate group's sensitivity, when the float fallback measured them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sensitivity: Vec<GroupSensitivity>,
    /// Static mode: the biases corrected for their layer's mean output drift.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bias_correction: Vec<super::bias_correction::BiasShift>,
    /// Output SQNR on the calibration samples with every candidate quantized (the fallback's first trial).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantized_sqnr_db: Option<f64>,
    /// Static mode: which nodes ended int8 and which dynamic (a recipe replays them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided: Option<super::StaticDecision>,
    /// The graph clean-up done before quantizing (absent with `--no-simplify`).
    pub simplified: Option<crate::transform::Simplification>,
    pub opset_before: i64,
    pub opset_after: i64,
    pub size_before: u64,
    pub size_after: u64,
    pub comparison: Option<crate::eval::CompareReport>,
    /// What ran the model for calibration, sensitivity and validation.
    pub runtime: Option<crate::runtime::RuntimeInfo>,
    /// The output timed against the input where it runs (absent with `--no-latency-check`).
    pub latency: Option<crate::eval::LatencyCheck>,
    /// The check the output passed before it was written (the CLI runs it).
    pub output_check: Option<crate::eval::OutputCheck>,
}
