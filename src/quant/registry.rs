//! How each op type takes part in quantization, in one table keyed by op type:
//! which inputs are weights and along which axis their channels run, how
//! static QDQ treats its activations and its output, and when an instance stays
//! float. An op's quirks live in its entry; adding an op is one entry.

use crate::ir::{ops, Graph, GraphIndex, Node};

/// How the static pass treats an op's activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activations {
    /// Inputs and output quantized: the runtime runs the op in integers
    /// (Conv, MatMul, Gemm, Add, Mul, pooling …).
    Quantize,
    /// Moves values without arithmetic (Reshape, Transpose, MaxPool …): the output
    /// takes the input's scale, so no requantization happens in between.
    PassThrough,
    /// Left in float, e.g. Softmax, LayerNormalization, Erf: too sensitive or no
    /// integer kernel in runtimes.
    Float,
}

/// A weight input and the axis its output channels run along.
#[derive(Clone, Copy, Debug)]
pub struct WeightSlot {
    /// The input slot.
    pub input: usize,
    /// The per-channel axis for a weight of the given rank; `None`: per tensor only.
    pub channel_axis: fn(&Node, usize) -> Option<usize>,
}

/// What static QDQ does with an op's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// Quantized with the op.
    Quantized,
    /// Runtimes run the op from quantized inputs to a float output (ONNX Runtime turns `DQ →
    /// MatMul` without a `Q` after it into `MatMulIntegerToFloat`): quantized only where a
    /// quantized consumer reads it. Quantizing it anyway costs accuracy for nothing where the
    /// consumer stays float — minilm_l6's FFN output MatMuls write one channel ~40× the others
    /// (the CLS token's), and one uint8 scale over that range alone held each of them to 14–24 dB.
    ForQuantizedReaders,
    /// Never quantized, even where a quantized consumer reads it: tract 0.23 fuses Softmax →
    /// QuantizeLinear(u8) into a quantized softmax that saturates every value (seen on
    /// digits_vit: all 255), so the MatMul reading it dequantizes only its other input.
    Float,
}

/// A test on one instance of an op: whether it stays float though its op type is quantized.
pub type FloatWhen = fn(&Graph, &GraphIndex, &Node) -> bool;

/// How one op type (or family) takes part in quantization.
pub struct OpRule {
    /// The op types this entry is for: one, or a family from `ir::ops`.
    pub op_types: &'static [&'static str],
    /// Its weight inputs.
    pub weights: &'static [WeightSlot],
    /// The bias input (quantized to int32 with scale s_x · s_w in static QDQ).
    pub bias: Option<usize>,
    /// How static QDQ treats its activations.
    pub activations: Activations,
    /// Activation inputs that are quantized (others, such as shapes, are not).
    pub activation_inputs: &'static [usize],
    /// Every input is an activation, however many there are (Concat).
    pub every_input: bool,
    /// What happens to its output.
    pub output: Output,
    /// Instances that stay float.
    pub float_when: Option<FloatWhen>,
}

fn axis0(_: &Node, _: usize) -> Option<usize> {
    Some(0)
}
fn axis1(_: &Node, rank: usize) -> Option<usize> {
    (rank > 1).then_some(1)
}
fn gemm_b_axis(n: &Node, _: usize) -> Option<usize> {
    Some(if n.attr_int("transB").unwrap_or(0) != 0 { 0 } else { 1 })
}
fn last_axis(_: &Node, rank: usize) -> Option<usize> {
    (rank >= 2).then(|| rank - 1)
}

const CONV_W: &[WeightSlot] = &[WeightSlot { input: 1, channel_axis: axis0 }];
const CONV_T_W: &[WeightSlot] = &[WeightSlot { input: 1, channel_axis: axis1 }];
const GEMM_W: &[WeightSlot] = &[WeightSlot { input: 1, channel_axis: gemm_b_axis }];
const MATMUL_W: &[WeightSlot] = &[WeightSlot { input: 1, channel_axis: last_axis }];
const GATHER_W: &[WeightSlot] = &[WeightSlot { input: 0, channel_axis: axis0 }];

/// The `+ ε` of a decomposed LayerNorm or BatchNorm (`var + ε → Sqrt`): its input is a variance,
/// mostly tiny with rare large values, and quantizing it to zero turns the division that follows
/// into an explosion. Stays float, as LayerNormalization itself does.
fn normalization_epsilon(g: &Graph, index: &GraphIndex, node: &Node) -> bool {
    node.inputs.iter().any(|i| g.constant_site(i).is_some())
        && node.outputs.first().is_some_and(|y| {
            index.consumers(y).iter().any(|(c, _)| matches!(g.nodes[*c].op_type.as_str(), "Sqrt" | "Reciprocal"))
        })
}

macro_rules! rule {
    ($op:literal, $($rest:tt)*) => {
        rule!(&[$op], $($rest)*)
    };
    ($ops:expr, $w:expr, $b:expr, $a:ident, $ins:expr) => {
        rule!($ops, $w, $b, $a, $ins, false, Quantized, None)
    };
    ($ops:expr, $w:expr, $b:expr, $a:ident, $ins:expr, $every:expr, $out:ident, $when:expr) => {
        OpRule {
            op_types: $ops,
            weights: $w,
            bias: $b,
            activations: Activations::$a,
            activation_inputs: $ins,
            every_input: $every,
            output: Output::$out,
            float_when: $when,
        }
    };
}

/// The table, keyed by op type.
pub const RULES: &[OpRule] = &[
    rule!("Conv", CONV_W, Some(2), Quantize, &[0]),
    rule!("ConvTranspose", CONV_T_W, Some(2), Quantize, &[0]),
    rule!("Gemm", GEMM_W, None, Quantize, &[0]),
    rule!("MatMul", MATMUL_W, None, Quantize, &[0, 1], false, ForQuantizedReaders, None),
    rule!("Gather", GATHER_W, None, PassThrough, &[]),
    rule!("Add", &[], None, Quantize, &[0, 1], false, Quantized, Some(normalization_epsilon)),
    rule!("Mul", &[], None, Quantize, &[0, 1]),
    rule!("Concat", &[], None, Quantize, &[], true, Quantized, None),
    rule!("AveragePool", &[], None, Quantize, &[0]),
    rule!("GlobalAveragePool", &[], None, Quantize, &[0]),
    rule!("MaxPool", &[], None, PassThrough, &[0]),
    rule!("Resize", &[], None, PassThrough, &[0]),
    rule!(ops::RESHAPING, &[], None, PassThrough, &[0]),
    rule!("Transpose", &[], None, PassThrough, &[0]),
    rule!("Slice", &[], None, PassThrough, &[0]),
    rule!("Split", &[], None, PassThrough, &[0]),
    rule!("Softmax", &[], None, Float, &[], false, Float, None),
    rule!("LayerNormalization", &[], None, Float, &[]),
    rule!("Erf", &[], None, Float, &[]),
];

/// Activations a runtime fuses into the quantized op before them: their input
/// needs no quantization of its own, their output takes the op's.
pub const FUSED_ACTIVATIONS: &[&str] = &["Relu", "Clip"];

/// Instances whose int8 kernels run slower than their float ones in ONNX Runtime's CPU provider,
/// so static's speed trials start them float and quantize them only where int8 measures faster:
/// grouped (depthwise) convolutions. On an AVX-512 VNNI/AMX Xeon, ppocr_rec_v4's 14 depthwise
/// convs in int8 cost 1.08–1.13× of the model's time; starting them int8, the trial that keeps
/// them float sat on the 1.08× switch threshold and decided differently from run to run.
pub fn int8_usually_slower(node: &Node) -> bool {
    node.op_type == "Conv" && node.attr_int("group").unwrap_or(1) > 1
}

/// The entry for `node`'s op, if it has one.
pub fn rule(node: &Node) -> Option<&'static OpRule> {
    if !node.is_onnx_op() {
        return None;
    }
    RULES.iter().find(|r| ops::is(r.op_types, &node.op_type))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::testing::{int, node};

    fn axis(op: &str, attrs: &[(&str, crate::ir::AttrValue)], rank: usize) -> Option<usize> {
        let n = node(op, &["x", "w"], "y", attrs);
        let slot = rule(&n).expect("a rule").weights[0];
        (slot.channel_axis)(&n, rank)
    }

    #[test]
    fn weights_are_per_output_channel_along_each_ops_own_axis() {
        assert_eq!(axis("Conv", &[], 4), Some(0), "Conv: OIHW");
        assert_eq!(axis("ConvTranspose", &[], 4), Some(1), "ConvTranspose: IOHW");
        assert_eq!(axis("Gemm", &[], 2), Some(1), "Gemm B is K×N");
        assert_eq!(axis("Gemm", &[("transB", int(1))], 2), Some(0), "transposed B is N×K");
        assert_eq!(axis("MatMul", &[], 2), Some(1), "MatMul weight K×N");
        assert_eq!(axis("MatMul", &[], 3), Some(2), "batched MatMul: the last axis");
        assert_eq!(axis("MatMul", &[], 1), None, "a vector has no channels");
    }

    #[test]
    fn every_op_type_has_at_most_one_entry() {
        let mut seen = std::collections::BTreeSet::new();
        for r in RULES {
            for op in r.op_types {
                assert!(seen.insert(*op), "{op} has two entries");
            }
        }
    }

    #[test]
    fn ops_of_other_domains_and_unknown_ops_have_no_rule() {
        let mut n = node("MatMul", &["x", "w"], "y", &[]);
        n.domain = "com.microsoft".into();
        assert!(rule(&n).is_none(), "a contrib op is not the ONNX op of the same name");
        assert!(rule(&node("NonMaxSuppression", &["x"], "y", &[])).is_none());
    }

    #[test]
    fn activations_are_quantized_passed_through_or_kept_float_by_entry() {
        let of = |op: &str| rule(&node(op, &["x"], "y", &[])).map(|r| r.activations);
        assert_eq!(of("Conv"), Some(Activations::Quantize));
        assert_eq!(of("MaxPool"), Some(Activations::PassThrough), "one scale through MaxPool");
        assert_eq!(of("Reshape"), Some(Activations::PassThrough), "the reshaping family");
        assert_eq!(of("Softmax"), Some(Activations::Float));
        assert_eq!(of("LayerNormalization"), Some(Activations::Float));
    }

    #[test]
    fn biases_and_activation_inputs_follow_the_op() {
        let conv = rule(&node("Conv", &["x", "w", "b"], "y", &[])).expect("conv");
        assert_eq!((conv.bias, conv.activation_inputs), (Some(2), &[0usize][..]));
        let matmul = rule(&node("MatMul", &["a", "b"], "y", &[])).expect("matmul");
        assert_eq!(matmul.activation_inputs, &[0, 1], "both MatMul inputs may be activations");
        let gather = rule(&node("Gather", &["t", "i"], "y", &[])).expect("gather");
        assert!(gather.activation_inputs.is_empty(), "indices are never quantized");
        assert_eq!((gather.weights[0].channel_axis)(&node("Gather", &[], "y", &[]), 2), Some(0), "rows");
    }

    #[test]
    fn quirks_live_in_their_ops_entry() {
        let of = |op: &str| rule(&node(op, &["a", "b"], "y", &[])).expect("in the table");
        assert_eq!(of("MatMul").output, Output::ForQuantizedReaders, "MatMulIntegerToFloat");
        assert_eq!(of("Softmax").output, Output::Float, "tract's saturating quantized softmax");
        assert!(of("Concat").every_input && !of("Add").every_input);
        assert!(of("Add").float_when.is_some() && of("Mul").float_when.is_none());
        // The normalization ε: `var + ε → Sqrt` stays float, a residual Add does not.
        use crate::ir::testing::{model, tensor};
        let eps = model(
            vec![node("Add", &["x", "eps"], "v", &[]), node("Sqrt", &["v"], "y", &[])],
            vec![tensor("eps", &[1], |_| 1e-5)],
            &[1, 4],
            &["y"],
            17,
        );
        let index = GraphIndex::new(&eps.graph);
        let when = of("Add").float_when.expect("a test");
        assert!(when(&eps.graph, &index, &eps.graph.nodes[0]));
        let residual = model(vec![node("Add", &["x", "x"], "y", &[])], vec![], &[1, 4], &["y"], 17);
        assert!(!when(&residual.graph, &GraphIndex::new(&residual.graph), &residual.graph.nodes[0]));
    }

    #[test]
    fn fused_activations_have_no_entry_of_their_own() {
        for op in FUSED_ACTIVATIONS {
            assert!(
                rule(&node(op, &["x"], "y", &[])).is_none(),
                "{op} is fused into its producer, not quantized alone"
            );
        }
    }
}
