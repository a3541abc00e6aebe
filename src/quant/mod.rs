//! Quantization, entered through `quantize(model, &QuantConfig, calib)` (`config.rs`). By role:
//! the scheme math (`scheme.rs`, `pack.rs`) and the op-type registry (`registry.rs`); calibration
//! (`calibrate.rs`); the writers of quantized weight forms (`portable.rs`, `matmul_nbits.rs`,
//! `codebook/write.rs`); the passes — weight-only (`weights.rs`), non-linear codebooks and log2
//! (`codebook/`), dynamic (`dynamic.rs`), static QDQ (`static_qdq/`), fp16 (`fp16.rs`); the
//! refinements — GPTQ (`gptq.rs`), SmoothQuant (`smooth.rs`), bias correction
//! (`bias_correction.rs`); and the search — the measured float fallback (`sensitivity.rs`,
//! `switched.rs`), speed trials (`speed.rs`).

mod bias_correction;
pub mod calibrate;
mod codebook;
mod config;
mod dynamic;
mod fp16;
mod gptq;
mod matmul_nbits;
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
