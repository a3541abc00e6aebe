//! IR → protobuf, the inverse of `to_ir`. Empty strings and zero numbers are
//! written as absent fields, as the ONNX writers we have met do.

use super::external::ExternalSink;
use super::to_ir::int32_element_bytes;
use crate::ir::{
    sparsify, AttrValue, Attribute, DataType, Dim, Graph, Model, Node, SparseLayout, Storage, Tensor, TensorData,
    ValueInfo, ValueType,
};
use crate::proto::{self, attribute_proto::AttributeType, tensor_proto::DataLocation};
use crate::Result;

pub(super) fn model(m: &Model, sink: &mut ExternalSink) -> Result<proto::ModelProto> {
    Ok(proto::ModelProto {
        ir_version: nonzero(m.ir_version),
        opset_import: m
            .opset_import
            .iter()
            .map(|o| proto::OperatorSetIdProto { domain: o.domain.clone(), version: Some(o.version) })
            .collect(),
        producer_name: text(&m.producer_name),
        producer_version: text(&m.producer_version),
        domain: text(&m.domain),
        model_version: nonzero(m.model_version),
        doc_string: text(&m.doc_string),
        graph: Some(graph(&m.graph, sink)?),
        metadata_props: props(&m.metadata_props),
        training_info: m.training_info.clone(),
        functions: m.functions.clone(),
        configuration: m.configuration.clone(),
    })
}

fn graph(g: &Graph, sink: &mut ExternalSink) -> Result<proto::GraphProto> {
    let mut initializer = vec![];
    let mut sparse_initializer = vec![];
    for t in &g.initializers {
        match (&t.storage, sink.sparse_allowed()) {
            (Storage::Sparse(layout), true) => sparse_initializer.push(sparse_tensor(t, layout, sink)?),
            _ => initializer.push(tensor(t, sink)?),
        }
    }
    Ok(proto::GraphProto {
        node: g.nodes.iter().map(|n| node(n, sink)).collect::<Result<_>>()?,
        name: text(&g.name),
        initializer,
        sparse_initializer,
        doc_string: text(&g.doc_string),
        input: g.inputs.iter().map(value_info).collect(),
        output: g.outputs.iter().map(value_info).collect(),
        value_info: g.value_info.iter().map(value_info).collect(),
        quantization_annotation: g.quantization_annotation.clone(),
        metadata_props: props(&g.metadata_props),
    })
}

fn node(n: &Node, sink: &mut ExternalSink) -> Result<proto::NodeProto> {
    Ok(proto::NodeProto {
        input: n.inputs.clone(),
        output: n.outputs.clone(),
        name: text(&n.name),
        op_type: Some(n.op_type.clone()),
        domain: text(&n.domain),
        overload: text(&n.overload),
        attribute: n.attributes.iter().map(|a| attribute(a, sink)).collect::<Result<_>>()?,
        doc_string: text(&n.doc_string),
        metadata_props: props(&n.metadata_props),
        device_configurations: n.device_configurations.clone(),
    })
}

fn attribute(a: &Attribute, sink: &mut ExternalSink) -> Result<proto::AttributeProto> {
    use AttributeType as T;
    let mut p = proto::AttributeProto {
        name: Some(a.name.clone()),
        ref_attr_name: text(&a.ref_attr_name),
        doc_string: text(&a.doc_string),
        ..Default::default()
    };
    let ty = match &a.value {
        AttrValue::Float(f) => {
            p.f = Some(*f);
            T::Float
        }
        AttrValue::Int(i) => {
            p.i = Some(*i);
            T::Int
        }
        AttrValue::String(s) => {
            p.s = Some(s.clone());
            T::String
        }
        AttrValue::Tensor(t) => {
            p.t = Some(tensor(t, sink)?);
            T::Tensor
        }
        AttrValue::Graph(g) => {
            p.g = Some(graph(g, sink)?);
            T::Graph
        }
        AttrValue::SparseTensor(s) => {
            p.sparse_tensor = Some((**s).clone());
            T::SparseTensor
        }
        AttrValue::Type(t) => {
            p.tp = Some((**t).clone());
            T::TypeProto
        }
        AttrValue::Floats(v) => {
            p.floats = v.clone();
            T::Floats
        }
        AttrValue::Ints(v) => {
            p.ints = v.clone();
            T::Ints
        }
        AttrValue::Strings(v) => {
            p.strings = v.clone();
            T::Strings
        }
        AttrValue::Tensors(v) => {
            p.tensors = v.iter().map(|t| tensor(t, sink)).collect::<Result<_>>()?;
            T::Tensors
        }
        AttrValue::Graphs(v) => {
            p.graphs = v.iter().map(|g| graph(g, sink)).collect::<Result<_>>()?;
            T::Graphs
        }
        AttrValue::SparseTensors(v) => {
            p.sparse_tensors = v.clone();
            T::SparseTensors
        }
        AttrValue::Types(v) => {
            p.type_protos = v.clone();
            T::TypeProtos
        }
    };
    p.r#type = Some(ty as i32);
    Ok(p)
}

pub(super) fn tensor(t: &Tensor, sink: &mut ExternalSink) -> Result<proto::TensorProto> {
    let mut p = proto::TensorProto {
        dims: t.dims.clone(),
        data_type: Some(t.dtype.0),
        segment: t.segment.map(|(b, e)| proto::tensor_proto::Segment { begin: Some(b), end: Some(e) }),
        name: text(&t.name),
        doc_string: text(&t.doc_string),
        metadata_props: props(&t.metadata_props),
        ..Default::default()
    };
    match &t.data {
        TensorData::Strings(s) => p.string_data = s.clone(),
        TensorData::Bytes(b) => {
            if let Some(entries) = sink.place(t, b)? {
                p.external_data = props(&entries);
                p.data_location = Some(DataLocation::External as i32);
            } else if t.storage == Storage::Typed {
                bytes_to_typed(t.dtype, b, &mut p);
            } else {
                p.raw_data = Some(b.clone());
            }
        }
    }
    Ok(p)
}

/// `t` as a sparse tensor: its non-zero elements and their int64 indices.
fn sparse_tensor(t: &Tensor, layout: &SparseLayout, sink: &mut ExternalSink) -> Result<proto::SparseTensorProto> {
    let Some((values, indices)) = sparsify(t, layout) else {
        return Err(crate::Error::Model(format!("tensor '{}': {} cannot be stored sparse", t.name, t.dtype)));
    };
    Ok(proto::SparseTensorProto {
        values: Some(tensor(&values, sink)?),
        indices: Some(tensor(&indices, sink)?),
        dims: t.dims.clone(),
    })
}

fn bytes_to_typed(dtype: DataType, b: &[u8], p: &mut proto::TensorProto) {
    let words = |n: usize| b.chunks_exact(n);
    match dtype.0 {
        1 | 14 => p.float_data = words(4).map(|c| f32::from_le_bytes(c.try_into().expect("4"))).collect(),
        11 | 15 => p.double_data = words(8).map(|c| f64::from_le_bytes(c.try_into().expect("8"))).collect(),
        7 => p.int64_data = words(8).map(|c| i64::from_le_bytes(c.try_into().expect("8"))).collect(),
        12 => p.uint64_data = words(4).map(|c| u32::from_le_bytes(c.try_into().expect("4")) as u64).collect(),
        13 => p.uint64_data = words(8).map(|c| u64::from_le_bytes(c.try_into().expect("8"))).collect(),
        _ => match int32_element_bytes(dtype) {
            // Signed types are sign-extended, as protobuf writers store them.
            Some(n) => {
                let signed = matches!(dtype, DataType::INT8 | DataType::INT16 | DataType::INT32);
                p.int32_data = words(n)
                    .map(|c| {
                        let mut w = [0u8; 4];
                        w[..n].copy_from_slice(c);
                        let v = i32::from_le_bytes(w);
                        if signed {
                            (v << (32 - 8 * n as u32)) >> (32 - 8 * n as u32)
                        } else {
                            v
                        }
                    })
                    .collect()
            }
            // Unknown types only ever come from raw_data; keep them raw.
            None => p.raw_data = Some(bytes::Bytes::copy_from_slice(b)),
        },
    }
}

fn value_info(v: &ValueInfo) -> proto::ValueInfoProto {
    proto::ValueInfoProto {
        name: Some(v.name.clone()),
        r#type: v.ty.as_ref().map(type_proto),
        doc_string: text(&v.doc_string),
        metadata_props: props(&v.metadata_props),
    }
}

pub(super) fn type_proto(t: &ValueType) -> proto::TypeProto {
    use proto::tensor_shape_proto::{dimension::Value, Dimension};
    let (dtype, shape) = match t {
        ValueType::Tensor { dtype, shape } => (dtype, shape),
        ValueType::Other(p) => return (**p).clone(),
    };
    let dim = |d: &Dim| Dimension {
        value: match d {
            Dim::Fixed(n) => Some(Value::DimValue(*n)),
            Dim::Symbolic(s) => Some(Value::DimParam(s.clone())),
            Dim::Unknown => None,
        },
        denotation: None,
    };
    let shape = shape.as_ref().map(|dims| proto::TensorShapeProto { dim: dims.iter().map(dim).collect() });
    let tensor = proto::type_proto::Tensor { elem_type: dtype.map(|d| d.0), shape };
    proto::TypeProto { value: Some(proto::type_proto::Value::TensorType(tensor)), denotation: None }
}

fn props(p: &[(String, String)]) -> Vec<proto::StringStringEntryProto> {
    p.iter().map(|(k, v)| proto::StringStringEntryProto { key: Some(k.clone()), value: Some(v.clone()) }).collect()
}

fn text(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

fn nonzero(v: i64) -> Option<i64> {
    (v != 0).then_some(v)
}
