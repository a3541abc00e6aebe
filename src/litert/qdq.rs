//! Reading prunq's static QDQ output for LiteRT's int8 form: the Q/DQ pairs are taken out of the
//! graph (leaving the float model they describe) and kept as a table — each quantized activation's
//! scale and zero point, each quantized weight's int8 values and per-channel scales — from which
//! the writer makes int8 ops where LiteRT has them (and DEQUANTIZE/QUANTIZE around the rest, the
//! float islands of the fallback).
//!
//! uint8 activations (ONNX Runtime's u8 on CPUs without VNNI) become int8 exactly: q − 128 with
//! the zero point − 128 and the same scale, as LiteRT's int8 spec wants.

use crate::ir::{DataType, GraphIndex, Model, Tensor};
use crate::{Error, Result};
use std::collections::BTreeMap;

/// An int8 tensor's scale and zero point (LiteRT's int8 domain).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct QParams {
    pub scale: f32,
    pub zero_point: i32,
}

/// A quantized weight: its integer values (ONNX layout), per-channel scales along `axis`, and
/// whether it is symmetric int8 (zero points 0) as LiteRT's int8 kernels need.
#[derive(Clone, Debug)]
pub(crate) struct QWeight {
    pub values: Vec<i32>,
    pub scales: Vec<f32>,
    pub zero_points: Vec<i32>,
    pub axis: usize,
    pub symmetric_int8: bool,
    /// Stored as int8 (not uint8 or int32): LiteRT can hold it as it is.
    pub int8: bool,
}

/// What the Q/DQ pairs said.
#[derive(Clone, Debug, Default)]
pub(crate) struct QdqTable {
    /// Float activation name → its int8 parameters.
    pub activations: BTreeMap<String, QParams>,
    /// Weight name (the float constant left in the graph) → its quantized form.
    pub weights: BTreeMap<String, QWeight>,
}

/// Whether `model` holds quantized parts: Q/DQ pairs, or weights in prunq's portable int8 form
/// (weight-only quantization's output).
pub(crate) fn has_qdq(model: &Model) -> bool {
    let g = &model.graph;
    if g.nodes.iter().any(|n| n.op_type == "QuantizeLinear" || n.op_type == "DequantizeLinear") {
        return true;
    }
    let index = GraphIndex::new(g);
    g.nodes.iter().any(|n| n.op_type == "Mul" && portable_weight(g, &index, n).is_some())
}

/// Any integer tensor's values.
fn integers(t: &Tensor) -> Result<Vec<i64>> {
    Ok(match t.dtype {
        DataType::INT8 => t.to_array::<i8>()?.iter().map(|&v| v as i64).collect(),
        DataType::UINT8 => t.to_array::<u8>()?.iter().map(|&v| v as i64).collect(),
        _ => t.to_i64_vec()?,
    })
}

fn scalar_params(model: &Model, scale: &str, zero_point: Option<&str>) -> Result<(f32, i32, DataType)> {
    let g = &model.graph;
    let s = g.constant(scale).ok_or_else(|| Error::Model(format!("scale {scale} is not a constant")))??.to_f32()?;
    let (zp, dtype) = match zero_point.and_then(|z| g.constant(z)) {
        Some(z) => {
            let z = z?;
            (integers(&z)?.first().copied().unwrap_or(0), z.dtype)
        }
        None => (0, DataType::UINT8),
    };
    if s.len() != 1 {
        return Err(Error::Model(format!("scale {scale}: per-channel activation scales are not converted")));
    }
    Ok((s.iter().copied().next().unwrap_or(1.0), zp as i32, dtype))
}

/// `Mul(Cast(int8 constant), float constant)` where the Cast is read by this Mul alone and the
/// scale is one value or one per entry of the weight's last axis: (the Cast's index, the int8
/// weight, the scale).
fn portable_weight(
    g: &crate::ir::Graph,
    index: &GraphIndex,
    node: &crate::ir::Node,
) -> Option<(usize, Tensor, Tensor)> {
    let cast = index.producer(node.inputs.first()?)?;
    let cast_node = &g.nodes[cast];
    if cast_node.op_type != "Cast" || index.consumers(&cast_node.outputs[0]).len() != 1 {
        return None;
    }
    let q = g.constant(&cast_node.inputs[0])?.ok()?;
    let scale = g.constant(node.inputs.get(1)?)?.ok()?;
    let last = *q.shape().last()?;
    let fits = scale.dtype == DataType::FLOAT
        && (scale.numel() == Some(1) || scale.numel() == Some(last) && scale.shape().last() == Some(&last));
    (q.dtype == DataType::INT8 && fits).then_some((cast, q, scale))
}

/// Takes the Q/DQ pairs out of `model` (see the module comment) and returns what they said.
pub(crate) fn strip_qdq(model: &mut Model) -> Result<QdqTable> {
    let mut table = QdqTable::default();
    let g = &model.graph;
    let index = GraphIndex::new(g);
    let mut removed = vec![false; g.nodes.len()];
    let mut renames: BTreeMap<String, String> = BTreeMap::new();
    let mut new_constants: Vec<Tensor> = vec![];
    for (i, node) in g.nodes.iter().enumerate() {
        let label = || format!("node {} ({})", node.label(), node.op_type);
        match node.op_type.as_str() {
            "DequantizeLinear" if g.constant_site(&node.inputs[0]).is_some() => {
                // A weight or bias: the float constant under the DQ's output name, the integers kept.
                let q = g.constant(&node.inputs[0]).expect("checked")?;
                let scales: Vec<f32> = g
                    .constant(&node.inputs[1])
                    .ok_or_else(|| Error::Model(format!("{}: its scale is not a constant", label())))??
                    .to_f32()?
                    .iter()
                    .copied()
                    .collect();
                let zps = match node.input(2).and_then(|z| g.constant(z)) {
                    Some(z) => integers(&z?)?,
                    None => vec![0],
                };
                let values = integers(&q)?;
                let rank = q.dims.len() as i64;
                let axis = node.attr_int("axis").unwrap_or(1);
                let axis = if axis < 0 { axis + rank } else { axis } as usize;
                let per_channel = scales.len() > 1;
                let shape = q.shape();
                let scale_of = |flat: usize| -> (f32, i64) {
                    if !per_channel {
                        return (scales[0], zps[0]);
                    }
                    let inner: usize = shape[axis + 1..].iter().product();
                    let c = (flat / inner) % shape[axis];
                    (scales[c], zps.get(c).copied().unwrap_or(0))
                };
                let floats: Vec<f32> = values
                    .iter()
                    .enumerate()
                    .map(|(k, &v)| {
                        let (s, z) = scale_of(k);
                        (v - z) as f32 * s
                    })
                    .collect();
                let float = Tensor::from_array(
                    &node.outputs[0],
                    &ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&shape), floats)
                        .map_err(|e| Error::Model(e.to_string()))?,
                );
                new_constants.push(float);
                table.weights.insert(
                    node.outputs[0].clone(),
                    QWeight {
                        values: values.iter().map(|&v| v as i32).collect(),
                        scales: scales.clone(),
                        zero_points: zps.iter().map(|&z| z as i32).collect(),
                        axis: if per_channel { axis } else { 0 },
                        symmetric_int8: q.dtype == DataType::INT8 && zps.iter().all(|&z| z == 0),
                        int8: q.dtype == DataType::INT8,
                    },
                );
                removed[i] = true;
            }
            // prunq's portable weight form, `Mul(Cast(int8 W), scale)` (layers the runtime reads
            // in float): the same table entry as a DQ'd weight, the scale per output channel along
            // the last axis (or one for all).
            "Mul" if portable_weight(g, &index, node).is_some() => {
                let (cast, q, scale) = portable_weight(g, &index, node).expect("checked");
                let values = integers(&q)?;
                let shape = q.shape();
                let last = *shape.last().unwrap_or(&1);
                let scales: Vec<f32> = scale.to_f32()?.iter().copied().collect();
                let per_channel = scales.len() > 1;
                let floats: Vec<f32> = values
                    .iter()
                    .enumerate()
                    .map(|(k, &v)| v as f32 * scales[if per_channel { k % last } else { 0 }])
                    .collect();
                let array = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&shape), floats)
                    .map_err(|e| Error::Model(e.to_string()))?;
                new_constants.push(Tensor::from_array(&node.outputs[0], &array));
                table.weights.insert(
                    node.outputs[0].clone(),
                    QWeight {
                        values: values.iter().map(|&v| v as i32).collect(),
                        zero_points: vec![0; scales.len()],
                        axis: if per_channel { shape.len().saturating_sub(1) } else { 0 },
                        symmetric_int8: true,
                        int8: true,
                        scales,
                    },
                );
                removed[i] = true;
                removed[cast] = true;
            }
            "QuantizeLinear" => {
                let x = &node.inputs[0];
                let (scale, zp, dtype) = scalar_params(model, &node.inputs[1], node.input(2))?;
                let zero_point = if dtype == DataType::UINT8 { zp - 128 } else { zp };
                if dtype != DataType::UINT8 && dtype != DataType::INT8 {
                    return Err(Error::Model(format!(
                        "{}: {}-bit activations have no LiteRT int8 form",
                        label(),
                        dtype.name()
                    )));
                }
                // Every reader must be a DequantizeLinear with the same parameters.
                for &(r, _) in index.consumers(&node.outputs[0]) {
                    let dq = &g.nodes[r];
                    if dq.op_type != "DequantizeLinear" || scalar_params(model, &dq.inputs[1], dq.input(2))?.0 != scale
                    {
                        return Err(Error::Model(format!(
                            "{}: its output is read by {} ({}), not by a matching DequantizeLinear",
                            label(),
                            dq.label(),
                            dq.op_type
                        )));
                    }
                    renames.insert(dq.outputs[0].clone(), x.clone());
                    removed[r] = true;
                }
                if g.outputs.iter().any(|o| o.name == node.outputs[0]) {
                    return Err(Error::Model(format!("{}: a quantized graph output is not converted", label())));
                }
                table.activations.insert(x.clone(), QParams { scale, zero_point });
                removed[i] = true;
            }
            // A DQ of a computed tensor not written by a QuantizeLinear: not prunq's form.
            "DequantizeLinear"
                if !removed[i]
                    && index.producer(&node.inputs[0]).is_none_or(|p| g.nodes[p].op_type != "QuantizeLinear") =>
            {
                return Err(Error::Model(format!(
                    "{}: dequantizes a computed tensor that no QuantizeLinear wrote",
                    label()
                )));
            }
            _ => {}
        }
    }
    let g = &mut model.graph;
    let mut k = 0;
    g.nodes.retain(|_| {
        k += 1;
        !removed[k - 1]
    });
    for node in g.nodes.iter_mut() {
        for input in node.inputs.iter_mut() {
            if let Some(to) = renames.get(input) {
                *input = to.clone();
            }
        }
    }
    // A graph output that was a DQ's keeps its name: an Identity of the float value.
    for output in &g.outputs {
        if let Some(from) = renames.get(&output.name) {
            g.nodes.push(crate::ir::Node::single(&output.name, "Identity", &[from], vec![]));
        }
    }
    g.initializers.extend(new_constants);
    crate::transform::remove_unused_constants(g);
    Ok(table)
}
