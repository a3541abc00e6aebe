//! One function per ONNX op family, each writing the LiteRT ops for one node; [`lower_node`]
//! is the table. An op without an entry is refused with its name and the node's.

mod conv;
mod dynamic;
mod elementwise;
mod linear;
mod logic;
mod reduce;
mod shape;
mod spatial;

pub(crate) use elementwise::permute_bytes;

use super::lower::Lowering;
use crate::ir::Node;
use crate::Result;

/// The ONNX ops prunq writes as LiteRT ops (each maps to the function [`lower_node`] calls).
pub const CONVERTED_OPS: &[&str] = &[
    "Abs",
    "Add",
    "And",
    "AveragePool",
    "Cast",
    "Clip",
    "Concat",
    "Conv",
    "Div",
    "Dropout",
    "DynamicQuantizeLinear",
    "Equal",
    "Exp",
    "Expand",
    "Flatten",
    "Gather",
    "Gemm",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "Greater",
    "GreaterOrEqual",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "IsNaN",
    "LayerNormalization",
    "Less",
    "LessOrEqual",
    "MatMul",
    "Max",
    "MaxPool",
    "Min",
    "Mul",
    "Neg",
    "Not",
    "Or",
    "Pad",
    "Pow",
    "ReduceL2",
    "ReduceMax",
    "ReduceMean",
    "ReduceSum",
    "Relu",
    "Reshape",
    "Resize",
    "Sigmoid",
    "Slice",
    "Softmax",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Tanh",
    "Transpose",
    "Unsqueeze",
    "Where",
];

/// Writes node `ix`.
pub(crate) fn lower_node(cx: &mut Lowering, node: &Node) -> Result<()> {
    if !node.is_onnx_op() {
        return Err(cx.refuse(node, format!("domain {} has no LiteRT mapping", node.domain)));
    }
    match node.op_type.as_str() {
        "Conv" => conv::conv(cx, node),
        "MaxPool" | "AveragePool" => conv::pool(cx, node),
        "GlobalAveragePool" | "GlobalMaxPool" => conv::global_pool(cx, node),
        "Gemm" => linear::gemm(cx, node),
        "DynamicQuantizeLinear" => dynamic::dynamic_quantize(cx, node),
        "MatMul" => linear::matmul(cx, node),
        "Add" | "Sub" | "Mul" | "Div" | "Max" | "Min" | "Pow" => elementwise::binary(cx, node),
        "Relu" | "Sigmoid" | "Tanh" | "Sqrt" | "Exp" | "Neg" | "Abs" | "HardSwish" | "HardSigmoid" | "Clip"
        | "Identity" | "Dropout" => elementwise::unary(cx, node),
        "Cast" => elementwise::cast(cx, node),
        "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" => shape::reshape(cx, node),
        "Transpose" => shape::transpose(cx, node),
        "Concat" => shape::concat(cx, node),
        "Slice" => shape::slice(cx, node),
        "Gather" => shape::gather(cx, node),
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceL2" => reduce::reduce(cx, node),
        "And" | "Or" | "Not" | "Equal" | "Greater" | "Less" | "GreaterOrEqual" | "LessOrEqual" | "Where" | "IsNaN"
        | "Expand" => logic::logic(cx, node),
        "Softmax" => reduce::softmax(cx, node),
        "LayerNormalization" => reduce::layer_norm(cx, node),
        "Pad" => spatial::pad(cx, node),
        "Resize" => spatial::resize(cx, node),
        other => Err(cx
            .refuse(node, format!("{other} has no LiteRT mapping in prunq (converted: {})", CONVERTED_OPS.join(", ")))),
    }
}
