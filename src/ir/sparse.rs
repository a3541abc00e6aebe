//! Sparse storage of a constant: the non-zero elements and their positions,
//! as ONNX's `SparseTensorProto` holds them. The IR keeps every constant
//! dense; a tensor whose [`Storage`] is `Sparse` is written back this way.

use super::{DataType, Storage, Tensor, TensorData};
use crate::{Error, Result};

/// How a sparse tensor's indices are laid out in the file.
#[derive(Clone, Debug, PartialEq)]
pub struct SparseLayout {
    /// `[NNZ, rank]` coordinates rather than `[NNZ]` linear positions.
    pub coordinates: bool,
    /// The name the file gave the indices tensor.
    pub indices_name: String,
    /// The values were stored in typed fields rather than `raw_data`.
    pub typed_values: bool,
}

impl SparseLayout {
    /// Linear int64 indices and raw values: the smallest layout.
    pub fn linear() -> Self {
        SparseLayout { coordinates: false, indices_name: String::new(), typed_values: false }
    }
}

/// Bytes per element of a type sparse storage handles (whole-byte numbers).
fn element_size(dtype: DataType) -> Option<usize> {
    match dtype.bits() {
        Some(b) if b >= 8 && b % 8 == 0 && dtype != DataType::STRING => Some(b / 8),
        _ => None,
    }
}

/// An element stored sparse is one whose bytes are not all zero (so −0.0
/// is kept: the round trip is exact to the bit).
fn is_zero(element: &[u8]) -> bool {
    element.iter().all(|&x| x == 0)
}

/// The dense tensor `dims` with `values` at `indices` (linear `[NNZ]` or
/// `[NNZ, rank]` coordinates) and zeros elsewhere. `budget` bounds its bytes.
pub fn densify(values: &Tensor, indices: &Tensor, dims: &[i64], budget: u64) -> Result<Tensor> {
    let name = &values.name;
    let bad = |why: String| Error::Model(format!("sparse tensor '{name}': {why}"));
    let size =
        element_size(values.dtype).ok_or_else(|| bad(format!("element type {} is not handled", values.dtype)))?;
    let shape: Vec<usize> = dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| bad(format!("negative dim {d}"))))
        .collect::<Result<_>>()?;
    let numel =
        shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| bad("too many elements".into()))?;
    let bytes = numel.checked_mul(size).filter(|&b| b as u64 <= budget);
    let bytes = bytes.ok_or_else(|| bad(format!("dense shape {dims:?} is past the memory limit ({budget} bytes)")))?;
    let nnz = values.numel().unwrap_or(0);
    if values.dims.len() != 1 {
        return Err(bad(format!("values must be 1-D, not {:?}", values.dims)));
    }
    let positions = indices.to_i64_vec().map_err(|e| bad(format!("indices: {e}")))?;
    let rank = shape.len();
    let coordinates = match indices.dims.as_slice() {
        [n] if *n as usize == nnz => false,
        [n, r] if *n as usize == nnz && *r as usize == rank => true,
        d => return Err(bad(format!("indices of shape {d:?} do not fit {nnz} values of rank {rank}"))),
    };
    let wanted = if coordinates { nnz * rank } else { nnz };
    if positions.len() != wanted {
        return Err(bad(format!("{} indices where the shape {:?} needs {wanted}", positions.len(), indices.dims)));
    }
    let linear = |k: usize| -> Option<usize> {
        if !coordinates {
            return usize::try_from(positions[k]).ok().filter(|&p| p < numel);
        }
        let mut p = 0usize;
        for (axis, &extent) in shape.iter().enumerate() {
            let c = usize::try_from(positions[k * rank + axis]).ok().filter(|&c| c < extent)?;
            p = p * extent + c;
        }
        Some(p)
    };
    let src = values.bytes().ok_or_else(|| bad("values hold no bytes".into()))?;
    if src.len() != nnz * size {
        return Err(bad(format!("{} value bytes for {nnz} values", src.len())));
    }
    let mut out = vec![0u8; bytes];
    for k in 0..nnz {
        let p = linear(k).ok_or_else(|| bad(format!("index {k} is outside the shape {dims:?}")))?;
        out[p * size..(p + 1) * size].copy_from_slice(&src[k * size..(k + 1) * size]);
    }
    let mut t = Tensor::from_bytes(name.clone(), values.dtype, dims.to_vec(), out.into());
    t.doc_string = values.doc_string.clone();
    t.metadata_props = values.metadata_props.clone();
    let typed_values = values.storage == Storage::Typed;
    t.storage = Storage::Sparse(SparseLayout { coordinates, indices_name: indices.name.clone(), typed_values });
    Ok(t)
}

/// `t`'s non-zero elements and their indices (int64, laid out as `layout`
/// says); `None` for types sparse storage does not handle.
pub fn sparsify(t: &Tensor, layout: &SparseLayout) -> Option<(Tensor, Tensor)> {
    let size = element_size(t.dtype)?;
    let TensorData::Bytes(b) = &t.data else { return None };
    let shape = t.shape();
    let mut values = Vec::new();
    let mut indices: Vec<u8> = Vec::new();
    let mut nnz = 0i64;
    for (p, e) in b.chunks_exact(size).enumerate() {
        if is_zero(e) {
            continue;
        }
        nnz += 1;
        values.extend_from_slice(e);
        if layout.coordinates {
            let mut coords = vec![0i64; shape.len()];
            let mut rest = p;
            for (axis, &extent) in shape.iter().enumerate().rev() {
                coords[axis] = (rest % extent.max(1)) as i64;
                rest /= extent.max(1);
            }
            coords.iter().for_each(|c| indices.extend_from_slice(&c.to_le_bytes()));
        } else {
            indices.extend_from_slice(&(p as i64).to_le_bytes());
        }
    }
    let mut v = Tensor::from_bytes(t.name.clone(), t.dtype, vec![nnz], values.into());
    v.doc_string = t.doc_string.clone();
    v.metadata_props = t.metadata_props.clone();
    if layout.typed_values {
        v.storage = Storage::Typed;
    }
    let index_dims = if layout.coordinates { vec![nnz, shape.len() as i64] } else { vec![nnz] };
    let i = Tensor::from_bytes(layout.indices_name.clone(), DataType::INT64, index_dims, indices.into());
    Some((v, i))
}

/// Bytes `t` takes stored sparse (linear int64 indices) and dense.
pub fn sparse_and_dense_bytes(t: &Tensor) -> Option<(usize, usize)> {
    let size = element_size(t.dtype)?;
    let TensorData::Bytes(b) = &t.data else { return None };
    let nnz = b.chunks_exact(size).filter(|e| !is_zero(e)).count();
    Some((nnz * (size + 8), b.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};

    #[test]
    fn sparsify_then_densify_is_the_identity_in_both_layouts() {
        let a = ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![0f32, 1.5, 0.0, -2.0, 0.0, 3.0]).unwrap();
        let t = Tensor::from_array("w", &a);
        for coordinates in [false, true] {
            let layout = SparseLayout { coordinates, indices_name: "w_i".into(), typed_values: false };
            let (v, i) = sparsify(&t, &layout).unwrap();
            assert_eq!(v.to_array::<f32>().unwrap().as_slice().unwrap(), &[1.5, -2.0, 3.0]);
            let expected: Vec<i64> = if coordinates { vec![0, 1, 1, 0, 1, 2] } else { vec![1, 3, 5] };
            assert_eq!(i.to_i64_vec().unwrap(), expected);
            let back = densify(&v, &i, &t.dims, u64::MAX).unwrap();
            assert_eq!(back.data, t.data);
            assert_eq!(back.storage, Storage::Sparse(layout));
        }
    }

    #[test]
    fn hostile_indices_and_shapes_are_errors() {
        let v = Tensor::from_array("w", &ArrayD::from_shape_vec(IxDyn(&[1]), vec![1f32]).unwrap());
        let at = |p: i64| Tensor::from_array("i", &ArrayD::from_shape_vec(IxDyn(&[1]), vec![p]).unwrap());
        assert!(densify(&v, &at(6), &[2, 3], u64::MAX).unwrap_err().to_string().contains("outside"));
        assert!(densify(&v, &at(-1), &[2, 3], u64::MAX).is_err());
        assert!(densify(&v, &at(0), &[1 << 40, 1 << 20], 1 << 30).unwrap_err().to_string().contains("memory limit"));
        assert!(densify(&v, &at(0), &[-2, 3], u64::MAX).is_err());
        // Indices whose bytes are fewer than their dims say (read before the graph is validated).
        let mut short = at(0);
        short.dims = vec![1, 2];
        assert!(densify(&v, &short, &[2, 3], u64::MAX).unwrap_err().to_string().contains("indices"));
    }
}
