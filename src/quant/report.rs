//! What a quantization pass did, for `--report FILE.json`.

use super::scheme::{Granularity, QParams, QScheme, QType};
use serde::Serialize;

/// One quantized tensor.
#[derive(Clone, Debug, Serialize)]
pub struct TensorRecord {
    /// The tensor's name.
    pub name: String,
    /// Its integer type.
    pub qtype: QType,
    /// Symmetric (zero point 0) or affine.
    pub symmetric: bool,
    /// Per tensor, per channel or per block.
    pub granularity: Granularity,
    /// One bit of the type left unused (`--reduce-range`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub reduce_range: bool,
    /// Its shape.
    pub shape: Vec<usize>,
    /// The smallest scale.
    pub scale_min: f32,
    /// The largest scale.
    pub scale_max: f32,
    /// Its size in float.
    pub bytes_before: usize,
    /// Rounded by GPTQ (not to nearest).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub gptq: bool,
    /// For weights stored as table indices: how the table was made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub codebook: Option<String>,
}

impl TensorRecord {
    /// A record of `name` quantized with `scheme` and `p`.
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

    /// Its stored form in a word: `int4`, `int8`, `codebook` …
    pub fn form(&self) -> String {
        match self.codebook {
            Some(_) => "codebook".into(),
            None => {
                serde_json::to_value(self.qtype).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
            }
        }
    }
}

/// How many tensors of each stored form, when there is more than one: ` (25 int4, 14 int8)`.
pub fn forms_said(tensors: &[TensorRecord]) -> String {
    let mut count: std::collections::BTreeMap<String, usize> = Default::default();
    for t in tensors {
        *count.entry(t.form()).or_default() += 1;
    }
    match count.len() {
        0 | 1 => String::new(),
        _ => format!(" ({})", count.iter().map(|(f, n)| format!("{n} {f}")).collect::<Vec<_>>().join(", ")),
    }
}

/// A tensor or node left in float.
#[derive(Clone, Debug, Serialize)]
pub struct Skipped {
    /// Its name.
    pub name: String,
    /// Why.
    pub reason: String,
}

impl Skipped {
    /// A record of `name` left float for `reason`.
    pub fn new(name: &str, reason: String) -> Self {
        Skipped { name: name.into(), reason }
    }
}

/// A group of layers quantized alone while the rest stays float: how much
/// of the output it costs (the sensitivity search's measurement).
#[derive(Clone, Debug, Serialize)]
pub struct GroupSensitivity {
    /// The group (its nodes) measured.
    pub group: String,
    /// Output SQNR on the calibration samples with only this group quantized.
    pub sqnr_db: f64,
    /// The SQNR of its worst slice of an output's last axis, when an output has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worst_slice_db: Option<f64>,
    /// Whether the fallback kept it float.
    pub kept_float: bool,
}

/// One layer bias correction changed: its largest mean shift per channel (in output units).
#[derive(Clone, Debug, Serialize)]
pub struct BiasShift {
    /// The Conv or Gemm.
    pub node: String,
    /// The largest shift of a channel's mean output.
    pub max_shift: f64,
}

/// What a quantization run did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct QuantReport {
    /// `weights`, `dynamic`, `static` or `fp16`.
    pub mode: String,
    /// Where the job's time went, stage by stage (set by the job).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<crate::measure::StageTime>,
    /// The job's wall-clock seconds, pass and checks together (set by the job).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
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
    pub bias_correction: Vec<BiasShift>,
    /// Static mode with SmoothQuant: each activation divided, and its α.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub smoothing: Vec<super::smooth::Smoothed>,
    /// Output SQNR on the calibration samples with every candidate quantized (the fallback's first trial).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantized_sqnr_db: Option<f64>,
    /// Static mode: which nodes ended int8 and which dynamic (a recipe replays them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided: Option<super::StaticDecision>,
    /// The graph clean-up done before quantizing (absent with `--no-simplify`).
    pub simplified: Option<crate::transform::Simplification>,
    /// The default-domain opset before.
    pub opset_before: i64,
    /// The opset after (raised where the form needs it).
    pub opset_after: i64,
    /// File size before (bytes).
    pub size_before: u64,
    /// File size after.
    pub size_after: u64,
    /// The result compared with the original (on --val, else the calibration data).
    pub comparison: Option<crate::eval::CompareReport>,
    /// What ran the model for calibration, sensitivity and validation.
    pub runtime: Option<crate::runtime::RuntimeInfo>,
    /// The output timed against the input where it runs (absent with `--no-latency-check`).
    pub latency: Option<crate::eval::LatencyCheck>,
    /// The check the output passed before it was written (the CLI runs it).
    pub output_check: Option<crate::eval::OutputCheck>,
}

#[cfg(test)]
mod tests {
    use super::{forms_said, TensorRecord};
    use crate::quant::scheme::{Granularity, QParams, QScheme, QType};

    #[test]
    fn the_summary_counts_each_stored_form_when_there_are_several() {
        let record = |qtype| {
            let scheme = QScheme { qtype, symmetric: true, granularity: Granularity::PerTensor, reduce_range: false };
            let p = QParams { scale: ndarray::arr1(&[1f32]).into_dyn(), zero_point: ndarray::arr1(&[0]).into_dyn() };
            TensorRecord::new("w", &scheme, &p, 4, &[1])
        };
        let mut tensors = vec![record(QType::Int4), record(QType::Int4), record(QType::Int8)];
        assert_eq!(forms_said(&tensors), " (2 int4, 1 int8)");
        tensors[2].qtype = QType::Int4;
        assert_eq!(forms_said(&tensors), "", "one form needs no count");
    }
}
