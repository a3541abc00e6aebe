//! prunq's own graph IR. `onnx/` converts the protobuf to and from it; every
//! analysis and pass works on it and never sees protobuf structs.

mod constants;
mod dtype;
mod fingerprint;
mod graph;
pub mod ops;
mod sparse;
mod tensor;
#[cfg(test)]
pub mod testing;
mod topology;

pub use constants::{constant_node_value, ConstantSite};
pub use dtype::DataType;
pub use fingerprint::fingerprint;
pub use graph::{AttrValue, Attribute, Dim, Graph, Model, Node, OpsetId, ValueInfo, ValueType};
pub use sparse::{densify, sparse_and_dense_bytes, sparsify, SparseLayout};
pub use tensor::{set_release_hook, Element, Storage, Tensor, TensorData};
pub use topology::{collect_captures, GraphIndex, Source};
