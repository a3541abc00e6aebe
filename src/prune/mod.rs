//! Pruning: choosing the weights or channels that matter least and removing
//! them. `layers` finds the prunable layers; `sparse` zeroes weights
//! (unstructured and N:M); `structured` removes whole channels.

mod gram;
mod layers;
mod sparse;
mod sparsegpt;
pub mod structured;

pub use layers::{prunable_layers, Layer, LayerChoice};
pub use sparse::{prune_sparse, LayerRecord, Method, PruneReport, Scope, SparseOptions};
