//! The state of one conversion: which LiteRT tensor holds each ONNX value, and in which layout.
//!
//! Layout is decided per value, not per model. Ops that LiteRT runs channels-last (convolutions,
//! pools) produce NHWC values; ops that do not care (element-wise, activations) pass the layout
//! through; ops whose meaning depends on the axis order (Reshape, Flatten, MatMul, Softmax over an
//! axis…) get the ONNX order back — by a TRANSPOSE, or by a RESHAPE when the two orders hold the
//! same bytes (`[N,1,1,C]` after a global pool: the classic Flatten-after-conv case). Each view
//! of a value is made once and shared by its readers.

use super::builder::{Builder, ElementType, TensorId};
use super::qdq::{QParams, QdqTable};
use crate::ir::{DataType, Graph, GraphIndex, Node, Tensor};
use crate::{Error, Result};
use prunq_litert_schema as lt;
use std::collections::{BTreeMap, BTreeSet};

/// ONNX NCHW → LiteRT NHWC.
pub(crate) const TO_NHWC: [usize; 4] = [0, 2, 3, 1];
/// LiteRT NHWC → ONNX NCHW.
pub(crate) const TO_NCHW: [usize; 4] = [0, 3, 1, 2];

/// A value as written: its tensor and whether its axes are NHWC (rank 4 only).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Value {
    pub id: TensorId,
    pub nhwc: bool,
    /// Int8 with these parameters; float otherwise.
    pub q: Option<QParams>,
}

/// Element types, shapes and the tensors written so far.
pub(crate) struct Lowering<'a> {
    pub b: Builder,
    pub g: &'a Graph,
    pub index: GraphIndex,
    types: &'a BTreeMap<String, (DataType, Vec<usize>)>,
    values: BTreeMap<String, Value>,
    /// Views of a value by (name, NHWC, int8), each made once.
    views: BTreeMap<(String, bool, bool), TensorId>,
    /// The Q/DQ pairs of a static int8 model (empty for a float one).
    pub qdq: QdqTable,
    /// Nodes already written as part of an earlier node (a fused activation).
    pub absorbed: BTreeSet<usize>,
    /// TRANSPOSEs written to change a value's layout (not the model's own Transposes).
    pub transposes: usize,
    /// The model's ONNX opset (defaults that changed across opsets).
    pub opset: i64,
    /// Weights (and float constants of at least [`FP16_FROM`] values) stored as float16, each
    /// read through a DEQUANTIZE to float32 (LiteRT's float16 form; XNNPACK unpacks it at load).
    pub fp16: bool,
    /// Float fully connected layers with symmetric int8 weights read them as int8 (LiteRT's
    /// dynamic-range form; see `ConvertOptions::dynamic_range`), counted.
    pub dynamic_range: bool,
    pub dynamic_range_layers: usize,
}

/// Float constants this large or larger are stored as float16 when converting to fp16.
pub(crate) const FP16_FROM: usize = 1024;

/// `shape` read in the order `perm`.
pub(crate) fn permute(shape: &[usize], perm: &[usize]) -> Vec<usize> {
    perm.iter().map(|&p| shape[p]).collect()
}

pub(crate) fn element_type(dtype: DataType, what: &str) -> Result<ElementType> {
    Ok(match dtype {
        DataType::FLOAT => ElementType::F32,
        DataType::FLOAT16 => ElementType::F16,
        DataType::INT32 => ElementType::I32,
        DataType::INT64 => ElementType::I64,
        DataType::INT8 => ElementType::I8,
        DataType::UINT8 => ElementType::U8,
        DataType::BOOL => ElementType::Bool,
        other => return Err(Error::Model(format!("{what} is {}, which LiteRT models do not hold", other.name()))),
    })
}

impl<'a> Lowering<'a> {
    pub fn new(g: &'a Graph, types: &'a BTreeMap<String, (DataType, Vec<usize>)>, opset: i64) -> Lowering<'a> {
        Lowering {
            b: Builder::new(),
            g,
            index: GraphIndex::new(g),
            types,
            values: BTreeMap::new(),
            views: BTreeMap::new(),
            qdq: QdqTable::default(),
            absorbed: BTreeSet::new(),
            transposes: 0,
            opset,
            fp16: false,
            dynamic_range: false,
            dynamic_range_layers: 0,
        }
    }

    /// The ONNX shape of a value.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        self.types
            .get(name)
            .map(|t| t.1.clone())
            .ok_or_else(|| Error::Model(format!("tensor {name}: its shape is unknown")))
    }

    /// The element type of a value.
    pub fn dtype(&self, name: &str) -> Result<DataType> {
        self.types.get(name).map(|t| t.0).ok_or_else(|| Error::Model(format!("tensor {name}: its type is unknown")))
    }

    /// The constant's value, when `name` is one.
    pub fn constant(&self, name: &str) -> Option<Result<Tensor>> {
        self.g.constant(name)
    }

    /// The constant's values as float32 (any numeric type), when `name` is one.
    pub fn constant_f32(&self, name: &str) -> Option<Result<ndarray::ArrayD<f32>>> {
        self.constant(name).map(|t| t.and_then(|t| t.to_f32()))
    }

    /// The constant's values as int64, when `name` is an integer constant.
    pub fn constant_i64(&self, name: &str) -> Option<Result<Vec<i64>>> {
        self.constant(name).map(|t| t.and_then(|t| t.to_i64_vec()))
    }

    /// Whether `name` is read by exactly one node and is not a graph output: a node that writes
    /// it may fold its single reader in.
    pub fn sole_reader(&self, name: &str) -> Option<usize> {
        let readers = self.index.consumers(name);
        let is_output = self.g.outputs.iter().any(|o| o.name == name);
        (readers.len() == 1 && !is_output).then(|| readers[0].0)
    }

    /// A value as written (a constant is written on first use, in ONNX order).
    pub fn get(&mut self, name: &str) -> Result<Value> {
        if let Some(v) = self.values.get(name) {
            return Ok(*v);
        }
        let Some(t) = self.constant(name) else {
            return Err(Error::Model(format!("tensor {name} is read before it is computed")));
        };
        let t = t?;
        let id = if let Some(id) = self.dequantized_weight(name, &t.shape(), None) {
            id
        } else if t.dtype == DataType::FLOAT && self.fp16 && t.numel().unwrap_or(0) >= FP16_FROM {
            let values: Vec<f32> = t.to_f32()?.iter().copied().collect();
            self.weight(name, &t.shape(), &values)
        } else {
            let dtype = element_type(t.dtype, &format!("constant {name}"))?;
            let bytes = t.bytes().map(|b| b.to_vec()).unwrap_or_default();
            self.b.constant(name, dtype, &t.shape(), bytes, None)
        };
        let v = Value { id, nhwc: false, q: None };
        self.values.insert(name.to_string(), v);
        Ok(v)
    }

    /// A float32 weight: stored as float32, or (converting to fp16) as float16 behind a
    /// DEQUANTIZE.
    pub fn weight(&mut self, name: &str, shape: &[usize], values: &[f32]) -> TensorId {
        if !self.fp16 {
            return self.b.constant_f32(name, shape, values);
        }
        let halves: Vec<u8> = values.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
        let stored = self.b.constant(&format!("{name}/fp16"), ElementType::F16, shape, halves, None);
        let out = self.b.tensor(name, ElementType::F32, shape);
        self.b.op(lt::BuiltinOperator::Dequantize, &[stored], &[out], None);
        out
    }

    /// A weight the QDQ table holds as integers, read as float: the int8 values stored (as the
    /// ONNX file stores them, so the file keeps its size) behind a DEQUANTIZE. `perm` rearranges
    /// the ONNX layout (the quantized axis follows). `None` when the table has no such weight.
    pub fn dequantized_weight(&mut self, name: &str, shape: &[usize], perm: Option<&[usize]>) -> Option<TensorId> {
        let qw = self.qdq.weights.get(name).filter(|q| q.int8).cloned()?;
        let bytes: Vec<u8> = qw.values.iter().map(|&v| v as i8 as u8).collect();
        let (bytes, written, axis) = match perm {
            Some(p) => (
                super::ops::permute_bytes(&bytes, shape, p, 1),
                permute(shape, p),
                p.iter().position(|&a| a == qw.axis)?,
            ),
            None => (bytes, shape.to_vec(), qw.axis),
        };
        let zps: Vec<i64> = qw.zero_points.iter().map(|&z| z as i64).collect();
        let q = super::builder::quantization(&qw.scales, &zps, axis);
        let stored = self.b.constant(&format!("{name}/int8"), ElementType::I8, &written, bytes, Some(q));
        let out = self.b.tensor(name, ElementType::F32, &written);
        self.b.op(lt::BuiltinOperator::Dequantize, &[stored], &[out], None);
        Some(out)
    }

    /// Records that ONNX value `name` is tensor `v`.
    pub fn set(&mut self, name: &str, v: Value) {
        self.values.insert(name.to_string(), v);
    }

    /// A new tensor for ONNX value `name`, NHWC when `nhwc` (its shape permuted), recorded.
    pub fn output(&mut self, name: &str, nhwc: bool) -> Result<TensorId> {
        let shape = self.shape(name)?;
        let dtype = element_type(self.dtype(name)?, &format!("tensor {name}"))?;
        let written = if nhwc { permute(&shape, &TO_NHWC) } else { shape };
        let id = self.b.tensor(name, dtype, &written);
        self.set(name, Value { id, nhwc, q: None });
        Ok(id)
    }

    /// A new int8 tensor for ONNX value `name` with its parameters from the QDQ table, NHWC when
    /// `nhwc`, recorded.
    pub fn output_q(&mut self, name: &str, nhwc: bool, q: QParams) -> Result<TensorId> {
        let shape = self.shape(name)?;
        let written = if nhwc { permute(&shape, &TO_NHWC) } else { shape };
        let id = self.b.quantized(name, &written, &[q.scale], &[q.zero_point as i64], 0);
        self.set(name, Value { id, nhwc, q: Some(q) });
        Ok(id)
    }

    /// The int8 parameters of ONNX value `name`: as written, else from the QDQ table.
    pub fn params(&self, name: &str) -> Option<QParams> {
        self.values.get(name).and_then(|v| v.q).or_else(|| self.qdq.activations.get(name).copied())
    }

    /// `name` as int8 in the layout asked for, when it has int8 parameters (a float value is
    /// quantized once).
    pub fn int8(&mut self, name: &str, nhwc: bool) -> Result<Option<(TensorId, QParams)>> {
        let Some(q) = self.params(name) else { return Ok(None) };
        Ok(Some((self.view(name, nhwc, true)?, q)))
    }

    /// `name` as int8 with parameters `q` in the layout asked for: its int8 view, requantized
    /// (an int8 → int8 QUANTIZE) when its own parameters differ.
    pub fn requantized(&mut self, name: &str, nhwc: bool, q: QParams) -> Result<TensorId> {
        let (x, own) = self.int8(name, nhwc)?.ok_or_else(|| Error::Model(format!("tensor {name} is not int8")))?;
        if own == q {
            return Ok(x);
        }
        let shape = self.b.shape(x);
        let t = self.b.quantized(&format!("{name}/requantized"), &shape, &[q.scale], &[q.zero_point as i64], 0);
        self.b.op(lt::BuiltinOperator::Quantize, &[x], &[t], None);
        Ok(t)
    }

    /// A scratch tensor for a step inside one node's lowering.
    pub fn scratch(&mut self, name: &str, dtype: ElementType, shape: &[usize]) -> TensorId {
        self.b.tensor(name, dtype, shape)
    }

    /// `name` as float (as computed) in the layout it has: the value, or its DEQUANTIZE view.
    pub fn float_value(&mut self, name: &str) -> Result<Value> {
        let v = self.get(name)?;
        if v.q.is_none() {
            return Ok(v);
        }
        Ok(Value { id: self.view(name, v.nhwc, false)?, nhwc: v.nhwc, q: None })
    }

    /// `name` as float32 (any float dtype as computed) in ONNX axis order.
    pub fn onnx(&mut self, name: &str) -> Result<TensorId> {
        self.view(name, false, false)
    }

    /// `name` (rank 4) as float in NHWC order.
    pub fn nhwc(&mut self, name: &str) -> Result<TensorId> {
        if self.shape(name)?.len() != 4 {
            return Err(Error::Model(format!(
                "tensor {name} has rank {}, where an image of rank 4 is needed",
                self.shape(name)?.len()
            )));
        }
        self.view(name, true, false)
    }

    /// `name` in a layout (NHWC or ONNX order) and a type (int8 or as computed): the value
    /// itself when it is that, else a view made once — a DEQUANTIZE or QUANTIZE for the type, then
    /// a TRANSPOSE (or RESHAPE) for the layout.
    fn view(&mut self, name: &str, nhwc: bool, int8: bool) -> Result<TensorId> {
        let v = self.get(name)?;
        if v.nhwc == nhwc && v.q.is_some() == int8 {
            return Ok(v.id);
        }
        let key = (name.to_string(), nhwc, int8);
        if let Some(&t) = self.views.get(&key) {
            return Ok(t);
        }
        let shape = self.shape(name)?;
        let here = if v.nhwc { permute(&shape, &TO_NHWC) } else { shape.clone() };
        // The type first, in the value's own layout.
        let typed = if v.q.is_some() == int8 {
            v.id
        } else if let Some(&t) = self.views.get(&(name.to_string(), v.nhwc, int8)) {
            t
        } else {
            let t = if int8 {
                let q =
                    self.params(name).ok_or_else(|| Error::Model(format!("tensor {name} has no int8 parameters")))?;
                let t = self.b.quantized(&format!("{name}/int8"), &here, &[q.scale], &[q.zero_point as i64], 0);
                self.b.op(lt::BuiltinOperator::Quantize, &[v.id], &[t], None);
                t
            } else {
                let dtype = element_type(self.dtype(name)?, name)?;
                let t = self.b.tensor(&format!("{name}/float"), dtype, &here);
                self.b.op(lt::BuiltinOperator::Dequantize, &[v.id], &[t], None);
                t
            };
            self.views.insert((name.to_string(), v.nhwc, int8), t);
            t
        };
        if v.nhwc == nhwc {
            return Ok(typed);
        }
        let (perm, there, suffix) =
            if nhwc { (TO_NHWC, permute(&shape, &TO_NHWC), "nhwc") } else { (TO_NCHW, shape.clone(), "nchw") };
        let t = self.b.like(typed, &format!("{name}/{suffix}"), &there);
        self.transposes += usize::from(self.relayout(typed, t, &here, &perm));
        self.views.insert(key, t);
        Ok(t)
    }

    /// Writes `to = transpose(from, perm)` where `from` has shape `shape`: a RESHAPE when the
    /// axes that move are all of size 1 (the bytes are already in order), a TRANSPOSE otherwise
    /// (then `true`).
    pub fn relayout(&mut self, from: TensorId, to: TensorId, shape: &[usize], perm: &[usize]) -> bool {
        let moved: Vec<usize> = perm.iter().copied().filter(|&p| shape[p] != 1).collect();
        let kept: Vec<usize> = (0..shape.len()).filter(|&p| shape[p] != 1).collect();
        if moved == kept {
            self.reshape(from, to);
            false
        } else {
            let perm: Vec<i32> = perm.iter().map(|&p| p as i32).collect();
            let p = self.b.constant_i32("perm", &[perm.len()], &perm);
            self.b.op(lt::BuiltinOperator::Transpose, &[from, p], &[to], None);
            true
        }
    }

    /// Writes `to = reshape(from)` to `to`'s shape.
    pub fn reshape(&mut self, from: TensorId, to: TensorId) {
        let target: Vec<i32> = self.b.shape(to).iter().map(|&d| d as i32).collect();
        let s = self.b.constant_i32("shape", &[target.len()], &target);
        let options = lt::ReshapeOptions { new_shape: Some(target) };
        self.b.op(
            lt::BuiltinOperator::Reshape,
            &[from, s],
            &[to],
            Some(lt::BuiltinOptions::ReshapeOptions(Box::new(options))),
        );
    }

    /// An error naming the node.
    pub fn refuse(&self, node: &Node, why: impl std::fmt::Display) -> Error {
        Error::Model(format!("node {} ({}): {why}", node.label(), node.op_type))
    }
}
