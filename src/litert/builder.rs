//! The LiteRT graph under construction: tensors, constant buffers, operators and the operator-code
//! table, written as one flatbuffer with a signature that names the inputs and outputs as the
//! ONNX model does.

use prunq_litert_schema as lt;
use std::collections::BTreeMap;

/// A tensor's index in the subgraph.
pub(crate) type TensorId = i32;

/// The LiteRT element types prunq writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ElementType {
    F32,
    F16,
    I32,
    I64,
    I8,
    U8,
    Bool,
}

impl ElementType {
    fn schema(self) -> lt::TensorType {
        match self {
            ElementType::F32 => lt::TensorType::Float32,
            ElementType::F16 => lt::TensorType::Float16,
            ElementType::I32 => lt::TensorType::Int32,
            ElementType::I64 => lt::TensorType::Int64,
            ElementType::I8 => lt::TensorType::Int8,
            ElementType::U8 => lt::TensorType::Uint8,
            ElementType::Bool => lt::TensorType::Bool,
        }
    }
}

/// The lowest version of an op LiteRT registers (1 for most; BROADCAST_TO's version 1 was
/// never a builtin).
fn first_version(code: lt::BuiltinOperator) -> i32 {
    match code {
        lt::BuiltinOperator::BroadcastTo => 2,
        _ => 1,
    }
}

/// LiteRT's quantization parameters.
pub(crate) fn quantization(scales: &[f32], zero_points: &[i64], axis: usize) -> lt::QuantizationParameters {
    lt::QuantizationParameters {
        scale: Some(scales.to_vec()),
        zero_point: Some(zero_points.to_vec()),
        quantized_dimension: axis as i32,
        ..Default::default()
    }
}

/// Builds one subgraph.
#[derive(Default)]
pub(crate) struct Builder {
    tensors: Vec<lt::Tensor>,
    // Buffer 0 is the empty buffer every non-constant tensor points at.
    buffers: Vec<lt::Buffer>,
    metadata: Vec<lt::Metadata>,
    operators: Vec<lt::Operator>,
    codes: Vec<lt::OperatorCode>,
    code_index: BTreeMap<i32, u32>,
    inputs: Vec<(String, TensorId)>,
    outputs: Vec<(String, TensorId)>,
    names: BTreeMap<String, usize>,
}

impl Builder {
    pub fn new() -> Builder {
        Builder { buffers: vec![lt::Buffer::default()], ..Default::default() }
    }

    /// A unique tensor name from `name` (LiteRT requires none; it keeps the file readable and
    /// the ONNX names findable).
    fn unique(&mut self, name: &str) -> String {
        let n = self.names.entry(name.to_string()).or_insert(0);
        *n += 1;
        if *n == 1 {
            name.to_string()
        } else {
            format!("{name}_{n}")
        }
    }

    /// A tensor computed at run time.
    pub fn tensor(&mut self, name: &str, dtype: ElementType, shape: &[usize]) -> TensorId {
        self.push_tensor(name, dtype, shape, 0, None)
    }

    /// An int8 tensor computed at run time with per-tensor (or per-channel along `axis`)
    /// parameters.
    pub fn quantized(
        &mut self,
        name: &str,
        shape: &[usize],
        scales: &[f32],
        zero_points: &[i64],
        axis: usize,
    ) -> TensorId {
        self.push_tensor(name, ElementType::I8, shape, 0, Some(quantization(scales, zero_points, axis)))
    }

    /// A tensor's quantization parameters, if it has any.
    pub fn quantization_of(&self, t: TensorId) -> Option<lt::QuantizationParameters> {
        self.tensors[t as usize].quantization.as_deref().cloned()
    }

    /// A tensor of the same type and parameters as `t`, with another shape.
    pub fn like(&mut self, t: TensorId, name: &str, shape: &[usize]) -> TensorId {
        let mut copy = self.tensors[t as usize].clone();
        copy.name = Some(self.unique(name));
        copy.shape = Some(shape.iter().map(|&d| d as i32).collect());
        copy.buffer = 0;
        self.tensors.push(copy);
        (self.tensors.len() - 1) as TensorId
    }

    /// A constant holding `bytes` (little-endian, row-major).
    pub fn constant(
        &mut self,
        name: &str,
        dtype: ElementType,
        shape: &[usize],
        bytes: Vec<u8>,
        q: Option<lt::QuantizationParameters>,
    ) -> TensorId {
        self.buffers.push(lt::Buffer { data: Some(bytes), ..Default::default() });
        let buffer = (self.buffers.len() - 1) as u32;
        self.push_tensor(name, dtype, shape, buffer, q)
    }

    pub fn constant_f32(&mut self, name: &str, shape: &[usize], values: &[f32]) -> TensorId {
        self.constant(name, ElementType::F32, shape, values.iter().flat_map(|v| v.to_le_bytes()).collect(), None)
    }

    pub fn constant_i32(&mut self, name: &str, shape: &[usize], values: &[i32]) -> TensorId {
        self.constant(name, ElementType::I32, shape, values.iter().flat_map(|v| v.to_le_bytes()).collect(), None)
    }

    fn push_tensor(
        &mut self,
        name: &str,
        dtype: ElementType,
        shape: &[usize],
        buffer: u32,
        q: Option<lt::QuantizationParameters>,
    ) -> TensorId {
        let name = self.unique(name);
        self.tensors.push(lt::Tensor {
            shape: Some(shape.iter().map(|&d| d as i32).collect()),
            type_: dtype.schema(),
            buffer,
            name: Some(name),
            quantization: q.map(Box::new),
            has_rank: true,
            ..Default::default()
        });
        (self.tensors.len() - 1) as TensorId
    }

    /// The shape a tensor was made with.
    pub fn shape(&self, t: TensorId) -> Vec<usize> {
        self.tensors[t as usize].shape.iter().flatten().map(|&d| d as usize).collect()
    }

    /// Appends an operator.
    pub fn op(
        &mut self,
        code: lt::BuiltinOperator,
        inputs: &[TensorId],
        outputs: &[TensorId],
        options: Option<lt::BuiltinOptions>,
    ) {
        let key = code as i32;
        let opcode_index = match self.code_index.get(&key) {
            Some(&i) => i,
            None => {
                // Codes past 127 live in `builtin_code`; the deprecated byte holds the
                // placeholder 127 for them, as LiteRT's own writers do.
                let deprecated = if key < 127 { key as i8 } else { 127 };
                self.codes.push(lt::OperatorCode {
                    deprecated_builtin_code: deprecated,
                    builtin_code: code,
                    version: first_version(code),
                    ..Default::default()
                });
                let i = (self.codes.len() - 1) as u32;
                self.code_index.insert(key, i);
                i
            }
        };
        self.operators.push(lt::Operator {
            opcode_index,
            inputs: Some(inputs.to_vec()),
            outputs: Some(outputs.to_vec()),
            builtin_options: options,
            ..Default::default()
        });
    }

    /// Declares a subgraph input under its signature name.
    pub fn input(&mut self, name: &str, t: TensorId) {
        self.inputs.push((name.to_string(), t));
    }

    /// Declares a subgraph output under its signature name.
    pub fn output(&mut self, name: &str, t: TensorId) {
        self.outputs.push((name.to_string(), t));
    }

    /// Names `bytes` as the model's metadata `name` (LiteRT keeps a name → buffer table).
    pub fn metadata(&mut self, name: &str, bytes: Vec<u8>) {
        self.buffers.push(lt::Buffer { data: Some(bytes), ..Default::default() });
        let buffer = (self.buffers.len() - 1) as u32;
        self.metadata.push(lt::Metadata { name: Some(name.to_string()), buffer });
    }

    /// How many operators were written.
    pub fn operator_count(&self) -> usize {
        self.operators.len()
    }

    /// The model as LiteRT reads it.
    pub fn finish(self, description: &str) -> Vec<u8> {
        let map = |io: &[(String, TensorId)]| -> Vec<lt::TensorMap> {
            io.iter().map(|(n, t)| lt::TensorMap { name: Some(n.clone()), tensor_index: *t as u32 }).collect()
        };
        let signature = lt::SignatureDef {
            inputs: Some(map(&self.inputs)),
            outputs: Some(map(&self.outputs)),
            signature_key: Some("serving_default".into()),
            subgraph_index: 0,
        };
        let subgraph = lt::SubGraph {
            tensors: Some(self.tensors),
            inputs: Some(self.inputs.iter().map(|(_, t)| *t).collect()),
            outputs: Some(self.outputs.iter().map(|(_, t)| *t).collect()),
            operators: Some(self.operators),
            name: Some("main".into()),
            ..Default::default()
        };
        let model = lt::Model {
            version: 3,
            operator_codes: Some(self.codes),
            subgraphs: Some(vec![subgraph]),
            description: Some(description.into()),
            buffers: Some(self.buffers),
            signature_defs: Some(vec![signature]),
            metadata: (!self.metadata.is_empty()).then_some(self.metadata),
            ..Default::default()
        };
        lt::finish_model(&model)
    }
}
