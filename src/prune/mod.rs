//! Pruning: choosing the weights or channels that matter least and removing
//! them (the layers and their input statistics come from `crate::layerwise`). `sparse` zeroes weights
//! (unstructured and N:M); `storage` writes the zeros away as sparse tensors;
//! `structured` removes whole channels.

mod config;
mod sparse;
mod sparsegpt;
mod storage;
pub mod structured;

pub use crate::layerwise::{prunable_layers, Layer, LayerChoice};
pub use config::{parse_pattern, prune, PruneConfig, Pruned};
pub use sparse::{prune_sparse, LayerRecord, Method, PruneReport, Scope, SparseOptions};
pub use storage::{store_sparse_where_smaller, StorageRecord};
