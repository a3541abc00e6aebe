//! Element-wise ops: they take their inputs' layout. A binary op on an NHWC image and a constant
//! gets the constant broadcast to rank 4 and permuted the same way; an NHWC image and a
//! non-constant of lower rank meet in ONNX order.

use super::conv::output_with_activation;
use crate::ir::Node;
use crate::litert::builder::TensorId;
use crate::litert::lower::{element_type, permute, Lowering, TO_NHWC};
use crate::litert::qdq::QParams;
use crate::Result;
use prunq_litert_schema as lt;

/// A Clip's bounds (attributes before opset 11, constant inputs after; absent = unbounded).
pub(crate) fn clip_bounds(cx: &Lowering, node: &Node) -> Result<(f32, f32)> {
    let bound = |ix: usize, attr: &str, default: f32| -> Result<f32> {
        if let Some(v) = node.attr_float(attr) {
            return Ok(v);
        }
        match node.input(ix) {
            None => Ok(default),
            Some(name) => match cx.constant_f32(name) {
                Some(v) => Ok(v?.iter().copied().next().unwrap_or(default)),
                None => Err(cx.refuse(node, format!("its bound {name} is not a constant"))),
            },
        }
    };
    Ok((bound(1, "min", f32::NEG_INFINITY)?, bound(2, "max", f32::INFINITY)?))
}

/// Each input of an element-wise node as written, all in one layout; whether that layout is
/// NHWC.
fn operands(cx: &mut Lowering, node: &Node) -> Result<(Vec<TensorId>, bool)> {
    let out_rank = cx.shape(&node.outputs[0])?.len();
    let inputs: Vec<String> = node.inputs.iter().filter(|i| !i.is_empty()).cloned().collect();
    let mut any_nhwc = false;
    let mut all_fit = true;
    for name in &inputs {
        if cx.constant(name).is_some() {
            continue;
        }
        any_nhwc |= cx.get(name)?.nhwc;
        all_fit &= cx.shape(name)?.len() == 4;
    }
    let nhwc = any_nhwc && all_fit && out_rank == 4;
    let mut ids = vec![];
    for name in &inputs {
        let id = match (nhwc, cx.constant(name).is_some()) {
            (false, _) => cx.onnx(name)?,
            (true, false) => cx.nhwc(name)?,
            (true, true) => {
                let t = cx.constant(name).expect("checked")?;
                let mut shape = t.shape();
                while shape.len() < 4 {
                    shape.insert(0, 1);
                }
                let dtype = element_type(t.dtype, name)?;
                let values = t.bytes().map(|b| b.to_vec()).unwrap_or_default();
                let size = values.len() / t.numel().unwrap_or(1).max(1);
                let permuted = permute_bytes(&values, &shape, &TO_NHWC, size);
                cx.b.constant(name, dtype, &permute(&shape, &TO_NHWC), permuted, None)
            }
        };
        ids.push(id);
    }
    Ok((ids, nhwc))
}

/// Row-major bytes of elements of `size` bytes in `shape`, rearranged as `transpose(perm)`.
pub(crate) fn permute_bytes(bytes: &[u8], shape: &[usize], perm: &[usize], size: usize) -> Vec<u8> {
    let out_shape = permute(shape, perm);
    let rank = shape.len();
    let mut strides = vec![1usize; rank];
    for i in (0..rank.saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    let count: usize = shape.iter().product();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = vec![0usize; rank];
    for _ in 0..count {
        let source: usize = (0..rank).map(|a| index[a] * strides[perm[a]]).sum();
        out.extend_from_slice(&bytes[source * size..(source + 1) * size]);
        for a in (0..rank).rev() {
            index[a] += 1;
            if index[a] < out_shape[a] {
                break;
            }
            index[a] = 0;
        }
    }
    out
}

/// Add, Sub, Mul, Div (with a following Relu fused), Max, Min, Pow.
pub(crate) fn binary(cx: &mut Lowering, node: &Node) -> Result<()> {
    if gelu(cx, node)? {
        return Ok(());
    }
    if node.op_type == "Pow" {
        if let Some(e) = node.input(1).and_then(|e| cx.constant_f32(e)) {
            let e = e?;
            if e.len() == 1 && e.iter().next() == Some(&2.0) {
                return unary_as(cx, node, lt::BuiltinOperator::Square);
            }
            if e.len() == 1 && e.iter().next() == Some(&0.5) {
                return unary_as(cx, node, lt::BuiltinOperator::Sqrt);
            }
        }
    }
    if matches!(node.op_type.as_str(), "Add" | "Sub" | "Mul") && int8_binary(cx, node)? {
        return Ok(());
    }
    let (ids, nhwc) = operands(cx, node)?;
    let fuses = matches!(node.op_type.as_str(), "Add" | "Sub" | "Mul" | "Div");
    let (out, act) = if fuses {
        output_with_activation(cx, &node.outputs[0], nhwc)?
    } else {
        (cx.output(&node.outputs[0], nhwc)?, lt::ActivationFunctionType::None)
    };
    let (code, options) = match node.op_type.as_str() {
        "Add" => (
            lt::BuiltinOperator::Add,
            Some(lt::BuiltinOptions::AddOptions(Box::new(lt::AddOptions {
                fused_activation_function: act,
                ..Default::default()
            }))),
        ),
        "Sub" => (
            lt::BuiltinOperator::Sub,
            Some(lt::BuiltinOptions::SubOptions(Box::new(lt::SubOptions {
                fused_activation_function: act,
                ..Default::default()
            }))),
        ),
        "Mul" => (
            lt::BuiltinOperator::Mul,
            Some(lt::BuiltinOptions::MulOptions(Box::new(lt::MulOptions { fused_activation_function: act }))),
        ),
        "Div" => (
            lt::BuiltinOperator::Div,
            Some(lt::BuiltinOptions::DivOptions(Box::new(lt::DivOptions { fused_activation_function: act }))),
        ),
        "Max" => (lt::BuiltinOperator::Maximum, None),
        "Min" => (lt::BuiltinOperator::Minimum, None),
        _ => (lt::BuiltinOperator::Pow, None),
    };
    if ids.len() != 2 {
        return Err(cx.refuse(node, format!("{} inputs; LiteRT's form takes two", ids.len())));
    }
    cx.b.op(code, &ids, &[out], options);
    Ok(())
}

/// A one-input op written as `code`, in its input's layout: int8 when the quantizer made its input
/// and output int8 and LiteRT's spec fixes the output's parameters for `code` (LOGISTIC: 1/256
/// and −128, TANH: 1/128 and 0 — the calibrated ones give way), float otherwise.
fn unary_as(cx: &mut Lowering, node: &Node, code: lt::BuiltinOperator) -> Result<()> {
    use lt::BuiltinOperator as Op;
    let fixed = match code {
        Op::Logistic => Some(QParams { scale: 1.0 / 256.0, zero_point: -128 }),
        Op::Tanh => Some(QParams { scale: 1.0 / 128.0, zero_point: 0 }),
        _ => None,
    };
    let int8 = cx.params(&node.inputs[0]).is_some() && cx.params(&node.outputs[0]).is_some();
    if let (Some(q), true) = (fixed, int8) {
        let nhwc = cx.get(&node.inputs[0])?.nhwc;
        let x = cx.int8(&node.inputs[0], nhwc)?.expect("int8 parameters checked").0;
        let out = cx.output_q(&node.outputs[0], nhwc, q)?;
        cx.b.op(code, &[x], &[out], None);
        return Ok(());
    }
    let v = cx.float_value(&node.inputs[0])?;
    let out = cx.output(&node.outputs[0], v.nhwc)?;
    cx.b.op(code, &[v.id], &[out], None);
    Ok(())
}

/// Relu, Sigmoid, Tanh, Sqrt, Exp, Neg, Abs, HardSwish; Clip as RELU/RELU6/RELU_N1_TO_1 or
/// MAXIMUM then MINIMUM; HardSigmoid as a HARD_SWISH with the Mul that reads it where the pair
/// is one, else as arithmetic; Identity and Dropout as the value itself.
pub(crate) fn unary(cx: &mut Lowering, node: &Node) -> Result<()> {
    use lt::BuiltinOperator as Op;
    let code = match node.op_type.as_str() {
        "Relu" => Op::Relu,
        "Sigmoid" => Op::Logistic,
        "Tanh" => Op::Tanh,
        "Sqrt" => Op::Sqrt,
        "Exp" => Op::Exp,
        "Neg" => Op::Neg,
        "Abs" => Op::Abs,
        "HardSwish" => Op::HardSwish,
        "Identity" | "Dropout" => {
            let v = cx.get(&node.inputs[0])?;
            cx.set(&node.outputs[0], v);
            return Ok(());
        }
        "Clip" => return clip(cx, node),
        "HardSigmoid" => return hard_sigmoid(cx, node),
        other => return Err(cx.refuse(node, format!("{other} has no LiteRT mapping in prunq"))),
    };
    unary_as(cx, node, code)
}

fn clip(cx: &mut Lowering, node: &Node) -> Result<()> {
    let (lo, hi) = clip_bounds(cx, node)?;
    let fixed = match (lo, hi) {
        (0.0, 6.0) => Some(lt::BuiltinOperator::Relu6),
        (0.0, f32::INFINITY) => Some(lt::BuiltinOperator::Relu),
        (-1.0, 1.0) => Some(lt::BuiltinOperator::ReluN1To1),
        _ => None,
    };
    if let Some(code) = fixed {
        return unary_as(cx, node, code);
    }
    let v = cx.float_value(&node.inputs[0])?;
    let shape = cx.b.shape(v.id);
    let steps: Vec<(f32, lt::BuiltinOperator)> =
        [(lo, lt::BuiltinOperator::Maximum), (hi, lt::BuiltinOperator::Minimum)]
            .into_iter()
            .filter(|(bound, _)| bound.is_finite())
            .collect();
    if steps.is_empty() {
        cx.set(&node.outputs[0], v);
        return Ok(());
    }
    let mut x = v.id;
    for (i, (bound, code)) in steps.iter().enumerate() {
        let c = cx.b.constant_f32(&format!("{}/bound", node.outputs[0]), &[], &[*bound]);
        let y = if i + 1 == steps.len() {
            cx.output(&node.outputs[0], v.nhwc)?
        } else {
            cx.scratch(&format!("{}/clipped", node.outputs[0]), crate::litert::builder::ElementType::F32, &shape)
        };
        cx.b.op(*code, &[x, c], &[y], None);
        x = y;
    }
    Ok(())
}

/// `HardSigmoid(x)` read only by `Mul(x, ·)` with α = 1/6, β = ½ is `HardSwish(x)`.
fn hard_sigmoid(cx: &mut Lowering, node: &Node) -> Result<()> {
    let alpha = node.attr_float("alpha").unwrap_or(0.2);
    let beta = node.attr_float("beta").unwrap_or(0.5);
    let x = node.inputs[0].clone();
    if (alpha - 1.0 / 6.0).abs() < 1e-6 && beta == 0.5 {
        if let Some(reader) = cx.sole_reader(&node.outputs[0]) {
            let mul = &cx.g.nodes[reader];
            if mul.op_type == "Mul" && mul.inputs.contains(&x) && mul.inputs.contains(&node.outputs[0]) {
                let out_name = mul.outputs[0].clone();
                cx.absorbed.insert(reader);
                let v = cx.float_value(&x)?;
                let out = cx.output(&out_name, v.nhwc)?;
                cx.b.op(lt::BuiltinOperator::HardSwish, &[v.id], &[out], None);
                return Ok(());
            }
        }
    }
    // max(0, min(1, αx + β))
    let v = cx.float_value(&x)?;
    let shape = cx.b.shape(v.id);
    let f32t = crate::litert::builder::ElementType::F32;
    let name = &node.outputs[0];
    let a = cx.b.constant_f32(&format!("{name}/alpha"), &[], &[alpha]);
    let b = cx.b.constant_f32(&format!("{name}/beta"), &[], &[beta]);
    let (one, zero) = (
        cx.b.constant_f32(&format!("{name}/one"), &[], &[1.0]),
        cx.b.constant_f32(&format!("{name}/zero"), &[], &[0.0]),
    );
    let scaled = cx.scratch(&format!("{name}/scaled"), f32t, &shape);
    cx.b.op(lt::BuiltinOperator::Mul, &[v.id, a], &[scaled], None);
    let shifted = cx.scratch(&format!("{name}/shifted"), f32t, &shape);
    cx.b.op(lt::BuiltinOperator::Add, &[scaled, b], &[shifted], None);
    let capped = cx.scratch(&format!("{name}/capped"), f32t, &shape);
    cx.b.op(lt::BuiltinOperator::Minimum, &[shifted, one], &[capped], None);
    let out = cx.output(name, v.nhwc)?;
    cx.b.op(lt::BuiltinOperator::Maximum, &[capped, zero], &[out], None);
    Ok(())
}

/// Cast → CAST.
pub(crate) fn cast(cx: &mut Lowering, node: &Node) -> Result<()> {
    unary_as(cx, node, lt::BuiltinOperator::Cast)
}

/// The exact GELU as exporters write it — `Mul(Mul(x, Add(Erf(Div(x, √2)), 1)), ½)` — matched
/// from its Div: the nodes after it are absorbed and one GELU writes the last Mul's output.
/// `false` when `node` does not start one.
pub(crate) fn gelu(cx: &mut Lowering, node: &Node) -> Result<bool> {
    let is_const = |cx: &Lowering, name: &str, value: f32, tolerance: f32| -> bool {
        cx.constant_f32(name)
            .and_then(|v| v.ok())
            .is_some_and(|v| v.len() == 1 && v.iter().all(|&c| (c - value).abs() <= tolerance))
    };
    let x = &node.inputs[0];
    if node.op_type != "Div" || node.inputs.len() != 2 || !is_const(cx, &node.inputs[1], std::f32::consts::SQRT_2, 1e-3)
    {
        return Ok(false);
    }
    let step = |cx: &Lowering, from: &str, op: &str| -> Option<usize> {
        cx.sole_reader(from).filter(|&r| cx.g.nodes[r].op_type == op && cx.g.nodes[r].inputs.iter().any(|i| i == from))
    };
    let Some(erf) = step(cx, &node.outputs[0], "Erf") else { return Ok(false) };
    let Some(add) = step(cx, &cx.g.nodes[erf].outputs[0], "Add") else { return Ok(false) };
    let add_node = &cx.g.nodes[add];
    let one = add_node.inputs.iter().find(|i| **i != cx.g.nodes[erf].outputs[0]);
    if !one.is_some_and(|o| is_const(cx, o, 1.0, 0.0)) {
        return Ok(false);
    }
    let Some(mul) = step(cx, &add_node.outputs[0], "Mul") else { return Ok(false) };
    if !cx.g.nodes[mul].inputs.contains(x) {
        return Ok(false);
    }
    let Some(half) = step(cx, &cx.g.nodes[mul].outputs[0], "Mul") else { return Ok(false) };
    let half_node = &cx.g.nodes[half];
    let other = half_node.inputs.iter().find(|i| **i != cx.g.nodes[mul].outputs[0]);
    if !other.is_some_and(|o| is_const(cx, o, 0.5, 0.0)) {
        return Ok(false);
    }
    let out_name = half_node.outputs[0].clone();
    cx.absorbed.extend([erf, add, mul, half]);
    let v = cx.float_value(x)?;
    let out = cx.output(&out_name, v.nhwc)?;
    let options = lt::BuiltinOptions::GeluOptions(Box::new(lt::GeluOptions { approximate: false }));
    cx.b.op(lt::BuiltinOperator::Gelu, &[v.id], &[out], Some(options));
    Ok(true)
}

/// Add, Sub or Mul of two computed int8 values of one shape, written int8 (in the first
/// input's layout). `false` when the node stays float.
fn int8_binary(cx: &mut Lowering, node: &Node) -> Result<bool> {
    let (a, b) = (&node.inputs[0], &node.inputs[1]);
    let computed = |cx: &Lowering, n: &str| cx.constant(n).is_none();
    if node.inputs.len() != 2 || !computed(cx, a) || !computed(cx, b) || cx.shape(a)? != cx.shape(b)? {
        return Ok(false);
    }
    let nhwc = cx.get(a)?.nhwc && cx.shape(a)?.len() == 4;
    let Some((out, act, _)) = super::conv::int8_output(cx, &node.outputs[0], &[a, b], nhwc, true)? else {
        return Ok(false);
    };
    let x = cx.int8(a, nhwc)?.expect("checked").0;
    let y = cx.int8(b, nhwc)?.expect("checked").0;
    let options = match node.op_type.as_str() {
        "Add" => lt::BuiltinOptions::AddOptions(Box::new(lt::AddOptions {
            fused_activation_function: act,
            ..Default::default()
        })),
        "Sub" => lt::BuiltinOptions::SubOptions(Box::new(lt::SubOptions {
            fused_activation_function: act,
            ..Default::default()
        })),
        _ => lt::BuiltinOptions::MulOptions(Box::new(lt::MulOptions { fused_activation_function: act })),
    };
    let code = match node.op_type.as_str() {
        "Add" => lt::BuiltinOperator::Add,
        "Sub" => lt::BuiltinOperator::Sub,
        _ => lt::BuiltinOperator::Mul,
    };
    cx.b.op(code, &[x, y], &[out], Some(options));
    Ok(true)
}
