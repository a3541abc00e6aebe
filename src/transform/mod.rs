//! Graph rewrites that are neither quantization nor pruning: opset upgrade,
//! node ordering.

mod opset;

pub use opset::upgrade_opset;

use crate::ir::Graph;
use crate::Result;

/// Puts the nodes in topological order (stable where the order is already valid),
/// as ONNX requires after a pass has appended nodes.
pub fn sort_nodes(graph: &mut Graph) -> Result<()> {
    let order = graph.topo_order()?;
    let mut nodes: Vec<Option<crate::ir::Node>> = std::mem::take(&mut graph.nodes).into_iter().map(Some).collect();
    graph.nodes = order.into_iter().map(|i| nodes[i].take().expect("each index once")).collect();
    Ok(())
}
