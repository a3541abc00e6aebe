//! Walks the graph once in topological order and lets each node's rule say
//! how channels flow through it; groups merged by a rule are joined with a
//! union-find and numbered at the end.

use super::rules::rule_for;
use super::{Carrier, DependencyGraph, Group, Layout, Role, Segment, Tie};
use crate::ir::{Graph, GraphIndex, Model, Node, Tensor};
use crate::Result;
use std::collections::{BTreeMap, BTreeSet};

type Shapes = BTreeMap<String, Vec<usize>>;

/// The dependency graph of `model`, given the concrete shape of every tensor
/// (from [`crate::analysis::infer_shapes`]).
pub fn build(model: &Model, shapes: &Shapes) -> Result<DependencyGraph> {
    let graph = &model.graph;
    let mut b = Builder {
        graph,
        opset: model.onnx_opset().unwrap_or(1),
        index: GraphIndex::new(graph),
        shapes,
        layouts: BTreeMap::new(),
        groups: vec![],
        parent: vec![],
    };
    for n in graph.topo_order()? {
        let node = &graph.nodes[n];
        let mut read: Vec<String> = node.inputs.iter().filter(|i| !i.is_empty()).cloned().collect();
        node.subgraphs().for_each(|g| outer_names(g, &mut read));
        if read.iter().all(|i| !b.layouts.contains_key(i)) && !makes_channels(node) {
            continue;
        }
        let made_before = b.groups.len();
        let outcome = match rule_for(node) {
            Some(rule) => rule(&mut b, n, node),
            None => Err(format!("{} is not understood by the channel analysis", op_name(node))),
        };
        if let Err(why) = outcome {
            for out in &node.outputs {
                b.layouts.remove(out);
            }
            let why = format!("{} ({}): {why}", node.label(), node.op_type);
            for g in made_before..b.groups.len() {
                b.block(g, &why);
            }
            for i in &read {
                if let Some(l) = b.layouts.get(i).cloned() {
                    b.block_layout(&l, &why);
                }
            }
        }
    }
    for o in &graph.outputs {
        if let Some(l) = b.layouts.get(&o.name).cloned() {
            b.block_layout(&l, &format!("reaches graph output '{}'", o.name));
        }
    }
    Ok(b.finish())
}

fn op_name(node: &Node) -> String {
    if node.is_onnx_op() {
        node.op_type.clone()
    } else {
        format!("{}::{}", node.domain, node.op_type)
    }
}

/// Layers that start groups even when they read a tensor without one.
fn makes_channels(node: &Node) -> bool {
    node.is_onnx_op() && matches!(node.op_type.as_str(), "Conv" | "ConvTranspose" | "Gemm" | "MatMul")
}

/// Names a subgraph reads from the enclosing scope (or anywhere: a superset is safe).
fn outer_names(g: &Graph, out: &mut Vec<String>) {
    for node in &g.nodes {
        out.extend(node.inputs.iter().filter(|i| !i.is_empty()).cloned());
        node.subgraphs().for_each(|s| outer_names(s, out));
    }
}

struct GroupState {
    channels: usize,
    /// Equal runs the channels fall into (a grouped Conv's groups); 1 when free.
    blocks: usize,
    sources: Vec<String>,
    ties: Vec<Tie>,
    carriers: Vec<Carrier>,
    blocked: Vec<String>,
}

/// What a rule sees and may change.
pub struct Builder<'a> {
    pub graph: &'a Graph,
    pub opset: i64,
    index: GraphIndex,
    shapes: &'a Shapes,
    layouts: BTreeMap<String, Layout>,
    groups: Vec<GroupState>,
    parent: Vec<usize>,
}

impl<'a> Builder<'a> {
    /// The one node that reads `tensor`, when no other node and no graph output does.
    pub fn sole_reader(&self, tensor: &str) -> Option<&'a Node> {
        let graph: &'a Graph = self.graph;
        match self.index.consumers(tensor) {
            [(n, _)] if !graph.outputs.iter().any(|o| o.name == tensor) => Some(&graph.nodes[*n]),
            _ => None,
        }
    }

    pub fn layout(&self, tensor: &str) -> Option<Layout> {
        self.layouts.get(tensor).cloned()
    }

    pub fn shape(&self, tensor: &str) -> Result<&Vec<usize>, String> {
        self.shapes.get(tensor).ok_or_else(|| format!("the shape of '{tensor}' is unknown"))
    }

    /// The value of `name` if it is a constant.
    pub fn constant(&self, name: &str) -> Option<Tensor> {
        self.graph.constant(name).and_then(|r| r.ok())
    }

    /// How many nodes read `name`.
    pub fn users(&self, name: &str) -> usize {
        self.index.consumers(name).len()
    }

    pub fn set_layout(&mut self, tensor: &str, layout: Layout) {
        self.layouts.insert(tensor.to_string(), layout);
    }

    /// A new group of `channels` made by `source`, whose output tensor is `output`.
    pub fn new_group(&mut self, channels: usize, source: &str) -> usize {
        self.new_group_in_blocks(channels, 1, source)
    }

    /// A new group of `channels` in `blocks` equal consecutive runs (a grouped
    /// Conv's filters), from each of which a removal takes the same number.
    pub fn new_group_in_blocks(&mut self, channels: usize, blocks: usize, source: &str) -> usize {
        self.groups.push(GroupState {
            channels,
            blocks,
            sources: vec![source.to_string()],
            ties: vec![],
            carriers: vec![],
            blocked: vec![],
        });
        self.parent.push(self.parent.len());
        self.parent.len() - 1
    }

    fn find(&self, mut g: usize) -> usize {
        while self.parent[g] != g {
            g = self.parent[g];
        }
        g
    }

    pub fn block(&mut self, group: usize, why: &str) {
        let r = self.find(group);
        if !self.groups[r].blocked.iter().any(|b| b == why) {
            self.groups[r].blocked.push(why.to_string());
        }
    }

    pub fn block_layout(&mut self, layout: &Layout, why: &str) {
        for g in layout.segments.iter().filter_map(|s| s.group) {
            self.block(g, why);
        }
    }

    /// Ties `constant`'s `axis` to the channels of `layout`, segment by
    /// segment; its length along the axis must be the layout's.
    pub fn tie_slices(&mut self, layout: &Layout, constant: &str, axis: usize, role: Role) -> Result<(), String> {
        let t = self.constant(constant).ok_or_else(|| format!("'{constant}' is not a constant"))?;
        let len = t.shape().get(axis).copied();
        if len != Some(layout.width()) {
            return Err(format!(
                "constant '{constant}' has {len:?} elements along axis {axis}, the channels {}",
                layout.width()
            ));
        }
        let users = self.users(constant);
        for (offset, seg) in layout.offsets() {
            let Some(g) = seg.group else { continue };
            if users > 1 {
                self.block(g, &format!("constant '{constant}' is shared by {users} nodes"));
            }
            let tie = Tie::Slice { constant: constant.to_string(), axis, offset, inner: seg.inner, role: role.clone() };
            let r = self.find(g);
            self.groups[r].ties.push(tie);
        }
        Ok(())
    }

    /// Adds one tie to every group of `layout` (made from the segment).
    pub fn tie_each(&mut self, layout: &Layout, make: impl Fn(usize, &Segment) -> Tie) {
        for (offset, seg) in layout.offsets() {
            if let Some(g) = seg.group {
                let r = self.find(g);
                self.groups[r].ties.push(make(offset, seg));
            }
        }
    }

    /// Records that layers read `layout`'s channels from `tensor`.
    pub fn carry(&mut self, layout: &Layout, tensor: &str) {
        for (offset, seg) in layout.offsets() {
            if let Some(g) = seg.group {
                let r = self.find(g);
                let c = Carrier { tensor: tensor.to_string(), axis: layout.axis, offset, inner: seg.inner };
                if !self.groups[r].carriers.contains(&c) {
                    self.groups[r].carriers.push(c);
                }
            }
        }
    }

    /// Cuts root group `g` after its first `at` channels: they stay in `g`; the
    /// rest become a new group taking the tail of every tie and carrier (a
    /// channel's slice does not move, only its numbering), and every layout
    /// that holds `g` now holds both. Returns the new group.
    fn split_group(&mut self, g: usize, at: usize) -> usize {
        let r = self.find(g);
        let head = &mut self.groups[r];
        let total = head.channels;
        let ties = head
            .ties
            .iter()
            .map(|t| match t {
                Tie::Slice { constant, axis, offset, inner, role } => Tie::Slice {
                    constant: constant.clone(),
                    axis: *axis,
                    offset: offset + at * inner,
                    inner: *inner,
                    role: role.clone(),
                },
                other => other.clone(),
            })
            .collect();
        let carriers = head.carriers.iter().map(|c| Carrier { offset: c.offset + at * c.inner, ..c.clone() }).collect();
        let run = total / head.blocks;
        let mut tail_blocks = 1;
        if head.blocks > 1 && at.is_multiple_of(run) {
            // Cut between a grouped Conv's runs: each piece keeps its whole runs.
            tail_blocks = (total - at) / run;
            head.blocks = at / run;
        } else if head.blocks > 1 {
            // A grouped Conv's channel runs cut in pieces: the pieces could not stay balanced.
            head.blocks = 1;
            let why = "a grouped Conv's channels are cut into pieces (its groups must stay equal)";
            if !head.blocked.iter().any(|b| b == why) {
                head.blocked.push(why.to_string());
            }
        }
        let tail = GroupState {
            channels: total - at,
            blocks: tail_blocks,
            sources: head.sources.clone(),
            ties,
            carriers,
            blocked: head.blocked.clone(),
        };
        head.channels = at;
        self.groups.push(tail);
        self.parent.push(self.parent.len());
        let new = self.parent.len() - 1;
        let roots: Vec<usize> = (0..self.parent.len()).map(|x| self.find(x)).collect();
        for l in self.layouts.values_mut() {
            let mut segments = Vec::with_capacity(l.segments.len() + 1);
            for seg in &l.segments {
                match seg.group {
                    Some(x) if roots[x] == r => {
                        segments.push(Segment { group: Some(r), channels: at, inner: seg.inner });
                        segments.push(Segment { group: Some(new), channels: total - at, inner: seg.inner });
                    }
                    _ => segments.push(seg.clone()),
                }
            }
            l.segments = segments;
        }
        new
    }

    /// Makes every position in `cuts` (along `tensor`'s channel axis) fall on
    /// a segment boundary, splitting groups where needed, and returns the
    /// refined layout.
    pub fn cut_at(&mut self, tensor: &str, cuts: &[usize]) -> Result<Layout, String> {
        for &cut in cuts {
            let l = self.layout(tensor).ok_or("no channels to cut")?;
            let Some((offset, seg)) =
                l.offsets().find(|(o, s)| *o < cut && cut < o + s.width()).map(|(o, s)| (o, s.clone()))
            else {
                continue;
            };
            if (cut - offset) % seg.inner != 0 {
                return Err("it cuts through a channel's features".into());
            }
            let at = (cut - offset) / seg.inner;
            match seg.group {
                Some(g) => {
                    self.split_group(g, at);
                }
                None => {
                    // Fixed channels belong to no group: cut them in this layout only.
                    let mut l = l.clone();
                    let k = l.offsets().position(|(o, _)| o == offset).expect("found above");
                    let rest = Segment { channels: seg.channels - at, ..seg.clone() };
                    l.segments[k].channels = at;
                    l.segments.insert(k + 1, rest);
                    self.layouts.insert(tensor.to_string(), l);
                }
            }
        }
        self.layout(tensor).ok_or_else(|| "no channels to cut".into())
    }

    /// Declares that `tensor`'s channel axis is `runs` equal runs whose
    /// channels correspond position by position — a channel shuffle
    /// interleaves them, a grouped Conv reads each with the same weight
    /// columns — so a removal must take the same positions from every run:
    /// groups are cut at the run boundaries and the runs merged. Returns the
    /// layout of one run.
    pub fn mirror(&mut self, tensor: &str, runs: usize) -> Result<Layout, String> {
        let width = self.layout(tensor).ok_or("no channels to mirror")?.width();
        if runs < 2 || !width.is_multiple_of(runs) {
            return Err(format!("its {width} channels do not fall into {runs} equal runs"));
        }
        let run = width / runs;
        let l = self.cut_at(tensor, &(1..runs).map(|k| k * run).collect::<Vec<_>>())?;
        // Cut every run wherever one of them has a boundary, so their segments pair up.
        let inside: BTreeSet<usize> = (0..runs)
            .flat_map(|k| l.between(k * run, (k + 1) * run).offsets().map(|(o, _)| o).collect::<Vec<_>>())
            .collect();
        let cuts: Vec<usize> = (0..runs).flat_map(|k| inside.iter().map(move |o| k * run + o)).collect();
        let l = self.cut_at(tensor, &cuts)?;
        // Paired segments whose channels differ in width: the finer ones go together in runs.
        for i in 0..l.between(0, run).segments.len() {
            let l = self.layout(tensor).ok_or("no channels to mirror")?;
            let paired: Vec<Segment> =
                (0..runs).map(|k| l.between(k * run, (k + 1) * run).segments[i].clone()).collect();
            let widest = paired.iter().map(|s| s.inner).max().unwrap_or(1);
            for s in &paired {
                if let Some(g) = s.group.filter(|_| s.inner != widest) {
                    if !widest.is_multiple_of(s.inner) {
                        return Err(format!("it pairs channels {} wide with channels {widest} wide", s.inner));
                    }
                    self.coarsen(g, widest / s.inner)?;
                }
            }
        }
        let l = self.layout(tensor).ok_or("no channels to mirror")?;
        let first = l.between(0, run);
        for k in 1..runs {
            self.unify(&first, &l.between(k * run, (k + 1) * run))
                .map_err(|_| format!("its {runs} runs of {run} channels are laid out differently"))?;
        }
        Ok(first)
    }

    /// Makes every `factor` consecutive channels of root group `g` one
    /// channel (they can then only be removed together): every tie, carrier
    /// and layout counts `factor` times as many elements per channel.
    fn coarsen(&mut self, g: usize, factor: usize) -> Result<(), String> {
        let r = self.find(g);
        let s = &mut self.groups[r];
        if !s.channels.is_multiple_of(factor) || !(s.channels / s.blocks).is_multiple_of(factor) {
            return Err(format!("{} channels cannot be taken {factor} at a time", s.channels));
        }
        s.channels /= factor;
        for t in &mut s.ties {
            match t {
                Tie::Slice { inner, .. } | Tie::ShapeDim { inner, .. } | Tie::ConvGroups { inner, .. } => {
                    *inner *= factor
                }
            }
        }
        s.carriers.iter_mut().for_each(|c| c.inner *= factor);
        let roots: Vec<usize> = (0..self.parent.len()).map(|x| self.find(x)).collect();
        for l in self.layouts.values_mut() {
            for seg in l.segments.iter_mut().filter(|seg| seg.group.is_some_and(|x| roots[x] == r)) {
                seg.channels /= factor;
                seg.inner *= factor;
            }
        }
        Ok(())
    }

    /// Declares that two layouts hold the same channels (a residual Add, a
    /// gate Mul): their groups merge, segment by segment.
    pub fn unify(&mut self, a: &Layout, b: &Layout) -> Result<(), String> {
        let same_shape = a.segments.len() == b.segments.len()
            && a.segments
                .iter()
                .zip(&b.segments)
                .all(|(x, y)| x.channels == y.channels && x.inner == y.inner && x.group.is_some() == y.group.is_some());
        if !same_shape {
            return Err("its inputs lay out their channels differently".into());
        }
        for (x, y) in a.segments.iter().zip(&b.segments) {
            if let (Some(x), Some(y)) = (x.group, y.group) {
                let (rx, ry) = (self.find(x), self.find(y));
                if rx != ry {
                    let (keep, gone) = (rx.min(ry), rx.max(ry));
                    self.parent[gone] = keep;
                    let moved = std::mem::replace(
                        &mut self.groups[gone],
                        GroupState {
                            channels: 0,
                            blocks: 1,
                            sources: vec![],
                            ties: vec![],
                            carriers: vec![],
                            blocked: vec![],
                        },
                    );
                    let target = &mut self.groups[keep];
                    // The same channels: a removal must be balanced for both.
                    let blocks = super::lcm(target.blocks, moved.blocks);
                    if !target.channels.is_multiple_of(blocks) {
                        target.blocked.push(format!("its channels must split evenly into {blocks} runs"));
                    }
                    target.blocks = blocks;
                    target.sources.extend(moved.sources);
                    target.ties.extend(moved.ties);
                    target.carriers.extend(moved.carriers);
                    for why in moved.blocked {
                        if !target.blocked.contains(&why) {
                            target.blocked.push(why);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn finish(self) -> DependencyGraph {
        let roots: Vec<usize> = (0..self.groups.len()).filter(|&g| self.find(g) == g).collect();
        let number: BTreeMap<usize, usize> = roots.iter().enumerate().map(|(i, &r)| (r, i)).collect();
        let renumber = |g: usize| number[&self.find(g)];
        let layouts = self
            .layouts
            .iter()
            .map(|(name, l)| {
                let segments = l
                    .segments
                    .iter()
                    .map(|s| Segment { group: s.group.map(renumber), channels: s.channels, inner: s.inner })
                    .collect();
                (name.clone(), Layout { axis: l.axis, segments })
            })
            .collect();
        let mut groups = vec![];
        for (id, &r) in roots.iter().enumerate() {
            let s = &self.groups[r];
            let mut seen = BTreeSet::new();
            let sources = s.sources.iter().filter(|x| seen.insert((*x).clone())).cloned().collect();
            groups.push(Group {
                id,
                channels: s.channels,
                blocks: s.blocks,
                sources,
                ties: s.ties.clone(),
                carriers: s.carriers.clone(),
                blocked: s.blocked.clone(),
            });
        }
        DependencyGraph { groups, layouts }
    }
}
