//! Quantization: the scheme math, the op-type registry, and the passes
//! (weight-only, dynamic, static QDQ, fp16).

mod bias_correction;
pub mod calibrate;
mod codebook;
mod config;
mod dynamic;
mod fp16;
mod gptq;
mod matmul_nbits;
mod memo;
mod pack;
mod portable;
pub mod registry;
mod report;
pub mod scheme;
pub mod sensitivity;
mod smooth;
mod speed;
mod static_qdq;
mod switched;
mod weights;

pub use codebook::{quantize_codebook, CodebookOptions, Table};
pub use config::{quantize, Activations, QuantConfig, QuantMode, Rounding, WeightScheme};
pub use dynamic::{quantize_dynamic, quantize_dynamic_with_fallback, DynamicOptions};
pub use fp16::{convert_fp16, Fp16Options};
pub use report::{GroupSensitivity, QuantReport, Skipped, TensorRecord};
pub use scheme::{Granularity, QParams, QScheme, QType};
pub use smooth::{Alpha, Smoothed};
pub use static_qdq::{quantize_static, StaticDecision, StaticOptions, DEFAULT_FALLBACK_SQNR_DB};
pub use weights::{
    quantize_weights, quantize_weights_gptq, quantize_weights_with_fallback, WeightFormat, WeightOptions,
};
