//! A dense array of one of the element types models take and give.

use crate::ir::DataType;
use crate::{Error, Result};
use ndarray::{ArrayD, Axis, IxDyn, Slice};

/// A typed n-dimensional array: what models take and give.
#[derive(Clone, Debug, PartialEq)]
pub enum Array {
    /// float32.
    F32(ArrayD<f32>),
    /// float64.
    F64(ArrayD<f64>),
    /// int64.
    I64(ArrayD<i64>),
    /// int32.
    I32(ArrayD<i32>),
    /// int8.
    I8(ArrayD<i8>),
    /// uint8.
    U8(ArrayD<u8>),
    /// bool.
    Bool(ArrayD<bool>),
}

/// Applies the same generic expression to whichever array the enum holds.
macro_rules! each {
    ($self:expr, $a:ident => $e:expr) => {
        match $self {
            Array::F32($a) => $e,
            Array::F64($a) => $e,
            Array::I64($a) => $e,
            Array::I32($a) => $e,
            Array::I8($a) => $e,
            Array::U8($a) => $e,
            Array::Bool($a) => $e,
        }
    };
}

/// Like `each!`, rebuilding the same variant from the expression's result.
macro_rules! map_each {
    ($self:expr, $a:ident => $e:expr) => {
        match $self {
            Array::F32($a) => Array::F32($e),
            Array::F64($a) => Array::F64($e),
            Array::I64($a) => Array::I64($e),
            Array::I32($a) => Array::I32($e),
            Array::I8($a) => Array::I8($e),
            Array::U8($a) => Array::U8($e),
            Array::Bool($a) => Array::Bool($e),
        }
    };
}

impl Array {
    /// Feeds the type, shape and values to `h` (floats by their bits), so equal
    /// arrays hash equal: measurements on the same data can be recognised.
    pub fn hash_into(&self, h: &mut impl std::hash::Hasher) {
        use std::hash::Hash;
        (self.dtype().0, self.shape()).hash(h);
        match self {
            Array::F32(a) => a.iter().for_each(|v| v.to_bits().hash(h)),
            Array::F64(a) => a.iter().for_each(|v| v.to_bits().hash(h)),
            Array::I64(a) => a.iter().for_each(|v| v.hash(h)),
            Array::I32(a) => a.iter().for_each(|v| v.hash(h)),
            Array::I8(a) => a.iter().for_each(|v| v.hash(h)),
            Array::U8(a) => a.iter().for_each(|v| v.hash(h)),
            Array::Bool(a) => a.iter().for_each(|v| v.hash(h)),
        }
    }

    /// The dimensions.
    pub fn shape(&self) -> &[usize] {
        each!(self, a => a.shape())
    }

    /// The rank.
    pub fn ndim(&self) -> usize {
        self.shape().len()
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        each!(self, a => a.len())
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ONNX element type.
    pub fn dtype(&self) -> DataType {
        match self {
            Array::F32(_) => DataType::FLOAT,
            Array::F64(_) => DataType::DOUBLE,
            Array::I64(_) => DataType::INT64,
            Array::I32(_) => DataType::INT32,
            Array::I8(_) => DataType::INT8,
            Array::U8(_) => DataType::UINT8,
            Array::Bool(_) => DataType::BOOL,
        }
    }

    /// Rows `start..end` along the first (batch) axis.
    /// Rows `start..end` along the first axis; a scalar (an unbatched input) whole.
    pub fn rows(&self, start: usize, end: usize) -> Array {
        if self.shape().is_empty() {
            return self.clone();
        }
        map_each!(self, a => a.slice_axis(Axis(0), Slice::from(start..end)).to_owned())
    }

    /// Entries `start..end` along `axis`.
    pub fn slice_along(&self, axis: usize, start: usize, end: usize) -> Array {
        map_each!(self, a => a.slice_axis(Axis(axis), Slice::from(start..end)).to_owned())
    }

    /// Rows along the first axis (1 for a scalar).
    pub fn row_count(&self) -> usize {
        self.shape().first().copied().unwrap_or(1)
    }

    /// Stacks arrays along the first axis (all of one type and row shape).
    pub fn concat(parts: &[Array]) -> Result<Array> {
        Array::concat_along(0, parts)
    }

    /// Joins arrays along `axis` (all of one type, equal in every other axis).
    pub fn concat_along(axis: usize, parts: &[Array]) -> Result<Array> {
        let first = parts.first().ok_or_else(|| Error::Data("nothing to concatenate".into()))?;
        macro_rules! cat {
            ($v:ident) => {{
                let views: Option<Vec<_>> =
                    parts.iter().map(|p| if let Array::$v(a) = p { Some(a.view()) } else { None }).collect();
                let views = views.ok_or_else(|| Error::Data("cannot concatenate arrays of different types".into()))?;
                Array::$v(ndarray::concatenate(Axis(axis), &views).map_err(|e| Error::Data(e.to_string()))?)
            }};
        }
        Ok(match first {
            Array::F32(_) => cat!(F32),
            Array::F64(_) => cat!(F64),
            Array::I64(_) => cat!(I64),
            Array::I32(_) => cat!(I32),
            Array::I8(_) => cat!(I8),
            Array::U8(_) => cat!(U8),
            Array::Bool(_) => cat!(Bool),
        })
    }

    /// Values as f32 (integers converted, booleans 0/1).
    pub fn to_f32(&self) -> ArrayD<f32> {
        match self {
            Array::F32(a) => a.clone(),
            Array::F64(a) => a.mapv(|v| v as f32),
            Array::I64(a) => a.mapv(|v| v as f32),
            Array::I32(a) => a.mapv(|v| v as f32),
            Array::I8(a) => a.mapv(f32::from),
            Array::U8(a) => a.mapv(f32::from),
            Array::Bool(a) => a.mapv(|v| v as u8 as f32),
        }
    }

    /// Values as i64, for labels (floats must be whole numbers).
    pub fn to_i64(&self) -> Result<ArrayD<i64>> {
        Ok(match self {
            Array::I64(a) => a.clone(),
            Array::I32(a) => a.mapv(i64::from),
            Array::I8(a) => a.mapv(i64::from),
            Array::U8(a) => a.mapv(i64::from),
            Array::Bool(a) => a.mapv(i64::from),
            Array::F32(_) | Array::F64(_) => {
                let f = self.to_f32();
                if f.iter().any(|v| v.fract() != 0.0) {
                    return Err(Error::Data("labels must be whole numbers".into()));
                }
                f.mapv(|v| v as i64)
            }
        })
    }

    /// This array converted to `dtype`, where that is a plain numeric cast
    /// (e.g. int32 token ids for an int64 input).
    pub fn cast(&self, dtype: DataType) -> Option<Array> {
        if self.dtype() == dtype {
            return Some(self.clone());
        }
        let f = || self.to_f32();
        let i = || self.to_i64().ok();
        Some(match dtype {
            DataType::FLOAT => Array::F32(f()),
            DataType::DOUBLE => Array::F64(f().mapv(f64::from)),
            DataType::INT64 => Array::I64(i()?),
            DataType::INT32 => Array::I32(i()?.mapv(|v| v as i32)),
            _ => return None,
        })
    }

    /// The values in row-major order as little-endian bytes (bool as one byte), as runtimes'
    /// C buffers hold them.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.dtype().byte_len(self.len()).unwrap_or(0));
        each!(self, a => a.iter().for_each(|v| v.put_le(&mut out)));
        out
    }

    /// The array of `dtype` and `shape` whose row-major little-endian values are `bytes`;
    /// `None` for a type it cannot hold or a length that does not match.
    pub fn from_le_bytes(dtype: DataType, shape: &[usize], bytes: &[u8]) -> Option<Array> {
        fn read<T: LeBytes>(shape: &[usize], bytes: &[u8]) -> Option<ArrayD<T>> {
            let values: Vec<T> = bytes.chunks_exact(T::SIZE).map(T::from_le).collect();
            ArrayD::from_shape_vec(IxDyn(shape), values).ok()
        }
        let count: usize = shape.iter().product();
        let size = match dtype {
            DataType::FLOAT | DataType::INT32 => 4,
            DataType::DOUBLE | DataType::INT64 => 8,
            DataType::INT8 | DataType::UINT8 | DataType::BOOL => 1,
            _ => return None,
        };
        if bytes.len() != count * size {
            return None;
        }
        Some(match dtype {
            DataType::FLOAT => Array::F32(read(shape, bytes)?),
            DataType::DOUBLE => Array::F64(read(shape, bytes)?),
            DataType::INT64 => Array::I64(read(shape, bytes)?),
            DataType::INT32 => Array::I32(read(shape, bytes)?),
            DataType::INT8 => Array::I8(read(shape, bytes)?),
            DataType::UINT8 => Array::U8(read(shape, bytes)?),
            _ => Array::Bool(read(shape, bytes)?),
        })
    }

    /// An array of zeros of `dtype` and `shape`; `None` for types it cannot hold.
    pub fn zeros(dtype: DataType, shape: &[usize]) -> Option<Array> {
        let s = IxDyn(shape);
        Some(match dtype {
            DataType::FLOAT => Array::F32(ArrayD::zeros(s)),
            DataType::DOUBLE => Array::F64(ArrayD::zeros(s)),
            DataType::INT64 => Array::I64(ArrayD::zeros(s)),
            DataType::INT32 => Array::I32(ArrayD::zeros(s)),
            DataType::INT8 => Array::I8(ArrayD::zeros(s)),
            DataType::UINT8 => Array::U8(ArrayD::zeros(s)),
            DataType::BOOL => Array::Bool(ArrayD::from_elem(s, false)),
            _ => return None,
        })
    }
}

/// An element's little-endian bytes, both ways.
trait LeBytes: Sized + Clone {
    const SIZE: usize;
    fn put_le(&self, out: &mut Vec<u8>);
    fn from_le(bytes: &[u8]) -> Self;
}

macro_rules! le_bytes {
    ($($t:ty),*) => {$(
        impl LeBytes for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn put_le(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn from_le(bytes: &[u8]) -> Self {
                <$t>::from_le_bytes(bytes.try_into().expect("chunks of the element's size"))
            }
        }
    )*};
}
le_bytes!(f32, f64, i64, i32, i8, u8);

impl LeBytes for bool {
    const SIZE: usize = 1;
    fn put_le(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
    fn from_le(bytes: &[u8]) -> Self {
        bytes[0] != 0
    }
}
