//! The channel dependency graph: which channels of which tensors must be
//! removed together (Torch-Pruning's `DependencyGraph`, on an ONNX graph).
//!
//! Every layer that makes channels (a Conv's filters, a Gemm/MatMul's output
//! neurons) starts a **group**. Its channels are followed through the graph in
//! topological order, one rule per op type (`rules.rs`): an activation keeps
//! them, a BatchNorm ties its parameters to them, a residual Add merges two
//! groups into one, a Concat lays several groups side by side, a Flatten
//! spreads each channel over H·W features, and the next Conv or Gemm reads
//! them with one slice of its weight per channel. Every constant slice that
//! must go with a channel is a [`Tie`].
//!
//! A group meets anything a rule cannot prove safe (an unknown op, a graph
//! output, a reduction over channels, a shared weight) and is **blocked**,
//! with the reason; it is never guessed.

mod build;
mod rules;

pub use build::build;

use serde::Serialize;
use std::collections::BTreeMap;

/// A run of channels of one group (or fixed ones) along a tensor's channel axis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// `None`: channels no group owns (from a graph input or a constant); never removed.
    pub group: Option<usize>,
    /// How many channels the segment holds.
    pub channels: usize,
    /// Consecutive elements per channel along the axis (H·W after a Flatten).
    pub inner: usize,
}

impl Segment {
    /// Elements along the axis.
    pub fn width(&self) -> usize {
        self.channels * self.inner
    }
}

/// How a tensor's channel axis is made of groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The axis channels run along.
    pub axis: usize,
    /// The channel blocks along the axis, in order (a Concat joins several).
    pub segments: Vec<Segment>,
}

impl Layout {
    /// Elements along the axis.
    pub fn width(&self) -> usize {
        self.segments.iter().map(Segment::width).sum()
    }

    /// The segments between two positions that fall on segment boundaries.
    pub fn between(&self, start: usize, end: usize) -> Layout {
        let segments =
            self.offsets().filter(|(o, s)| *o >= start && o + s.width() <= end).map(|(_, s)| s.clone()).collect();
        Layout { axis: self.axis, segments }
    }

    /// Each segment with its offset along the axis.
    pub fn offsets(&self) -> impl Iterator<Item = (usize, &Segment)> {
        self.segments.iter().scan(0, |at, s| {
            let here = *at;
            *at += s.width();
            Some((here, s))
        })
    }
}

/// What a tied constant slice is to its channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The weight (or bias) of the layer that makes the channel.
    Output {
        /// The layer's node name.
        node: String,
    },
    /// The weight slice of a layer that reads the channel through tensor `input`.
    Input {
        /// The layer's node name.
        node: String,
        /// The tensor it reads the channel through.
        input: String,
    },
    /// A BatchNorm / InstanceNorm scale.
    NormScale,
    /// Any other per-channel constant (BN statistics, biases, broadcast operands, PReLU slopes).
    Param,
}

/// What must change when a channel goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tie {
    /// Elements `offset + c·inner .. + inner` along `axis` of `constant` belong to channel `c`.
    Slice {
        /// The constant's name.
        constant: String,
        /// The axis sliced.
        axis: usize,
        /// Where the group's channels start on it.
        offset: usize,
        /// Consecutive elements per channel.
        inner: usize,
        /// What the slice is to the channel.
        role: Role,
    },
    /// Element `index` of the shape constant `constant` counts `inner` per channel.
    ShapeDim {
        /// The shape constant's name.
        constant: String,
        /// The element that counts channels.
        index: usize,
        /// How much each channel adds to it.
        inner: usize,
    },
    /// A depthwise Conv (node index): its `group` attribute counts `inner` per channel.
    ConvGroups {
        /// The Conv's node index.
        node: usize,
        /// How many of its groups each channel is (more than one after a channel shuffle).
        inner: usize,
    },
}

/// Where the channels of a group can be seen at run time (for activation scores).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Carrier {
    /// The tensor.
    pub tensor: String,
    /// The axis the channels run along.
    pub axis: usize,
    /// Where the group's channels start on that axis.
    pub offset: usize,
    /// Consecutive elements per channel.
    pub inner: usize,
}

/// Channels that must be removed together, and everything a removal touches.
#[derive(Clone, Debug)]
pub struct Group {
    /// The group's number.
    pub id: usize,
    /// How many channels it has.
    pub channels: usize,
    /// The channels fall into this many equal consecutive runs (a grouped
    /// Conv's groups), and a removal takes the same number from each; 1: free.
    pub blocks: usize,
    /// The layers whose outputs make these channels.
    pub sources: Vec<String>,
    /// The constant slices, shape entries and group counts that change with each channel.
    pub ties: Vec<Tie>,
    /// Tensors layers read these channels from.
    pub carriers: Vec<Carrier>,
    /// Why the group cannot be pruned; empty when it can.
    pub blocked: Vec<String>,
}

impl Group {
    /// Whether nothing blocks removing its channels.
    pub fn prunable(&self) -> bool {
        self.blocked.is_empty()
    }

    /// The source layer with the most filters (output rows) in one channel,
    /// and how many: more than one where mirrored runs (a channel shuffle, a
    /// grouped Conv's input) make them go together.
    pub fn filters_per_channel(&self) -> Option<(&str, usize)> {
        let mut per: BTreeMap<&str, usize> = BTreeMap::new();
        for t in &self.ties {
            if let Tie::Slice { inner, role: Role::Output { node }, .. } = t {
                *per.entry(node.as_str()).or_default() += inner;
            }
        }
        per.into_iter().max_by_key(|&(node, n)| (n, std::cmp::Reverse(node)))
    }
}

/// The reason that blocks the most channels, over groups given as (channels,
/// reasons): the reason without its node (`(Reshape): its target shape is
/// computed at run time`), channels and groups it blocks (first reason of each
/// group), and one node it names.
pub fn top_blocker<'a>(groups: impl Iterator<Item = (usize, &'a [String])>) -> Option<TopBlocker> {
    let mut tally: BTreeMap<&str, TopBlocker> = BTreeMap::new();
    for (channels, reasons) in groups {
        let Some(first) = reasons.first() else { continue };
        // "node (Op): why", or a reason that names no node ("reaches graph output 'y'").
        let (node, rule) = first.split_once(" (").map_or(("", first.as_str()), |(n, r)| (n, r));
        let t = tally.entry(rule).or_insert_with(|| TopBlocker {
            rule: if node.is_empty() { rule.to_string() } else { format!("({rule}") },
            example: node.to_string(),
            channels: 0,
            groups: 0,
        });
        t.channels += channels;
        t.groups += 1;
    }
    tally.into_values().max_by(|a, b| a.channels.cmp(&b.channels).then(b.rule.cmp(&a.rule)))
}

/// The reason that blocks the most channels.
#[derive(Clone, Debug, PartialEq)]
pub struct TopBlocker {
    /// The reason without its node, e.g. `(Reshape): its target shape is computed at run time`.
    pub rule: String,
    /// One node it blocks at.
    pub example: String,
    /// Channels it blocks.
    pub channels: usize,
    /// Groups it blocks.
    pub groups: usize,
}

impl std::fmt::Display for TopBlocker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} channels in {} group{} are blocked by {}",
            self.channels,
            self.groups,
            if self.groups == 1 { "" } else { "s" },
            self.rule
        )?;
        match self.example.is_empty() {
            true => Ok(()),
            false => write!(f, " (e.g. at {})", self.example),
        }
    }
}

/// The least common multiple (of channel runs and rounding steps).
pub fn lcm(a: usize, b: usize) -> usize {
    let (mut x, mut y) = (a, b);
    while y != 0 {
        (x, y) = (y, x % y);
    }
    a.checked_div(x).map_or(0, |q| q * b)
}

/// The channel groups of a model and how channels flow between tensors.
#[derive(Clone, Debug, Default)]
pub struct DependencyGraph {
    /// The groups, numbered from 0.
    pub groups: Vec<Group>,
    /// The channel layout of every tensor that carries groups.
    pub layouts: BTreeMap<String, Layout>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_blocking_most_channels_is_named_with_one_of_its_nodes() {
        let reshape = |n: &str| format!("{n} (Reshape): its target shape is computed at run time");
        let groups = [
            (64, vec![reshape("Reshape -> a")]),
            (7, vec!["Shape -> s (Shape): Shape is not understood by the channel analysis".to_string()]),
            (32, vec![reshape("Reshape -> b")]),
            (16, vec![]),
        ];
        let top = top_blocker(groups.iter().map(|(c, r)| (*c, r.as_slice()))).expect("a blocker");
        assert_eq!(top.rule, "(Reshape): its target shape is computed at run time");
        assert_eq!((top.channels, top.groups), (96, 2));
        assert_eq!(top.example, "Reshape -> a");
        assert!(top_blocker(std::iter::once((8, &[][..]))).is_none());
    }
}
