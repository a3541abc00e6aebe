//! The channel-flow rules on small graphs.

use super::super::{build::build, DependencyGraph, Role, Tie};
use crate::analysis::infer_shapes;
use crate::ir::testing::{int, ints, model, node, tensor, wavy};
use crate::ir::{Model, Node, Tensor};

/// A Conv of `cin → cout` channels, 3×3 padded, named after its output.
fn conv(x: &str, y: &str, cin: usize, cout: usize, inits: &mut Vec<Tensor>) -> Node {
    inits.push(tensor(&format!("{y}.w"), &[cout, cin, 3, 3], wavy));
    inits.push(tensor(&format!("{y}.b"), &[cout], wavy));
    node("Conv", &[x, &format!("{y}.w"), &format!("{y}.b")], y, &[("pads", ints(&[1, 1, 1, 1]))])
}

fn graph_of(m: &Model) -> DependencyGraph {
    let shapes = infer_shapes(m, &[("x".to_string(), vec![1, 3, 4, 4])].into()).expect("shapes");
    build(m, &shapes).expect("dependency graph")
}

/// The group whose channels the Conv writing `output` makes.
fn group<'a>(d: &'a DependencyGraph, output: &str) -> &'a super::super::Group {
    let layer = format!("{output}_Conv");
    d.groups.iter().find(|g| g.sources.contains(&layer)).expect("a group made by the layer")
}

fn sliced(g: &super::super::Group) -> Vec<(&str, usize, usize, usize)> {
    let mut v: Vec<_> = g
        .ties
        .iter()
        .filter_map(|t| match t {
            Tie::Slice { constant, axis, offset, inner, .. } => Some((constant.as_str(), *axis, *offset, *inner)),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

#[test]
fn conv_batchnorm_relu_conv_ties_every_slice_of_the_channel() {
    let mut inits = vec![];
    let mut nodes = vec![conv("x", "a", 3, 4, &mut inits)];
    for p in ["gamma", "beta", "mean", "var"] {
        inits.push(tensor(p, &[4], |i| 1.0 + i as f32));
    }
    nodes.push(node("BatchNormalization", &["a", "gamma", "beta", "mean", "var"], "n", &[]));
    nodes.push(node("Relu", &["n"], "r", &[]));
    nodes.push(conv("r", "y", 4, 2, &mut inits));
    let d = graph_of(&model(nodes, inits, &[1, 3, 4, 4], &["y"], 13));
    let g = group(&d, "a");
    assert!(g.prunable(), "{:?}", g.blocked);
    assert_eq!(g.channels, 4);
    let want = [("a.b", 0, 0, 1), ("a.w", 0, 0, 1), ("beta", 0, 0, 1), ("gamma", 0, 0, 1)];
    assert_eq!(sliced(g)[..4], want);
    assert!(sliced(g).contains(&("y.w", 1, 0, 1)), "the next conv's input slice");
    let scales = g.ties.iter().filter(|t| matches!(t, Tie::Slice { role: Role::NormScale, .. })).count();
    assert_eq!(scales, 1);
    assert!(!group(&d, "y").prunable(), "the model's output channels stay");
}

#[test]
fn a_residual_add_merges_both_branches_into_one_group() {
    let mut inits = vec![];
    let nodes = vec![
        conv("x", "a", 3, 4, &mut inits),
        node("Relu", &["a"], "r", &[]),
        conv("r", "b", 4, 4, &mut inits),
        node("Add", &["r", "b"], "s", &[]),
        conv("s", "y", 4, 2, &mut inits),
    ];
    let d = graph_of(&model(nodes, inits, &[1, 3, 4, 4], &["y"], 13));
    let g = group(&d, "a");
    assert!(g.sources.contains(&"b_Conv".to_string()), "b's channels are a's: {:?}", g.sources);
    assert!(g.prunable());
    // b reads a's channels and makes them again: both its input and output slices go.
    assert!(sliced(g).contains(&("b.w", 0, 0, 1)) && sliced(g).contains(&("b.w", 1, 0, 1)));
}

#[test]
fn concat_and_flatten_place_each_group_at_its_offset_and_stride() {
    let mut inits = vec![tensor("fc", &[(4 + 2) * 16, 5], wavy)];
    let nodes = vec![
        conv("x", "a", 3, 4, &mut inits),
        conv("x", "b", 3, 2, &mut inits),
        node("Concat", &["a", "b"], "c", &[("axis", int(1))]),
        node("Flatten", &["c"], "f", &[("axis", int(1))]),
        node("MatMul", &["f", "fc"], "y", &[]),
    ];
    let d = graph_of(&model(nodes, inits, &[1, 3, 4, 4], &["y"], 13));
    // Channel c of `a` is rows 16c..16c+16 of fc; `b`'s start after a's 4 × 16.
    assert!(sliced(group(&d, "a")).contains(&("fc", 0, 0, 16)), "{:?}", sliced(group(&d, "a")));
    assert!(sliced(group(&d, "b")).contains(&("fc", 0, 64, 16)), "{:?}", sliced(group(&d, "b")));
    assert!(group(&d, "a").prunable() && group(&d, "b").prunable());
}

#[test]
fn a_depthwise_conv_passes_channels_and_counts_them_in_its_group_attribute() {
    let mut inits = vec![tensor("dw.w", &[4, 1, 3, 3], wavy)];
    let nodes = vec![
        conv("x", "a", 3, 4, &mut inits),
        node("Conv", &["a", "dw.w"], "dw", &[("group", int(4)), ("pads", ints(&[1, 1, 1, 1]))]),
        conv("dw", "y", 4, 2, &mut inits),
    ];
    let d = graph_of(&model(nodes, inits, &[1, 3, 4, 4], &["y"], 13));
    let g = group(&d, "a");
    assert!(g.prunable(), "{:?}", g.blocked);
    assert!(g.ties.iter().any(|t| matches!(t, Tie::ConvGroups { node: 1, inner: 1 })));
    assert!(sliced(g).contains(&("dw.w", 0, 0, 1)) && sliced(g).contains(&("y.w", 1, 0, 1)));
}

/// ResNeXt-style: a Conv with 2 groups reads `a`'s 4 channels in two
/// mirrored runs (with the same weight columns) and makes 4 channels in two runs, joined by a residual Add
/// to a plain Conv's (the merged group keeps both runs).
#[test]
fn a_grouped_conv_reads_mirrored_runs_and_makes_channels_in_equal_runs() {
    let mut inits = vec![tensor("g.w", &[4, 2, 3, 3], wavy)];
    let nodes = vec![
        conv("x", "a", 3, 4, &mut inits),
        node("Conv", &["a", "g.w"], "g", &[("group", int(2)), ("pads", ints(&[1, 1, 1, 1]))]),
        conv("x", "b", 3, 4, &mut inits),
        node("Add", &["g", "b"], "s", &[]),
        conv("s", "y", 4, 2, &mut inits),
    ];
    let d = graph_of(&model(nodes, inits, &[1, 3, 4, 4], &["y"], 13));
    let a = group(&d, "a");
    assert!(a.prunable(), "{:?}", a.blocked);
    assert_eq!(a.channels, 2, "channel k of each run goes with the other run's");
    assert_eq!(sliced(a)[..3], [("a.b", 0, 0, 1), ("a.b", 0, 2, 1), ("a.w", 0, 0, 1)]);
    assert!(sliced(a).contains(&("a.w", 0, 2, 1)) && sliced(a).contains(&("g.w", 1, 0, 1)), "{:?}", sliced(a));
    let g = d.groups.iter().find(|g| g.sources.contains(&"g_Conv".to_string())).expect("the grouped conv's group");
    assert!(g.prunable(), "{:?}", g.blocked);
    assert_eq!((g.channels, g.blocks), (4, 2));
    assert!(g.sources.contains(&"b_Conv".to_string()), "{:?}", g.sources);
    assert!(sliced(g).contains(&("g.w", 0, 0, 1)) && sliced(g).contains(&("y.w", 1, 0, 1)));
    assert!(!sliced(g).iter().any(|t| t.0 == "g.w" && t.1 == 1), "its input slices are a's");
}

fn shape_constant(name: &str, v: &[i64]) -> Tensor {
    Tensor::from_array(name, &ndarray::arr1(v).into_dyn())
}

/// `source`'s output through ShuffleNet's shuffle of `runs` runs into `y`.
fn shuffled(source: Node, channels: usize, runs: i64, mut inits: Vec<Tensor>) -> Model {
    let c = channels as i64;
    inits.push(shape_constant("split", &[0, runs, c / runs, 4, 4]));
    inits.push(shape_constant("merge", &[0, c, -1, 4]));
    let nodes = vec![
        source,
        node("Reshape", &["a", "split"], "s", &[]),
        node("Transpose", &["s"], "t", &[("perm", ints(&[0, 2, 1, 3, 4]))]),
        node("Reshape", &["t", "merge"], "m", &[]),
        conv("m", "y", channels, 2, &mut inits),
    ];
    model(nodes, inits, &[1, 3, 4, 4], &["y"], 13)
}

fn shape_ties(g: &super::super::Group) -> Vec<(&str, usize, usize)> {
    let mut v: Vec<_> = g
        .ties
        .iter()
        .filter_map(|t| match t {
            Tie::ShapeDim { constant, index, inner } => Some((constant.as_str(), *index, *inner)),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_channel_shuffle_mirrors_its_runs_and_spreads_each_channel_over_them() {
    let mut inits = vec![];
    let a = conv("x", "a", 3, 8, &mut inits);
    let d = graph_of(&shuffled(a, 8, 2, inits));
    let g = group(&d, "a");
    assert!(g.prunable(), "{:?}", g.blocked);
    assert_eq!(g.channels, 4, "channel k of run 0 goes with channel k of run 1");
    let ties = sliced(g);
    assert!(ties.contains(&("a.w", 0, 0, 1)) && ties.contains(&("a.w", 0, 4, 1)), "{ties:?}");
    assert!(ties.contains(&("y.w", 1, 0, 2)), "after the shuffle they sit side by side: {ties:?}");
    assert_eq!(shape_ties(g), [("merge", 1, 2), ("split", 2, 1)]);
    assert!(d.layouts.get("m").is_some_and(|l| l.segments[0].inner == 2));
}

#[test]
fn a_shuffle_after_a_grouped_conv_takes_one_filter_from_each_of_its_groups() {
    let inits = vec![tensor("a.w", &[6, 1, 3, 3], wavy)];
    let a = node("Conv", &["x", "a.w"], "a", &[("group", int(3)), ("pads", ints(&[1, 1, 1, 1]))]);
    let d = graph_of(&shuffled(a, 6, 3, inits));
    let g = group(&d, "a");
    assert!(g.prunable(), "{:?}", g.blocked);
    assert_eq!((g.channels, g.blocks), (2, 1), "each channel is one filter of each of the 3 groups");
    let ties = sliced(g);
    assert!([0, 2, 4].iter().all(|&o| ties.contains(&("a.w", 0, o, 1))), "{ties:?}");
    assert!(ties.contains(&("y.w", 1, 0, 3)), "{ties:?}");
}

#[test]
fn a_reshape_that_only_splits_the_channels_still_blocks_them() {
    let mut inits = vec![shape_constant("split", &[0, 2, 4, 4, 4])];
    let nodes = vec![
        conv("x", "a", 3, 8, &mut inits),
        node("Reshape", &["a", "split"], "s", &[]),
        node("ReduceMean", &["s"], "y", &[("axes", ints(&[1])), ("keepdims", int(0))]),
    ];
    let d = graph_of(&model(nodes, inits, &[1, 3, 4, 4], &["y"], 13));
    let g = group(&d, "a");
    assert!(g.blocked.iter().any(|b| b.contains("no Transpose and Reshape after it shuffle")), "{:?}", g.blocked);
}

#[test]
fn an_op_without_a_rule_blocks_the_channels_it_reads_and_says_which() {
    let mut inits = vec![];
    let nodes = vec![
        conv("x", "a", 3, 4, &mut inits),
        node("Hardmax", &["a"], "h", &[("axis", int(1))]),
        conv("h", "y", 4, 2, &mut inits),
    ];
    let d = graph_of(&model(nodes, inits, &[1, 3, 4, 4], &["y"], 13));
    let g = group(&d, "a");
    assert!(!g.prunable());
    assert!(g.blocked.iter().any(|b| b.contains("Hardmax") && b.contains("not understood")), "{:?}", g.blocked);
}

/// Squeeze-excitation (ReduceMean → Conv → HardSigmoid → Mul), then a
/// channels-last Transpose, a Softmax along width and a MatMul head.
fn se_then_channels_last(softmax_axis: i64) -> Model {
    let mut inits = vec![tensor("head", &[4, 5], wavy)];
    let nodes = vec![
        conv("x", "a", 3, 4, &mut inits),
        node("ReduceMean", &["a"], "m", &[("axes", ints(&[2, 3])), ("keepdims", int(1))]),
        conv("m", "s", 4, 4, &mut inits),
        node("HardSigmoid", &["s"], "h", &[]),
        node("Mul", &["a", "h"], "e", &[]),
        node("Transpose", &["e"], "t", &[("perm", ints(&[0, 2, 3, 1]))]),
        node("Softmax", &["t"], "p", &[("axis", int(softmax_axis))]),
        node("MatMul", &["p", "head"], "y", &[]),
    ];
    model(nodes, inits, &[1, 3, 4, 4], &["y"], 13)
}

#[test]
fn squeeze_excitation_and_a_channels_last_head_keep_one_group() {
    let d = graph_of(&se_then_channels_last(2));
    let g = group(&d, "a");
    assert!(g.prunable(), "{:?}", g.blocked);
    assert!(g.sources.contains(&"s_Conv".to_string()), "the excitation's channels are a's: {:?}", g.sources);
    let ties = sliced(g);
    assert!(ties.contains(&("s.w", 1, 0, 1)), "the excitation reads the pooled channels: {ties:?}");
    assert!(ties.contains(&("head", 0, 0, 1)), "the head's rows, channels last after the Transpose: {ties:?}");
}

#[test]
fn a_softmax_over_the_channels_blocks_them() {
    let d = graph_of(&se_then_channels_last(-1));
    let g = group(&d, "a");
    assert!(g.blocked.iter().any(|b| b.contains("normalizes over the channels")), "{:?}", g.blocked);
}
