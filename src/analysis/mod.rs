//! Measuring a model without changing it: shapes, MACs, parameters, sparsity.

pub mod dependency;
mod macs;
mod ranks;
mod shapes;
mod summary;

pub use macs::{counts_macs, node_macs};
pub use shapes::{concrete_input_shapes, element_types, infer_shapes, infer_types, parse_shape, rank_lookup};
pub use summary::{summarize, LayerSummary, Summary, ValueSummary, WeightSummary};
