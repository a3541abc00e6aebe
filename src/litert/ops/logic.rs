//! Comparisons, logic, selection and broadcasting — what attention masks are built from — in
//! ONNX order (LiteRT's builtin kernels run them; they are small).

use crate::ir::Node;
use crate::litert::lower::Lowering;
use crate::Result;
use prunq_litert_schema as lt;

/// And, Or, Not, Equal, Greater, Less, GreaterOrEqual, LessOrEqual, Where, IsNaN (x ≠ x),
/// Expand.
pub(crate) fn logic(cx: &mut Lowering, node: &Node) -> Result<()> {
    use lt::BuiltinOperator as Op;
    let (code, inputs): (Op, Vec<String>) = match node.op_type.as_str() {
        "And" => (Op::LogicalAnd, node.inputs.clone()),
        "Or" => (Op::LogicalOr, node.inputs.clone()),
        "Not" => (Op::LogicalNot, node.inputs.clone()),
        "Equal" => (Op::Equal, node.inputs.clone()),
        "Greater" => (Op::Greater, node.inputs.clone()),
        "Less" => (Op::Less, node.inputs.clone()),
        "GreaterOrEqual" => (Op::GreaterEqual, node.inputs.clone()),
        "LessOrEqual" => (Op::LessEqual, node.inputs.clone()),
        "Where" => (Op::SelectV2, node.inputs.clone()),
        "IsNaN" => (Op::NotEqual, vec![node.inputs[0].clone(), node.inputs[0].clone()]),
        "Expand" => return expand(cx, node),
        other => return Err(cx.refuse(node, format!("{other} has no LiteRT mapping in prunq"))),
    };
    let mut ids = vec![];
    for name in &inputs {
        ids.push(cx.onnx(name)?);
    }
    let out = cx.output(&node.outputs[0], false)?;
    cx.b.op(code, &ids, &[out], None);
    Ok(())
}

/// Expand → BROADCAST_TO the output's shape.
fn expand(cx: &mut Lowering, node: &Node) -> Result<()> {
    let x = cx.onnx(&node.inputs[0])?;
    let shape: Vec<i32> = cx.shape(&node.outputs[0])?.iter().map(|&d| d as i32).collect();
    let s = cx.b.constant_i32("shape", &[shape.len()], &shape);
    let out = cx.output(&node.outputs[0], false)?;
    cx.b.op(lt::BuiltinOperator::BroadcastTo, &[x, s], &[out], None);
    Ok(())
}
