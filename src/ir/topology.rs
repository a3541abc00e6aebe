//! Who produces and who consumes each tensor, topological order, and the
//! structural checks every loaded graph must pass.

use super::Graph;
use crate::{Error, Result};
use std::collections::{BTreeMap, BTreeSet};

/// Where a tensor comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A graph input.
    Input,
    /// An initializer (its index).
    Initializer(usize),
    /// Output `1` of node `0`.
    Node(usize, usize),
}

/// Producers and consumers of every tensor of one graph.
#[derive(Debug, Default)]
pub struct GraphIndex {
    /// Where each tensor comes from.
    pub sources: BTreeMap<String, Source>,
    /// For each tensor name, (node index, input slot) pairs, in node order.
    pub consumers: BTreeMap<String, Vec<(usize, usize)>>,
}

impl GraphIndex {
    /// Indexes `graph`'s producers and consumers.
    pub fn new(graph: &Graph) -> GraphIndex {
        let mut ix = GraphIndex::default();
        for i in &graph.inputs {
            ix.sources.insert(i.name.clone(), Source::Input);
        }
        // An initializer listed as a graph input (old IR) is a constant with a default.
        for (k, t) in graph.initializers.iter().enumerate() {
            ix.sources.insert(t.name.clone(), Source::Initializer(k));
        }
        for (n, node) in graph.nodes.iter().enumerate() {
            for (o, name) in node.outputs.iter().enumerate() {
                if !name.is_empty() {
                    ix.sources.insert(name.clone(), Source::Node(n, o));
                }
            }
            for (slot, name) in node.inputs.iter().enumerate() {
                if !name.is_empty() {
                    ix.consumers.entry(name.clone()).or_default().push((n, slot));
                }
            }
        }
        ix
    }

    /// The node that produces `tensor`, if a node does.
    pub fn producer(&self, tensor: &str) -> Option<usize> {
        match self.sources.get(tensor)? {
            Source::Node(n, _) => Some(*n),
            _ => None,
        }
    }

    /// The (node index, input slot) pairs that read `tensor`, in node order.
    pub fn consumers(&self, tensor: &str) -> &[(usize, usize)] {
        self.consumers.get(tensor).map(Vec::as_slice).unwrap_or(&[])
    }
}

impl Graph {
    /// Puts the nodes in topological order (stable where the order is already valid),
    /// as ONNX requires after a pass has appended nodes.
    pub fn sort_nodes(&mut self) -> Result<()> {
        let order = self.topo_order()?;
        let mut nodes: Vec<Option<super::Node>> = std::mem::take(&mut self.nodes).into_iter().map(Some).collect();
        self.nodes = order.into_iter().map(|i| nodes[i].take().expect("each index once")).collect();
        Ok(())
    }

    /// Node indices in an order where every node follows its producers
    /// (stable: the file's order where that is already valid). A cycle is an error.
    pub fn topo_order(&self) -> Result<Vec<usize>> {
        let producer: BTreeMap<&str, usize> = self
            .nodes
            .iter()
            .enumerate()
            .flat_map(|(n, node)| node.outputs.iter().filter(|o| !o.is_empty()).map(move |o| (o.as_str(), n)))
            .collect();
        let deps: Vec<BTreeSet<usize>> =
            self.nodes.iter().map(|node| node_reads(node).filter_map(|i| producer.get(i).copied()).collect()).collect();
        let mut users = vec![vec![]; self.nodes.len()];
        let mut pending: Vec<usize> = deps.iter().map(BTreeSet::len).collect();
        for (n, d) in deps.iter().enumerate() {
            for &p in d {
                users[p].push(n);
            }
        }
        // Kahn's algorithm with a min-heap keeps the original order where possible.
        let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<usize>> =
            (0..self.nodes.len()).filter(|&n| pending[n] == 0).map(std::cmp::Reverse).collect();
        let mut order = Vec::with_capacity(self.nodes.len());
        while let Some(std::cmp::Reverse(n)) = ready.pop() {
            order.push(n);
            for &u in &users[n] {
                pending[u] -= 1;
                if pending[u] == 0 {
                    ready.push(std::cmp::Reverse(u));
                }
            }
        }
        if order.len() != self.nodes.len() {
            let stuck = (0..self.nodes.len()).find(|&n| pending[n] > 0).expect("some node is stuck");
            return Err(Error::Model(format!(
                "graph '{}' has a cycle through node '{}'",
                self.name,
                self.nodes[stuck].label()
            )));
        }
        Ok(order)
    }

    /// Structural checks: every tensor a node reads exists, no tensor is
    /// produced twice, no cycle, every constant's data matches its type.
    /// `outer` are names visible from an enclosing graph.
    pub fn validate(&self, outer: &BTreeSet<String>) -> Result<()> {
        let mut defined: BTreeSet<String> = outer.clone();
        let mut defined_here = BTreeSet::new();
        for name in self.inputs.iter().map(|i| &i.name).chain(self.initializers.iter().map(|t| &t.name)) {
            defined.insert(name.clone());
            defined_here.insert(name.clone());
        }
        for t in &self.initializers {
            t.check()?;
        }
        // A declared type that contradicts the initializer's data would let a runtime misread it.
        for vi in self.inputs.iter().chain(&self.value_info) {
            let Some(declared) = vi.dtype().filter(|d| d.0 != 0) else { continue };
            if let Some(t) = self.initializers.iter().find(|t| t.name == vi.name && t.dtype != declared) {
                return Err(Error::Model(format!(
                    "initializer '{}' holds {} data but is declared {declared}",
                    t.name, t.dtype
                )));
            }
        }
        for node in &self.nodes {
            for o in node.outputs.iter().filter(|o| !o.is_empty()) {
                if !defined_here.insert(o.clone()) {
                    return Err(Error::Model(format!(
                        "tensor '{o}' is produced twice (again by node '{}')",
                        node.label()
                    )));
                }
                defined.insert(o.clone());
            }
        }
        for node in &self.nodes {
            for i in node_reads(node) {
                if !defined.contains(i) {
                    return Err(Error::Model(format!(
                        "node '{}' reads tensor '{i}', which no node, input or initializer provides",
                        node.label()
                    )));
                }
            }
            for a in &node.attributes {
                if let super::AttrValue::Tensor(t) = &a.value {
                    t.check()?;
                }
            }
            for g in node.subgraphs() {
                g.validate(&defined)?;
            }
        }
        for o in &self.outputs {
            if !defined.contains(&o.name) {
                return Err(Error::Model(format!("graph output '{}' is never produced", o.name)));
            }
        }
        self.topo_order().map(|_| ())
    }
}

/// Tensors a node reads: its inputs and, for control flow, the outer names its
/// subgraphs capture (so ordering and validation see those dependencies too).
fn node_reads(node: &super::Node) -> impl Iterator<Item = &str> {
    let mut captured = BTreeSet::new();
    for g in node.subgraphs() {
        collect_captures(g, &mut captured);
    }
    node.inputs.iter().map(String::as_str).filter(|s| !s.is_empty()).chain(captured)
}

/// Outer names `g` (or a subgraph of it) reads: what a control-flow node captures.
pub fn collect_captures<'a>(g: &'a Graph, out: &mut BTreeSet<&'a str>) {
    let local: BTreeSet<&str> = g
        .inputs
        .iter()
        .map(|i| i.name.as_str())
        .chain(g.initializers.iter().map(|t| t.name.as_str()))
        .chain(g.nodes.iter().flat_map(|n| n.outputs.iter().map(String::as_str)))
        .collect();
    for n in &g.nodes {
        for i in n.inputs.iter().map(String::as_str).filter(|s| !s.is_empty()) {
            if !local.contains(i) {
                out.insert(i);
            }
        }
        for sub in n.subgraphs() {
            let mut inner = BTreeSet::new();
            collect_captures(sub, &mut inner);
            out.extend(inner.into_iter().filter(|i| !local.contains(i)));
        }
    }
}
