//! Graph rewrites that are neither quantization nor pruning, each exact up to float rounding:
//! `simplify` (the clean-up before every pass: shape computations folded, Reshape targets made
//! constant, checked against the input's outputs), `upgrade_opset` (attributes that became inputs),
//! `fold_batchnorm` and `fold_affine` (per-channel scales into the conv before them),
//! `fold_constants` (nodes that read only constants, run once), `fold_constant_reshapes`, `gemm_to_matmul`, `transpose_after_matmul`, `fuse_hardswish`,
//! `floor_masked_softmax` (a masked Softmax's entries kept where exp does not underflow), and
//! `fuse` — the recipe step that runs the folds and fusions together.

mod bodies;
mod fold_affine;
mod fold_batchnorm;
mod fold_constants;
mod fold_reshapes;
mod fuse;
mod gemm;
mod hardswish;
mod masked_softmax;
mod opset;
mod simplify;
mod specialise;
mod transpose_after_matmul;

pub use bodies::for_each_body;
pub use fold_affine::fold_affine;
pub use fold_batchnorm::fold_batchnorm;
pub use fold_constants::{fold_constants, fold_constants_into};
pub use fold_reshapes::fold_constant_reshapes;
pub use fuse::{fuse, FuseConfig, Fused};
pub use gemm::gemm_to_matmul;
pub use hardswish::fuse_hardswish;
pub use masked_softmax::floor_masked_softmax;
pub use opset::upgrade_opset;
pub use simplify::{simplify, Simplification};
/// A model whose weights sit in the branches of an `If` its `sr` input decides (tests only).
#[cfg(test)]
pub(crate) use specialise::tests::gated as specialise_tests_model;
pub use specialise::{deciding_inputs, fix_inputs, FixedInput, Specialised};
pub use transpose_after_matmul::transpose_after_matmul;

use crate::ir::Graph;

/// Drops initializers and `Constant` nodes nothing reads any more (and the
/// graph inputs that only gave such an initializer a default).
pub fn remove_unused_constants(graph: &mut Graph) {
    let used: std::collections::BTreeSet<String> = graph
        .nodes
        .iter()
        .flat_map(|n| n.inputs.iter().cloned().chain(n.subgraphs().flat_map(captured_names)))
        .chain(graph.outputs.iter().map(|o| o.name.clone()))
        .collect();
    let dropped: Vec<String> =
        graph.initializers.iter().filter(|t| !used.contains(&t.name)).map(|t| t.name.clone()).collect();
    graph.initializers.retain(|t| used.contains(&t.name));
    graph.inputs.retain(|i| !dropped.contains(&i.name));
    graph.nodes.retain(|n| !(n.op_type == "Constant" && n.outputs.iter().all(|o| !used.contains(o))));
}

/// Every name a subgraph reads (a superset of what it captures from outside).
fn captured_names(g: &Graph) -> Vec<String> {
    g.nodes.iter().flat_map(|n| n.inputs.iter().cloned().chain(n.subgraphs().flat_map(captured_names))).collect()
}
