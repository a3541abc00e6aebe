//! Quantization, entered through `quantize(model, &QuantConfig, calib)` (`config.rs`), with the
//! op-type registry (`registry.rs`: each op's weights, activations and quirks) and the report
//! (`report.rs`). The folders are the roles: `scheme/` the math, `forms/` the writers of
//! quantized weights runtimes read, `passes/` the passes, `refine/` what the passes use to lose
//! less (GPTQ, SmoothQuant, bias correction), `search/` the measured fallback and speed trials.

mod config;
pub mod registry;
mod report;

/// The linear quantization math: types, granularities, parameters, rounding; packing; the
/// calibrators that turn observed values into ranges.
pub mod scheme;
/// Writers of quantized weight forms runtimes read: the portable forms folded at load, ONNX
/// Runtime's `MatMulNBits`.
mod forms {
    pub mod matmul_nbits;
    pub mod portable;
}
/// The passes: weight-only, non-linear codebooks, dynamic, static QDQ, fp16; their data-free forms
/// inside control-flow bodies.
mod passes {
    pub mod bodies;
    pub mod codebook;
    pub mod dynamic;
    pub mod fp16;
    pub mod static_qdq;
    pub mod weights;
}
/// Refinements the passes use: GPTQ rounding, SmoothQuant, bias correction.
mod refine {
    pub mod bias_correction;
    pub mod gptq;
    pub mod smooth;
}
/// The search: the measured per-layer float fallback, speed trials.
mod search {
    pub mod in_litert;
    pub mod sensitivity;
    pub mod speed;
}

// Each module by its own name, wherever its role put it.
use forms::{matmul_nbits, portable};
use passes::{codebook, dynamic, fp16, static_qdq, weights};
use refine::{bias_correction, gptq, smooth};
pub use scheme::calibrate;
use scheme::pack;
pub use search::sensitivity;
use search::speed;

pub use codebook::{quantize_codebook, CodebookOptions, Table};
pub use config::{quantize, Activations, QuantConfig, QuantMode, Rounding, WeightScheme};
pub use dynamic::{quantize_dynamic, quantize_dynamic_with_fallback, DynamicOptions};
pub use fp16::{convert_fp16, Fp16Options};
pub use report::{forms_said, GroupSensitivity, QuantReport, Skipped, TensorRecord};
pub use scheme::{Granularity, QParams, QScheme, QType};
pub use smooth::{Alpha, Smoothed};
pub use static_qdq::{quantize_static, StaticDecision, StaticOptions, DEFAULT_FALLBACK_SQNR_DB};
pub use weights::{
    quantize_weights, quantize_weights_gptq, quantize_weights_with_fallback, WeightFormat, WeightOptions,
};
