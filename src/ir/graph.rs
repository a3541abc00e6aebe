//! Model, graph, node and attribute: the IR every pass works on.
//!
//! Fields no pass needs (types, functions, training info, device
//! configurations) keep their protobuf type and are carried through untouched.

use super::Tensor;
use crate::proto;

/// An operator set the model imports.
#[derive(Clone, Debug, PartialEq)]
pub struct OpsetId {
    /// `None` when the file leaves the field out, `Some("")` when it writes it
    /// empty: writers differ, and an unchanged model must round-trip exactly.
    pub domain: Option<String>,
    /// The opset version.
    pub version: i64,
}

/// A whole ONNX model: the graph and everything around it.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    /// `ModelProto.ir_version`.
    pub ir_version: i64,
    /// The operator sets imported.
    pub opset_import: Vec<OpsetId>,
    /// The tool that wrote the file.
    pub producer_name: String,
    /// Its version.
    pub producer_version: String,
    /// `ModelProto.domain`.
    pub domain: String,
    /// `ModelProto.model_version`.
    pub model_version: i64,
    /// `ModelProto.doc_string`.
    pub doc_string: String,
    /// The main graph.
    pub graph: Graph,
    /// Key/value metadata (prunq records what it did here).
    pub metadata_props: Vec<(String, String)>,
    /// Carried through untouched.
    pub training_info: Vec<proto::TrainingInfoProto>,
    /// Model-local functions, carried through untouched.
    pub functions: Vec<proto::FunctionProto>,
    /// Device configurations, carried through untouched.
    pub configuration: Vec<proto::DeviceConfigurationProto>,
}

/// A graph: nodes in order, constants, and its declared inputs and outputs.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Graph {
    /// `GraphProto.name`.
    pub name: String,
    /// `GraphProto.doc_string`.
    pub doc_string: String,
    /// The nodes (topologically sorted once validated).
    pub nodes: Vec<Node>,
    /// Dense and sparse initializers alike (a sparse one is held dense, its
    /// storage `Sparse`, and comes after the dense ones as in the file).
    pub initializers: Vec<Tensor>,
    /// Declared inputs (initializers that are also inputs included, as ONNX allows).
    pub inputs: Vec<ValueInfo>,
    /// Declared outputs.
    pub outputs: Vec<ValueInfo>,
    /// Declared types of intermediate values.
    pub value_info: Vec<ValueInfo>,
    /// Carried through untouched.
    pub quantization_annotation: Vec<proto::TensorAnnotation>,
    /// Key/value metadata.
    pub metadata_props: Vec<(String, String)>,
}

/// One operator application.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Node {
    /// The node's name (may be empty).
    pub name: String,
    /// The operator, e.g. `Conv`.
    pub op_type: String,
    /// The operator's domain (empty for the default ONNX domain).
    pub domain: String,
    /// `NodeProto.overload`, for model-local functions.
    pub overload: String,
    /// Input tensor names; "" marks an omitted optional input.
    pub inputs: Vec<String>,
    /// Output tensor names (empty for an unused optional output).
    pub outputs: Vec<String>,
    /// The attributes.
    pub attributes: Vec<Attribute>,
    /// `NodeProto.doc_string`.
    pub doc_string: String,
    /// Key/value metadata.
    pub metadata_props: Vec<(String, String)>,
    /// Carried through untouched.
    pub device_configurations: Vec<proto::NodeDeviceConfigurationProto>,
}

/// A named attribute of a node.
#[derive(Clone, Debug, PartialEq)]
pub struct Attribute {
    /// The attribute's name.
    pub name: String,
    /// Its value.
    pub value: AttrValue,
    /// `AttributeProto.doc_string`.
    pub doc_string: String,
    /// Set in function bodies: the attribute refers to the caller's one.
    pub ref_attr_name: String,
}

/// An attribute's value, by ONNX attribute type.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    /// `FLOAT`.
    Float(f32),
    /// `INT`.
    Int(i64),
    /// `STRING` (bytes).
    String(Vec<u8>),
    /// `TENSOR`.
    Tensor(Box<Tensor>),
    /// `GRAPH` (a subgraph: `If`, `Loop`, `Scan` bodies).
    Graph(Box<Graph>),
    /// `SPARSE_TENSOR`, carried through.
    SparseTensor(Box<proto::SparseTensorProto>),
    /// `TYPE_PROTO`, carried through.
    Type(Box<proto::TypeProto>),
    /// `FLOATS`.
    Floats(Vec<f32>),
    /// `INTS`.
    Ints(Vec<i64>),
    /// `STRINGS`.
    Strings(Vec<Vec<u8>>),
    /// `TENSORS`.
    Tensors(Vec<Tensor>),
    /// `GRAPHS`.
    Graphs(Vec<Graph>),
    /// `SPARSE_TENSORS`, carried through.
    SparseTensors(Vec<proto::SparseTensorProto>),
    /// `TYPE_PROTOS`, carried through.
    Types(Vec<proto::TypeProto>),
}

/// A named value's declaration: graph inputs, outputs and `value_info`.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ValueInfo {
    /// The value's name.
    pub name: String,
    /// The declared type; `None` when the file declares none.
    pub ty: Option<ValueType>,
    /// `ValueInfoProto.doc_string`.
    pub doc_string: String,
    /// Key/value metadata.
    pub metadata_props: Vec<(String, String)>,
}

/// A declared type: tensors typed (element type, shape) so passes can read and
/// change them; every other kind carried as read.
#[derive(Clone, Debug, PartialEq)]
pub enum ValueType {
    /// A tensor.
    Tensor {
        /// The element type; `None` when undeclared.
        dtype: Option<super::DataType>,
        /// The shape; `None` when undeclared.
        shape: Option<Vec<Dim>>,
    },
    /// Sequences, maps, optionals, sparse tensors, and tensor types the IR does
    /// not model (denotations, negative sizes, empty dim names): written back exactly.
    Other(Box<proto::TypeProto>),
}

/// One dimension of a declared tensor shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    /// A known size.
    Fixed(i64),
    /// A named size (`N`, `batch`), the same wherever the name recurs.
    Symbolic(String),
    /// A size nobody declared.
    Unknown,
}

impl Attribute {
    /// An attribute named `name` holding `value`.
    pub fn new(name: &str, value: AttrValue) -> Attribute {
        Attribute { name: name.into(), value, doc_string: String::new(), ref_attr_name: String::new() }
    }

    /// An integer attribute, as passes add them (`axis`, `to`, `keepdims`).
    pub fn int(name: &str, value: i64) -> Attribute {
        Attribute {
            name: name.into(),
            value: AttrValue::Int(value),
            doc_string: String::new(),
            ref_attr_name: String::new(),
        }
    }
}

impl ValueInfo {
    /// A tensor-typed value: element type and, when known, its shape.
    pub fn tensor(name: impl Into<String>, dtype: Option<super::DataType>, shape: Option<&[Dim]>) -> ValueInfo {
        let mut v = ValueInfo { name: name.into(), ..Default::default() };
        v.set_tensor_type(dtype, shape);
        v
    }

    /// Declares the value a tensor of `dtype` (unknown when `None`) and shape
    /// (none declared when `None`), replacing whatever type it had.
    pub fn set_tensor_type(&mut self, dtype: Option<super::DataType>, shape: Option<&[Dim]>) {
        self.ty = Some(ValueType::Tensor { dtype, shape: shape.map(<[Dim]>::to_vec) });
    }

    /// Element type of a tensor-typed value.
    pub fn dtype(&self) -> Option<super::DataType> {
        self.ty.as_ref()?.tensor_view()?.0
    }

    /// Declared shape of a tensor-typed value, if it has one.
    pub fn shape(&self) -> Option<Vec<Dim>> {
        self.ty.as_ref()?.tensor_view()?.1
    }

    /// Sets one dimension of a declared tensor shape (a tensor type the IR did
    /// not model becomes its typed form); `false` when the value declares no
    /// shape of that rank.
    pub fn set_dim(&mut self, axis: usize, dim: Dim) -> bool {
        let Some((dtype, Some(mut shape))) = self.ty.as_ref().and_then(ValueType::tensor_view) else { return false };
        let Some(d) = shape.get_mut(axis) else { return false };
        *d = dim;
        self.ty = Some(ValueType::Tensor { dtype, shape: Some(shape) });
        true
    }
}

impl ValueType {
    /// A tensor type's element type and shape as the IR reads them: negative
    /// sizes and empty names are unknown dims, denotations are ignored; `None`
    /// for other kinds of type.
    pub fn tensor_view(&self) -> Option<(Option<super::DataType>, Option<Vec<Dim>>)> {
        use proto::tensor_shape_proto::dimension::Value;
        let p = match self {
            ValueType::Tensor { dtype, shape } => return Some((*dtype, shape.clone())),
            ValueType::Other(p) => p,
        };
        let proto::type_proto::Value::TensorType(t) = p.value.as_ref()? else { return None };
        let dim = |d: &proto::tensor_shape_proto::Dimension| match &d.value {
            Some(Value::DimValue(v)) if *v >= 0 => Dim::Fixed(*v),
            Some(Value::DimParam(p)) if !p.is_empty() => Dim::Symbolic(p.clone()),
            _ => Dim::Unknown,
        };
        Some((t.elem_type.map(super::DataType), t.shape.as_ref().map(|s| s.dim.iter().map(dim).collect())))
    }
}

impl Node {
    /// The attribute named `name`, if the node has it.
    pub fn attr(&self, name: &str) -> Option<&AttrValue> {
        self.attributes.iter().find(|a| a.name == name).map(|a| &a.value)
    }

    /// An `INT` attribute.
    pub fn attr_int(&self, name: &str) -> Option<i64> {
        match self.attr(name)? {
            AttrValue::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// An `INTS` attribute.
    pub fn attr_ints(&self, name: &str) -> Option<&[i64]> {
        match self.attr(name)? {
            AttrValue::Ints(v) => Some(v),
            _ => None,
        }
    }

    /// A `STRING` attribute, read as UTF-8 (lossily).
    pub fn attr_string(&self, name: &str) -> Option<String> {
        match self.attr(name)? {
            AttrValue::String(s) => Some(String::from_utf8_lossy(s).into_owned()),
            _ => None,
        }
    }

    /// A `FLOAT` attribute.
    pub fn attr_float(&self, name: &str) -> Option<f32> {
        match self.attr(name)? {
            AttrValue::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// Input `ix`, or `None` when absent or omitted ("").
    pub fn input(&self, ix: usize) -> Option<&str> {
        self.inputs.get(ix).map(String::as_str).filter(|s| !s.is_empty())
    }

    /// A node of the default domain with one output, named `{output}_{op}`, as
    /// passes add them.
    pub fn single(output: &str, op: &str, inputs: &[&str], attributes: Vec<Attribute>) -> Node {
        Node {
            name: format!("{output}_{op}"),
            op_type: op.into(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: vec![output.into()],
            attributes,
            ..Default::default()
        }
    }

    /// Whether the node is named in `names_or_ops` by its name or its op type
    /// (`--exclude NAME|OP`).
    pub fn is_any_of(&self, names_or_ops: &[String]) -> bool {
        names_or_ops.iter().any(|e| *e == self.name || *e == self.op_type)
    }

    /// A name for messages: the node's name, or its op type and first output.
    pub fn label(&self) -> String {
        if self.name.is_empty() {
            format!("{} -> {}", self.op_type, self.outputs.first().map(String::as_str).unwrap_or("?"))
        } else {
            self.name.clone()
        }
    }

    /// Whether the node belongs to the default ONNX operator domain.
    pub fn is_onnx_op(&self) -> bool {
        self.domain.is_empty() || self.domain == "ai.onnx"
    }

    /// Subgraphs held in attributes (If, Loop, Scan bodies).
    pub fn subgraphs(&self) -> impl Iterator<Item = &Graph> {
        self.attributes.iter().flat_map(|a| match &a.value {
            AttrValue::Graph(g) => vec![g.as_ref()],
            AttrValue::Graphs(gs) => gs.iter().collect(),
            _ => vec![],
        })
    }

    /// The same subgraphs, to change.
    pub fn subgraphs_mut(&mut self) -> impl Iterator<Item = &mut Graph> {
        self.attributes.iter_mut().flat_map(|a| match &mut a.value {
            AttrValue::Graph(g) => vec![g.as_mut()],
            AttrValue::Graphs(gs) => gs.iter_mut().collect(),
            _ => vec![],
        })
    }
}

impl Model {
    /// A model of `graph` alone at ONNX opset `opset` (IR version 8), as passes
    /// and tests build them in memory.
    pub fn from_graph(graph: Graph, opset: i64) -> Model {
        Model {
            ir_version: 8,
            opset_import: vec![OpsetId { domain: None, version: opset }],
            producer_name: String::new(),
            producer_version: String::new(),
            domain: String::new(),
            model_version: 0,
            doc_string: String::new(),
            graph,
            metadata_props: vec![],
            training_info: vec![],
            functions: vec![],
            configuration: vec![],
        }
    }

    /// Control-flow nodes of the main graph whose subgraphs hold weights, with
    /// how many values those weights have (passes leave subgraphs as they are).
    pub fn weights_in_subgraphs(&self) -> Vec<(String, usize)> {
        fn count(g: &Graph) -> usize {
            let own: usize = g.initializers.iter().map(|t| t.dims.iter().product::<i64>().max(0) as usize).sum();
            let constants: usize = g
                .nodes
                .iter()
                .flat_map(|n| n.attributes.iter())
                .map(|a| match &a.value {
                    AttrValue::Tensor(t) => t.dims.iter().product::<i64>().max(0) as usize,
                    _ => 0,
                })
                .sum();
            own + constants + g.nodes.iter().flat_map(|n| n.subgraphs()).map(count).sum::<usize>()
        }
        self.graph
            .nodes
            .iter()
            .filter_map(|n| {
                let values: usize = n.subgraphs().map(count).sum();
                (values > 0).then(|| (format!("{} '{}'", n.op_type, n.label()), values))
            })
            .collect()
    }

    /// The opset version of the default ONNX domain.
    pub fn onnx_opset(&self) -> Option<i64> {
        self.opset_import
            .iter()
            .find(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")))
            .map(|o| o.version)
    }

    /// The metadata value stored under `key`.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata_props.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}
