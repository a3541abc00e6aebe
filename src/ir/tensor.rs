//! Constant tensors: an element type, dims and little-endian bytes.
//!
//! Bytes rather than a typed ndarray so that every ONNX type (int4, float8,
//! bfloat16, strings …) round-trips, large weights are shared (`Bytes`), and
//! passes convert to the ndarray they need with [`Tensor::to_array`] /
//! [`Tensor::from_array`].

use super::DataType;
use crate::{Error, Result};
use bytes::Bytes;
use ndarray::{ArrayD, IxDyn};

/// Called with a tensor's bytes when a pass has replaced or removed it (set by
/// the loader for memory-mapped external data: the pages go back to the kernel,
/// and are read again from the file should anything still look at them).
static RELEASE: std::sync::OnceLock<fn(&[u8])> = std::sync::OnceLock::new();

/// Sets the function called with a memory-mapped weight's bytes when a pass replaces it
/// (so its pages can be handed back to the kernel).
pub fn set_release_hook(hook: fn(&[u8])) {
    let _ = RELEASE.set(hook);
}

/// Tells the loader `t`'s data is no longer needed by the model.
pub(crate) fn release(t: &Tensor) {
    if let (Some(hook), TensorData::Bytes(b)) = (RELEASE.get(), &t.data) {
        hook(b);
    }
}

/// How a tensor was stored in the file, so an unchanged model is written back
/// the same way.
#[derive(Clone, Debug, PartialEq)]
pub enum Storage {
    /// `raw_data`, little-endian.
    Raw,
    /// The typed repeated fields (`float_data`, `int32_data`, …).
    Typed,
    /// An external data file; the original `external_data` entries.
    External(Vec<(String, String)>),
    /// A `sparse_initializer`: the non-zero elements and their positions.
    Sparse(super::SparseLayout),
}

/// A tensor's values.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    /// Little-endian element bytes, sub-byte types packed low nibble first.
    Bytes(Bytes),
    /// `STRING` elements, each as its bytes.
    Strings(Vec<Vec<u8>>),
}

/// A constant: element type, dimensions, values and how the file stores them.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// The tensor's name (the graph's value name for initializers).
    pub name: String,
    /// Element type.
    pub dtype: DataType,
    /// Dimensions (ONNX's int64).
    pub dims: Vec<i64>,
    /// The values.
    pub data: TensorData,
    /// How the file stores it (raw, typed fields, external, sparse).
    pub storage: Storage,
    /// `TensorProto.doc_string`, carried through.
    pub doc_string: String,
    /// `TensorProto.metadata_props`, carried through.
    pub metadata_props: Vec<(String, String)>,
    /// `TensorProto.segment` (begin, end), carried through.
    pub segment: Option<(i64, i64)>,
}

/// A Rust element type that maps to one ONNX element type.
pub trait Element: Copy + Default + 'static {
    /// The ONNX element type.
    const DTYPE: DataType;
    /// Bytes per element.
    const SIZE: usize;
    /// Reads one element from little-endian bytes.
    fn read_le(b: &[u8]) -> Self;
    /// Appends the element's little-endian bytes.
    fn write_le(self, out: &mut Vec<u8>);
}

macro_rules! element {
    ($t:ty, $dt:ident) => {
        impl Element for $t {
            const DTYPE: DataType = DataType::$dt;
            const SIZE: usize = std::mem::size_of::<$t>();
            fn read_le(b: &[u8]) -> Self {
                let mut a = [0u8; std::mem::size_of::<$t>()];
                a.copy_from_slice(b);
                <$t>::from_le_bytes(a)
            }
            fn write_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    };
}
element!(f32, FLOAT);
element!(f64, DOUBLE);
element!(i64, INT64);
element!(i32, INT32);
element!(i16, INT16);
element!(i8, INT8);
element!(u8, UINT8);
element!(u16, UINT16);
element!(u32, UINT32);
element!(u64, UINT64);
element!(half::f16, FLOAT16);

impl Tensor {
    /// A tensor stored as `raw_data`.
    pub fn from_bytes(name: impl Into<String>, dtype: DataType, dims: Vec<i64>, bytes: Bytes) -> Tensor {
        Tensor {
            name: name.into(),
            dtype,
            dims,
            data: TensorData::Bytes(bytes),
            storage: Storage::Raw,
            doc_string: String::new(),
            metadata_props: vec![],
            segment: None,
        }
    }

    /// A tensor holding `array`'s values, stored raw.
    pub fn from_array<T: Element>(name: impl Into<String>, array: &ArrayD<T>) -> Tensor {
        let mut out = Vec::with_capacity(array.len() * T::SIZE);
        for v in array.iter() {
            v.write_le(&mut out);
        }
        let dims = array.shape().iter().map(|&d| d as i64).collect();
        Tensor::from_bytes(name, T::DTYPE, dims, out.into())
    }

    /// A rank-0 tensor holding `v`.
    pub fn scalar<T: Element>(name: impl Into<String>, v: T) -> Tensor {
        Tensor::from_array(name, &ArrayD::from_elem(IxDyn(&[]), v))
    }

    /// Number of elements (1 for a scalar); `None` if a dim is negative or it overflows.
    pub fn numel(&self) -> Option<usize> {
        self.dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(usize::try_from(d).ok()?))
    }

    /// The dimensions as `usize` (negative ones read as 0).
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().map(|&d| d.max(0) as usize).collect()
    }

    /// The raw little-endian bytes (`None` for strings).
    pub fn bytes(&self) -> Option<&Bytes> {
        match &self.data {
            TensorData::Bytes(b) => Some(b),
            TensorData::Strings(_) => None,
        }
    }

    /// Bytes this tensor's data takes.
    pub fn byte_size(&self) -> usize {
        match &self.data {
            TensorData::Bytes(b) => b.len(),
            TensorData::Strings(s) => s.iter().map(Vec::len).sum(),
        }
    }

    /// Checks that the data holds exactly `numel` elements of `dtype`.
    pub fn check(&self) -> Result<()> {
        let bad = |why: String| Error::Model(format!("tensor '{}': {why}", self.name));
        let n = self.numel().ok_or_else(|| bad(format!("invalid dims {:?}", self.dims)))?;
        match &self.data {
            TensorData::Strings(s) if s.len() != n => Err(bad(format!("{} strings for {n} elements", s.len()))),
            TensorData::Strings(_) => Ok(()),
            TensorData::Bytes(b) => match self.dtype.byte_len(n) {
                Some(len) if len != b.len() => {
                    Err(bad(format!("{} bytes of data for {n} {} elements (expected {len})", b.len(), self.dtype)))
                }
                Some(_) => Ok(()),
                None => Err(bad(format!("unsupported element type {}", self.dtype))),
            },
        }
    }

    /// The data as an array of exactly `T`'s type.
    pub fn to_array<T: Element>(&self) -> Result<ArrayD<T>> {
        if self.dtype != T::DTYPE {
            return Err(Error::Model(format!("tensor '{}' is {}, expected {}", self.name, self.dtype, T::DTYPE)));
        }
        self.check()?;
        let b = self.bytes().expect("checked: numeric");
        let v: Vec<T> = b.chunks_exact(T::SIZE).map(T::read_le).collect();
        ArrayD::from_shape_vec(IxDyn(&self.shape()), v)
            .map_err(|e| Error::Model(format!("tensor '{}': {e}", self.name)))
    }

    /// The data converted to f32, from any numeric type with an exact or
    /// nearest f32 value.
    pub fn to_f32(&self) -> Result<ArrayD<f32>> {
        Ok(match self.dtype {
            DataType::FLOAT => self.to_array::<f32>()?,
            DataType::DOUBLE => self.to_array::<f64>()?.mapv(|v| v as f32),
            DataType::FLOAT16 => self.to_array::<half::f16>()?.mapv(f32::from),
            DataType::INT64 => self.to_array::<i64>()?.mapv(|v| v as f32),
            DataType::INT32 => self.to_array::<i32>()?.mapv(|v| v as f32),
            DataType::INT16 => self.to_array::<i16>()?.mapv(f32::from),
            DataType::INT8 => self.to_array::<i8>()?.mapv(f32::from),
            DataType::UINT8 => self.to_array::<u8>()?.mapv(f32::from),
            DataType::UINT16 => self.to_array::<u16>()?.mapv(f32::from),
            DataType::BFLOAT16 => {
                self.check()?;
                let b = self.bytes().expect("checked: numeric");
                let v = b.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32());
                ArrayD::from_shape_vec(IxDyn(&self.shape()), v.collect())
                    .map_err(|e| Error::Model(format!("tensor '{}': {e}", self.name)))?
            }
            other => return Err(Error::Model(format!("tensor '{}': cannot read {other} as float", self.name))),
        })
    }

    /// Integer data (int64/int32, as used for shapes and axes) widened to i64.
    pub fn to_i64_vec(&self) -> Result<Vec<i64>> {
        Ok(match self.dtype {
            DataType::INT64 => self.to_array::<i64>()?.into_iter().collect(),
            DataType::INT32 => self.to_array::<i32>()?.into_iter().map(i64::from).collect(),
            other => {
                return Err(Error::Model(format!("tensor '{}' is {other}, expected an integer tensor", self.name)))
            }
        })
    }

    /// Elements equal to zero (±0.0 for floats); `None` for strings and sub-byte types.
    pub fn count_zeros(&self) -> Option<usize> {
        let b = self.bytes()?;
        let size = self.dtype.bits()? / 8;
        if size == 0 {
            return None;
        }
        Some(b.chunks_exact(size).filter(|c| c.iter().all(|&x| x == 0) || is_negative_zero(c, self.dtype)).count())
    }
}

fn is_negative_zero(c: &[u8], dtype: DataType) -> bool {
    match dtype {
        DataType::FLOAT => f32::from_le_bytes([c[0], c[1], c[2], c[3]]) == 0.0,
        DataType::FLOAT16 | DataType::BFLOAT16 => c[0] == 0 && c[1] == 0x80,
        DataType::DOUBLE => c[..7].iter().all(|&x| x == 0) && c[7] == 0x80,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_round_trip_and_f32_view() {
        let a = ArrayD::from_shape_vec(IxDyn(&[2, 2]), vec![1i8, -2, 3, -4]).unwrap();
        let t = Tensor::from_array("w", &a);
        assert_eq!(t.dims, vec![2, 2]);
        assert_eq!(t.to_array::<i8>().unwrap(), a);
        assert_eq!(t.to_f32().unwrap().into_raw_vec_and_offset().0, vec![1.0, -2.0, 3.0, -4.0]);
        assert!(t.to_array::<f32>().is_err());
    }

    #[test]
    fn short_data_is_an_error_naming_the_tensor() {
        let t = Tensor::from_bytes("w", DataType::FLOAT, vec![4], Bytes::from_static(&[0; 12]));
        let e = t.to_f32().unwrap_err().to_string();
        assert!(e.contains("'w'") && e.contains("12 bytes"), "{e}");
    }

    #[test]
    fn zeros_are_counted_including_negative_zero() {
        let a = ArrayD::from_shape_vec(IxDyn(&[4]), vec![0.0f32, -0.0, 1.0, 2.0]).unwrap();
        assert_eq!(Tensor::from_array("w", &a).count_zeros(), Some(2));
    }
}
