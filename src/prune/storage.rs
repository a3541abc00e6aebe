//! `--sparse-storage`: pruned weights written as ONNX `sparse_initializer`
//! (non-zero values plus int64 positions) where that takes fewer bytes.

use crate::ir::{sparse_and_dense_bytes, ConstantSite, Model, SparseLayout, Storage};
use crate::Result;
use serde::Serialize;

/// How one pruned weight is stored, and the bytes either way would take.
#[derive(Clone, Debug, Serialize)]
pub struct StorageRecord {
    /// The weight's name.
    pub weight: String,
    /// Whether it is written as a sparse initializer.
    pub sparse: bool,
    /// Bytes as sparse.
    pub sparse_bytes: usize,
    /// Bytes as dense.
    pub dense_bytes: usize,
    /// Why it stays dense, when it does.
    pub reason: Option<String>,
}

/// Stores each of `weights` sparse when that is smaller. Each index is 8 bytes
/// (ONNX wants int64), so a float32 weight needs more than 2/3 zeros to gain.
/// A weight in a `Constant` node becomes an initializer (only initializers can
/// be sparse in a graph).
pub fn store_sparse_where_smaller(model: &mut Model, weights: &[String]) -> Result<Vec<StorageRecord>> {
    let g = &mut model.graph;
    let mut records = vec![];
    for name in weights {
        let Some(value) = g.constant(name).transpose()? else { continue };
        let Some((sparse_bytes, dense_bytes)) = sparse_and_dense_bytes(&value) else { continue };
        let mut record = StorageRecord { weight: name.clone(), sparse: false, sparse_bytes, dense_bytes, reason: None };
        if sparse_bytes >= dense_bytes {
            record.reason = Some("sparse storage would be larger".into());
        } else if g.inputs.iter().any(|i| &i.name == name) {
            record.reason = Some("also a graph input (a caller may override it)".into());
        } else {
            record.sparse = true;
            match g.constant_site(name) {
                Some(ConstantSite::Initializer(k)) => {
                    g.initializers[k].storage = Storage::Sparse(SparseLayout::linear())
                }
                _ => {
                    g.remove_constant(name)?;
                    let mut t = value;
                    t.storage = Storage::Sparse(SparseLayout::linear());
                    g.initializers.push(t);
                }
            }
        }
        records.push(record);
    }
    // Sparse initializers follow the dense ones in the file: keep the IR in that order.
    g.initializers.sort_by_key(|t| matches!(t.storage, Storage::Sparse(_)));
    Ok(records)
}
