//! Quantization: the scheme math, the op-type registry, and the passes
//! (weight-only so far).

mod pack;
pub mod registry;
mod report;
pub mod scheme;
mod weights;

pub use report::{QuantReport, Skipped, TensorRecord};
pub use scheme::{Granularity, QParams, QScheme, QType};
pub use weights::{excluded, quantize_weights, WeightOptions};
