//! Element types, numbered as `TensorProto.DataType`.

use std::fmt;

/// An ONNX element type. Unknown numbers are kept, so a model with a newer
/// type still round-trips.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DataType(pub i32);

impl DataType {
    /// ONNX `TensorProto.UNDEFINED` (0).
    pub const UNDEFINED: DataType = DataType(0);
    /// ONNX `TensorProto.FLOAT` (1).
    pub const FLOAT: DataType = DataType(1);
    /// ONNX `TensorProto.UINT8` (2).
    pub const UINT8: DataType = DataType(2);
    /// ONNX `TensorProto.INT8` (3).
    pub const INT8: DataType = DataType(3);
    /// ONNX `TensorProto.UINT16` (4).
    pub const UINT16: DataType = DataType(4);
    /// ONNX `TensorProto.INT16` (5).
    pub const INT16: DataType = DataType(5);
    /// ONNX `TensorProto.INT32` (6).
    pub const INT32: DataType = DataType(6);
    /// ONNX `TensorProto.INT64` (7).
    pub const INT64: DataType = DataType(7);
    /// ONNX `TensorProto.STRING` (8).
    pub const STRING: DataType = DataType(8);
    /// ONNX `TensorProto.BOOL` (9).
    pub const BOOL: DataType = DataType(9);
    /// ONNX `TensorProto.FLOAT16` (10).
    pub const FLOAT16: DataType = DataType(10);
    /// ONNX `TensorProto.DOUBLE` (11).
    pub const DOUBLE: DataType = DataType(11);
    /// ONNX `TensorProto.UINT32` (12).
    pub const UINT32: DataType = DataType(12);
    /// ONNX `TensorProto.UINT64` (13).
    pub const UINT64: DataType = DataType(13);
    /// ONNX `TensorProto.COMPLEX64` (14).
    pub const COMPLEX64: DataType = DataType(14);
    /// ONNX `TensorProto.COMPLEX128` (15).
    pub const COMPLEX128: DataType = DataType(15);
    /// ONNX `TensorProto.BFLOAT16` (16).
    pub const BFLOAT16: DataType = DataType(16);
    /// ONNX `TensorProto.UINT4` (21).
    pub const UINT4: DataType = DataType(21);
    /// ONNX `TensorProto.INT4` (22).
    pub const INT4: DataType = DataType(22);

    /// Bits one element takes in `raw_data`; `None` for strings and unknown types.
    pub fn bits(self) -> Option<usize> {
        Some(match self.0 {
            1 | 6 | 12 => 32,
            2 | 3 | 9 | 17..=20 | 24 => 8,
            4 | 5 | 10 | 16 => 16,
            7 | 11 | 13 | 14 => 64,
            15 => 128,
            21..=23 => 4,
            25 | 26 => 2,
            27 | 28 => 6,
            _ => return None,
        })
    }

    /// Floating-point types (whose constants count as parameters).
    pub fn is_float(self) -> bool {
        matches!(self.0, 1 | 10 | 11 | 16 | 17..=20 | 23 | 24 | 27 | 28)
    }

    /// Bytes that `n` elements take in `raw_data` (sub-byte types are packed).
    pub fn byte_len(self, n: usize) -> Option<usize> {
        self.bits().map(|b| (n * b).div_ceil(8))
    }

    /// The ONNX name, e.g. `FLOAT`.
    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "undefined",
            1 => "float32",
            2 => "uint8",
            3 => "int8",
            4 => "uint16",
            5 => "int16",
            6 => "int32",
            7 => "int64",
            8 => "string",
            9 => "bool",
            10 => "float16",
            11 => "float64",
            12 => "uint32",
            13 => "uint64",
            14 => "complex64",
            15 => "complex128",
            16 => "bfloat16",
            17 => "float8e4m3fn",
            18 => "float8e4m3fnuz",
            19 => "float8e5m2",
            20 => "float8e5m2fnuz",
            21 => "uint4",
            22 => "int4",
            23 => "float4e2m1",
            24 => "float8e8m0",
            25 => "uint2",
            26 => "int2",
            27 => "float6e2m3",
            28 => "float6e3m2",
            _ => "unknown",
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            "unknown" => write!(f, "dtype#{}", self.0),
            n => f.write_str(n),
        }
    }
}
