//! Pruning: choosing the weights (and later channels) that matter least and
//! removing them. `layers` finds what can be pruned; `sparse` zeroes weights
//! (unstructured and N:M).

mod gram;
mod layers;
mod sparse;
mod sparsegpt;

pub use layers::{prunable_layers, Layer};
pub use sparse::{prune_sparse, LayerRecord, Method, PruneReport, Scope, SparseOptions};
