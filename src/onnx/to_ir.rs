//! Protobuf → IR. Lossless: `from_ir` turns the result back into the same
//! protobuf (same fields, same storage of every tensor).

use super::external::ExternalData;
use crate::ir::{
    AttrValue, Attribute, DataType, Graph, Model, Node, OpsetId, Storage, Tensor, TensorData, ValueInfo, ValueType,
};
use crate::proto::{self, attribute_proto::AttributeType, tensor_proto::DataLocation};
use crate::{Error, Result};
use bytes::Bytes;

pub(super) fn model(p: proto::ModelProto, ext: &ExternalData) -> Result<Model> {
    let graph = p.graph.ok_or_else(|| Error::Model("the model has no graph".into()))?;
    Ok(Model {
        ir_version: p.ir_version.unwrap_or(0),
        opset_import: p
            .opset_import
            .into_iter()
            .map(|o| OpsetId { domain: o.domain, version: o.version.unwrap_or(0) })
            .collect(),
        producer_name: p.producer_name.unwrap_or_default(),
        producer_version: p.producer_version.unwrap_or_default(),
        domain: p.domain.unwrap_or_default(),
        model_version: p.model_version.unwrap_or(0),
        doc_string: p.doc_string.unwrap_or_default(),
        graph: self::graph(graph, ext)?,
        metadata_props: props(p.metadata_props),
        training_info: p.training_info,
        functions: p.functions,
        configuration: p.configuration,
    })
}

fn graph(p: proto::GraphProto, ext: &ExternalData) -> Result<Graph> {
    Ok(Graph {
        name: p.name.unwrap_or_default(),
        doc_string: p.doc_string.unwrap_or_default(),
        nodes: p.node.into_iter().map(|n| node(n, ext)).collect::<Result<_>>()?,
        initializers: p
            .initializer
            .into_iter()
            .map(|t| tensor(t, ext))
            .chain(p.sparse_initializer.into_iter().map(|s| sparse_tensor(s, ext)))
            .collect::<Result<_>>()?,
        inputs: p.input.into_iter().map(value_info).collect(),
        outputs: p.output.into_iter().map(value_info).collect(),
        value_info: p.value_info.into_iter().map(value_info).collect(),
        quantization_annotation: p.quantization_annotation,
        metadata_props: props(p.metadata_props),
    })
}

fn node(p: proto::NodeProto, ext: &ExternalData) -> Result<Node> {
    let label = p.name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| {
        format!("{} -> {}", p.op_type.as_deref().unwrap_or("?"), p.output.first().map(String::as_str).unwrap_or("?"))
    });
    let attributes = p
        .attribute
        .into_iter()
        .map(|a| attribute(a, ext).map_err(|e| Error::Model(format!("node '{label}': {e}"))))
        .collect::<Result<_>>()?;
    Ok(Node {
        name: p.name.unwrap_or_default(),
        op_type: p.op_type.unwrap_or_default(),
        domain: p.domain.unwrap_or_default(),
        overload: p.overload.unwrap_or_default(),
        inputs: p.input,
        outputs: p.output,
        attributes,
        doc_string: p.doc_string.unwrap_or_default(),
        metadata_props: props(p.metadata_props),
        device_configurations: p.device_configurations,
    })
}

fn attribute(p: proto::AttributeProto, ext: &ExternalData) -> Result<Attribute> {
    use AttributeType as T;
    let name = p.name.clone().unwrap_or_default();
    // Old files may omit `type`: then the one field that is set tells.
    let ty = match p.r#type.and_then(|t| T::try_from(t).ok()) {
        Some(t) if t != T::Undefined => t,
        _ => infer_attribute_type(&p).ok_or_else(|| Error::Model(format!("attribute '{name}' has no value")))?,
    };
    let missing = || Error::Model(format!("attribute '{name}' declares type {ty:?} but has no such value"));
    let value = match ty {
        T::Float => AttrValue::Float(p.f.ok_or_else(missing)?),
        T::Int => AttrValue::Int(p.i.ok_or_else(missing)?),
        T::String => AttrValue::String(p.s.ok_or_else(missing)?),
        T::Tensor => AttrValue::Tensor(Box::new(tensor(p.t.ok_or_else(missing)?, ext)?)),
        T::Graph => AttrValue::Graph(Box::new(graph(p.g.ok_or_else(missing)?, ext)?)),
        T::SparseTensor => AttrValue::SparseTensor(Box::new(p.sparse_tensor.ok_or_else(missing)?)),
        T::TypeProto => AttrValue::Type(Box::new(p.tp.ok_or_else(missing)?)),
        T::Floats => AttrValue::Floats(p.floats),
        T::Ints => AttrValue::Ints(p.ints),
        T::Strings => AttrValue::Strings(p.strings),
        T::Tensors => AttrValue::Tensors(p.tensors.into_iter().map(|t| tensor(t, ext)).collect::<Result<_>>()?),
        T::Graphs => AttrValue::Graphs(p.graphs.into_iter().map(|g| graph(g, ext)).collect::<Result<_>>()?),
        T::SparseTensors => AttrValue::SparseTensors(p.sparse_tensors),
        T::TypeProtos => AttrValue::Types(p.type_protos),
        T::Undefined => unreachable!("resolved above"),
    };
    Ok(Attribute {
        name,
        value,
        doc_string: p.doc_string.unwrap_or_default(),
        ref_attr_name: p.ref_attr_name.unwrap_or_default(),
    })
}

fn infer_attribute_type(p: &proto::AttributeProto) -> Option<AttributeType> {
    use AttributeType as T;
    Some(if p.f.is_some() {
        T::Float
    } else if p.i.is_some() {
        T::Int
    } else if p.s.is_some() {
        T::String
    } else if p.t.is_some() {
        T::Tensor
    } else if p.g.is_some() {
        T::Graph
    } else if !p.floats.is_empty() {
        T::Floats
    } else if !p.ints.is_empty() {
        T::Ints
    } else if !p.strings.is_empty() {
        T::Strings
    } else if !p.tensors.is_empty() {
        T::Tensors
    } else if !p.graphs.is_empty() {
        T::Graphs
    } else {
        return None;
    })
}

pub(super) fn tensor(p: proto::TensorProto, ext: &ExternalData) -> Result<Tensor> {
    let name = p.name.clone().unwrap_or_default();
    let dtype = DataType(p.data_type.unwrap_or(0));
    let (data, storage) = if p.data_location == Some(DataLocation::External as i32) {
        (TensorData::Bytes(ext.read(&p)?), Storage::External(props(p.external_data.clone())))
    } else if let Some(raw) = p.raw_data {
        (TensorData::Bytes(raw), Storage::Raw)
    } else if dtype == DataType::STRING {
        (TensorData::Strings(p.string_data), Storage::Typed)
    } else {
        (TensorData::Bytes(typed_to_bytes(&name, dtype, &p)?), Storage::Typed)
    };
    let t = Tensor {
        name,
        dtype,
        dims: p.dims,
        data,
        storage,
        doc_string: p.doc_string.unwrap_or_default(),
        metadata_props: props(p.metadata_props),
        segment: p.segment.map(|s| (s.begin.unwrap_or(0), s.end.unwrap_or(0))),
    };
    Ok(t)
}

/// A sparse initializer, held dense (bounded by the memory limit).
fn sparse_tensor(p: proto::SparseTensorProto, ext: &ExternalData) -> Result<Tensor> {
    let missing = |what: &str| {
        let name = p.values.as_ref().and_then(|v| v.name.clone()).unwrap_or_default();
        Error::Model(format!("sparse initializer '{name}' has no {what}"))
    };
    let values = tensor(p.values.clone().ok_or_else(|| missing("values"))?, ext)?;
    let indices = tensor(p.indices.clone().ok_or_else(|| missing("indices"))?, ext)?;
    crate::ir::densify(&values, &indices, &p.dims, super::limits::memory_limit())
}

/// The typed repeated fields as little-endian element bytes.
fn typed_to_bytes(name: &str, dtype: DataType, p: &proto::TensorProto) -> Result<Bytes> {
    let mut out = Vec::new();
    match dtype.0 {
        1 | 14 => p.float_data.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        11 | 15 => p.double_data.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        7 => p.int64_data.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        12 => p.uint64_data.iter().for_each(|&v| out.extend_from_slice(&(v as u32).to_le_bytes())),
        13 => p.uint64_data.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        // int32_data holds each narrower element (and sub-byte types packed) in one int32.
        _ => match int32_element_bytes(dtype) {
            Some(n) => p.int32_data.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()[..n])),
            None => return Err(Error::Model(format!("tensor '{name}': unsupported element type {dtype}"))),
        },
    }
    Ok(out.into())
}

/// How many bytes of each `int32_data` entry an element type keeps.
pub(super) fn int32_element_bytes(dtype: DataType) -> Option<usize> {
    match dtype.0 {
        6 => Some(4),
        4 | 5 | 10 | 16 => Some(2),
        2 | 3 | 9 | 17..=26 => Some(1),
        _ => None,
    }
}

fn value_info(p: proto::ValueInfoProto) -> ValueInfo {
    ValueInfo {
        name: p.name.unwrap_or_default(),
        ty: p.r#type.map(value_type),
        doc_string: p.doc_string.unwrap_or_default(),
        metadata_props: props(p.metadata_props),
    }
}

/// A tensor type as the IR's typed form when writing that form back gives the
/// same protobuf; anything else carried as read.
fn value_type(p: proto::TypeProto) -> ValueType {
    let other = ValueType::Other(Box::new(p));
    let Some((dtype, shape)) = other.tensor_view() else { return other };
    let typed = ValueType::Tensor { dtype, shape };
    match &other {
        ValueType::Other(p) if super::from_ir::type_proto(&typed) == **p => typed,
        _ => other,
    }
}

fn props(p: Vec<proto::StringStringEntryProto>) -> Vec<(String, String)> {
    p.into_iter().map(|e| (e.key.unwrap_or_default(), e.value.unwrap_or_default())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Dim;
    use proto::tensor_shape_proto::{dimension::Value, Dimension};

    fn tensor_type(dims: Vec<Option<Value>>) -> proto::TypeProto {
        let dim = dims.into_iter().map(|value| Dimension { value, denotation: None }).collect();
        let t = proto::type_proto::Tensor { elem_type: Some(1), shape: Some(proto::TensorShapeProto { dim }) };
        proto::TypeProto { value: Some(proto::type_proto::Value::TensorType(t)), denotation: None }
    }

    #[test]
    fn tensor_types_are_typed_when_exact_and_carried_otherwise() {
        let plain = tensor_type(vec![Some(Value::DimParam("N".into())), Some(Value::DimValue(3)), None]);
        let typed = value_type(plain.clone());
        let shape = vec![Dim::Symbolic("N".into()), Dim::Fixed(3), Dim::Unknown];
        assert_eq!(typed, ValueType::Tensor { dtype: Some(DataType(1)), shape: Some(shape) });
        assert_eq!(super::super::from_ir::type_proto(&typed), plain);

        // Paddle writes -1 for a free dim: read as unknown, written back as -1.
        let paddle = tensor_type(vec![Some(Value::DimValue(-1)), Some(Value::DimValue(3))]);
        let carried = value_type(paddle.clone());
        assert!(matches!(carried, ValueType::Other(_)));
        assert_eq!(carried.tensor_view().and_then(|v| v.1), Some(vec![Dim::Unknown, Dim::Fixed(3)]));
        assert_eq!(super::super::from_ir::type_proto(&carried), paddle);

        // Changing a dim makes it the typed form.
        let mut vi = ValueInfo { name: "x".into(), ty: Some(carried), ..Default::default() };
        assert!(vi.set_dim(1, Dim::Fixed(2)));
        assert_eq!(vi.shape(), Some(vec![Dim::Unknown, Dim::Fixed(2)]));
        assert!(!vi.set_dim(2, Dim::Fixed(2)), "no such axis");
    }
}
