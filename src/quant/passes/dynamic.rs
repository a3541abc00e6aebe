//! Dynamic quantization: MatMul and Gemm with constant weights run in integers,
//! activations quantized per batch at run time. The pattern is
//! `DynamicQuantizeLinear → MatMulInteger → Cast → Mul(scale)`, which both
//! ONNX Runtime and tract run. Convs stay float: ONNX Runtime's ConvInteger is
//! several times slower than its float Conv.

use crate::ir::{Attribute, DataType, Graph, Model, Node, Tensor};
use crate::quant::pack::int_tensor;
use crate::quant::report::{QuantReport, Skipped, TensorRecord};
use crate::quant::scheme::{Granularity, QScheme, QType};
use crate::Result;
use ndarray::{Array1, ArrayD, Ix2};
use std::collections::BTreeMap;

/// Dynamic quantization's options.
#[derive(Clone, Debug, Default)]
pub struct DynamicOptions {
    /// Node names or op types to leave float.
    pub exclude: Vec<String>,
    /// One weight scale per tensor instead of per output column.
    pub per_tensor: bool,
    /// Quantize only these nodes (by index); all when `None`.
    pub only_nodes: Option<Vec<usize>>,
    /// Weights use 7 of their 8 bits.
    pub reduce_range: bool,
    /// Weights as uint8 around zero point 128 (see `StaticOptions::unsigned_weights`).
    pub unsigned_weights: bool,
}

/// MatMul/Gemm with constant weights as `DynamicQuantizeLinear` + `MatMulInteger`: int8 weights, activations quantized at run time.
pub fn quantize_dynamic(model: &mut Model, options: &DynamicOptions, report: &mut QuantReport) -> Result<()> {
    let g = &mut model.graph;
    let mut activation_q: BTreeMap<String, [String; 3]> = BTreeMap::new();
    let (mut new_nodes, mut new_constants) = (vec![], vec![]);
    let mut keep = Vec::with_capacity(g.nodes.len());
    // Weights rounded a window of nodes at a time in parallel (minilm_l6's 36 MatMuls took 0.77 s on
    // one thread), emitted in node order. Iterate over a copy: weights may live in Constant nodes,
    // which `plan` must still see.
    let nodes: Vec<(usize, Node)> = g.nodes.clone().into_iter().enumerate().collect();
    let graph = &*g;
    let plan_node = |(ix, node): &(usize, Node)| {
        Ok(match options.only_nodes.as_ref().is_none_or(|o| o.contains(ix)) {
            true => plan(graph, node, options),
            // A node not chosen is only checked (its reason to stay float still reported).
            false => eligible(graph, node, options).map(|_| None),
        })
    };
    crate::parallel::ordered(nodes.into_iter().map(Ok), plan_node, |(_, node), planned| {
        match planned {
            Ok(Some(p)) => {
                let x = node.inputs[0].clone();
                let q = activation_q.entry(x.clone()).or_insert_with(|| {
                    let names = [format!("{x}_dq"), format!("{x}_dq_scale"), format!("{x}_dq_zero_point")];
                    new_nodes.push(op(
                        "DynamicQuantizeLinear",
                        &format!("{x}_DynamicQuantizeLinear"),
                        &[&x],
                        &names,
                        vec![],
                    ));
                    names
                });
                let q = q.clone();
                report.tensors.push(p.record.clone());
                emit(&mut new_constants, &node, &q, p, &mut new_nodes);
            }
            Ok(None) => keep.push(node),
            Err(why) => {
                report.skipped.push(Skipped::new(&node.label(), why));
                keep.push(node);
            }
        }
        Ok(())
    })?;
    g.initializers.extend(new_constants);
    g.nodes = keep;
    g.nodes.extend(new_nodes);
    crate::transform::remove_unused_constants(g);
    g.sort_nodes()?;
    // Embedding tables (Gather) have no integer kernel to run in, but int8
    // storage shrinks the file as much as the MatMuls do: weight-only.
    let gathers: Vec<usize> = model
        .graph
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.op_type == "Gather" && !n.is_any_of(&options.exclude))
        .filter(|_| options.only_nodes.is_none())
        .map(|(i, _)| i)
        .collect();
    let weight_options = crate::quant::WeightOptions {
        only_nodes: Some(gathers),
        reduce_range: options.reduce_range,
        ..Default::default()
    };
    crate::quant::quantize_weights(model, &weight_options, report)
}

struct Planned {
    /// [K, N] int8 (or uint8 around 128) weights and per-column (or single) scales.
    q: ArrayD<i32>,
    qtype: QType,
    scale: Array1<f32>,
    alpha: f32,
    bias: Option<Tensor>,
    record: TensorRecord,
}

/// Whether the dynamic pass would quantize `node` (a MatMul or Gemm with a 2-D constant weight).
pub(in crate::quant) fn runs_dynamic(g: &Graph, node: &Node) -> bool {
    matches!(eligible(g, node, &DynamicOptions::default()), Ok(Some(_)))
}

/// A node the dynamic pass takes, before its weight is quantized.
struct Eligible {
    /// The weight as `[K, N]` (a Gemm's `transB` undone).
    wf: ArrayD<f32>,
    /// The weight's name and stored size (for the record).
    name: String,
    bytes: usize,
    /// A Gemm's C times beta.
    bias: Option<Tensor>,
    gemm: bool,
}

/// Whether `node` is the dynamic pass's: `Ok(None)` not ours, `Err` ours but left float (why).
/// Cheap beside quantizing the weight: what every node's check costs, chosen or not.
fn eligible(g: &Graph, node: &Node, options: &DynamicOptions) -> std::result::Result<Option<Eligible>, String> {
    let gemm = node.op_type == "Gemm";
    if !node.is_onnx_op() || !(gemm || node.op_type == "MatMul") || node.is_any_of(&options.exclude) {
        return Ok(None);
    }
    let Some(Ok(w)) = node.input(1).and_then(|n| g.constant(n)) else { return Ok(None) };
    if g.constant(&node.inputs[0]).is_some() {
        return Ok(None);
    }
    if w.dtype != DataType::FLOAT || w.dims.len() != 2 {
        return Err(format!("weight '{}' is not a 2-D float32 matrix", w.name));
    }
    if gemm && node.attr_int("transA").unwrap_or(0) != 0 {
        return Err("Gemm with transA".into());
    }
    let mut wf = w.to_f32().map_err(|e| e.to_string())?;
    if wf.iter().any(|v| !v.is_finite()) {
        return Err(format!("weight '{}' contains NaN or infinite values", w.name));
    }
    if gemm && node.attr_int("transB").unwrap_or(0) != 0 {
        wf = wf.into_dimensionality::<Ix2>().expect("2-d").reversed_axes().as_standard_layout().into_owned().into_dyn();
    }
    let bias = match node.input(2) {
        None => None,
        Some(c) => match g.constant(c) {
            Some(Ok(t)) => {
                let beta = node.attr_float("beta").unwrap_or(1.0);
                let b = t.to_f32().map_err(|e| e.to_string())?.mapv(|v| v * beta);
                Some(Tensor::from_array(format!("{}_bias", node.outputs[0]), &b))
            }
            _ => return Err("Gemm with a non-constant C".into()),
        },
    };
    Ok(Some(Eligible { wf, name: w.name.clone(), bytes: w.byte_size(), bias, gemm }))
}

/// What to do with one node: `Ok(None)` not ours, `Err` ours but left float (why).
fn plan(g: &Graph, node: &Node, options: &DynamicOptions) -> std::result::Result<Option<Planned>, String> {
    let Some(Eligible { wf, name, bytes, bias, gemm }) = eligible(g, node, options)? else { return Ok(None) };
    let granularity = if options.per_tensor { Granularity::PerTensor } else { Granularity::PerChannel { axis: 1 } };
    let qtype = if options.unsigned_weights { QType::UInt8 } else { QType::Int8 };
    let scheme = QScheme { qtype, symmetric: true, granularity, reduce_range: options.reduce_range };
    let (q, params) = scheme.quantize_weight(&wf).map_err(|e| e.to_string())?;
    let n = wf.shape()[1];
    let scale: Array1<f32> = if options.per_tensor {
        Array1::from_elem(1, params.scale.iter().next().copied().unwrap_or(1.0))
    } else {
        params.scale.iter().copied().collect::<Vec<_>>().into()
    };
    debug_assert!(scale.len() == 1 || scale.len() == n);
    let record = TensorRecord::new(&name, &scheme, &params, bytes, wf.shape());
    Ok(Some(Planned {
        q,
        qtype,
        scale,
        alpha: if gemm { node.attr_float("alpha").unwrap_or(1.0) } else { 1.0 },
        bias,
        record,
    }))
}

/// `node` as its dynamic form: nodes into `out`, their constants into `constants`.
fn emit(constants: &mut Vec<Tensor>, node: &Node, xq: &[String; 3], p: Planned, out: &mut Vec<Node>) {
    let y = &node.outputs[0];
    // "{y}_dynamic_…": the static pass names its Q/DQ constants "{y}_scale" etc.
    let name = |s: &str| format!("{y}_dynamic_{s}");
    let (wq, ws) = (name("weight_quantized"), name("weight_scale"));
    constants.push(int_tensor(&wq, &p.q, p.qtype));
    constants.push(Tensor::from_array(&ws, &p.scale.mapv(|s| s * p.alpha).into_dyn()));
    let mut inputs = vec![xq[0].as_str(), &wq, &xq[2]];
    let wz = name("weight_zero_point");
    if p.qtype == QType::UInt8 {
        // Symmetric around 128: one zero point for every column.
        let zero = ndarray::ArrayD::from_elem(vec![], 128);
        constants.push(int_tensor(&wz, &zero, QType::UInt8));
        inputs.push(&wz);
    }
    out.push(op("MatMulInteger", &name("MatMulInteger"), &inputs, &[name("int32")], vec![]));
    let to_float = Attribute::int("to", 1);
    out.push(op("Cast", &name("Cast"), &[&name("int32")], &[name("float")], vec![to_float]));
    out.push(op("Mul", &name("scale_Mul"), &[&xq[1], &ws], &[name("scale")], vec![]));
    let product = if p.bias.is_some() { name("product") } else { y.clone() };
    out.push(op("Mul", &name("Mul"), &[&name("float"), &name("scale")], std::slice::from_ref(&product), vec![]));
    if let Some(b) = p.bias {
        let bname = b.name.clone();
        constants.push(b);
        out.push(op("Add", &name("bias_Add"), &[&product, &bname], std::slice::from_ref(y), vec![]));
    }
}

/// Dynamic quantization that first measures each MatMul/Gemm's effect on the
/// output over calibration data and keeps the worst float until the summed
/// noise meets `target_sqnr_db` (see `sensitivity`).
pub fn quantize_dynamic_with_fallback(
    model: &mut Model,
    options: &DynamicOptions,
    calib: &crate::data::Dataset,
    target_sqnr_db: f64,
    report: &mut QuantReport,
    progress: &dyn crate::measure::Progress,
) -> Result<()> {
    let prepared = model.clone();
    let g = &prepared.graph;
    let nodes: Vec<usize> =
        (0..g.nodes.len()).filter(|&i| matches!(eligible(g, &g.nodes[i], options), Ok(Some(_)))).collect();
    let build = |only: &[usize]| {
        let mut m = prepared.clone();
        let o = DynamicOptions { only_nodes: Some(only.to_vec()), ..options.clone() };
        quantize_dynamic(&mut m, &o, &mut QuantReport::default())?;
        Ok(m)
    };
    let trials = crate::quant::sensitivity::Trials { build: &build, switched: None, by_size: false, in_litert: false };
    let float =
        crate::quant::sensitivity::fallback(&prepared, &nodes, calib, target_sqnr_db, &trials, report, progress)?;
    let exclude: Vec<String> = float.iter().map(|&n| g.nodes[n].name.clone()).filter(|n| !n.is_empty()).collect();
    let dynamic = DynamicOptions { exclude: [options.exclude.clone(), exclude.clone()].concat(), ..options.clone() };
    quantize_dynamic(model, &dynamic, report)?;
    // The layers kept float still store int8 weights (weight-only): the file stays small.
    let fallen: Vec<usize> =
        model.graph.nodes.iter().enumerate().filter(|(_, n)| exclude.contains(&n.name)).map(|(i, _)| i).collect();
    let weight_options = crate::quant::WeightOptions {
        only_nodes: Some(fallen),
        reduce_range: options.reduce_range,
        ..Default::default()
    };
    crate::quant::quantize_weights(model, &weight_options, report)
}

pub(in crate::quant) fn op(
    op_type: &str,
    name: &str,
    inputs: &[&str],
    outputs: &[String],
    attributes: Vec<Attribute>,
) -> Node {
    Node {
        name: name.into(),
        op_type: op_type.into(),
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        outputs: outputs.to_vec(),
        attributes,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::{quantize_dynamic, DynamicOptions};
    use crate::ir::testing::{model, node, tensor, wavy};
    use crate::ir::DataType;
    use crate::quant::QuantReport;

    /// uint8 weights give MatMulInteger their zero point (128); int8 ones leave it out (0).
    #[test]
    fn unsigned_weights_name_their_zero_point() {
        for unsigned in [false, true] {
            let nodes = vec![node("MatMul", &["x", "w"], "y", &[])];
            let mut m = model(nodes, vec![tensor("w", &[8, 4], wavy)], &[2, 8], &["y"], 13);
            let options = DynamicOptions { unsigned_weights: unsigned, ..Default::default() };
            quantize_dynamic(&mut m, &options, &mut QuantReport::default()).unwrap();
            let mm = m.graph.nodes.iter().find(|n| n.op_type == "MatMulInteger").unwrap();
            let w = m.graph.constant(&mm.inputs[1]).unwrap().unwrap();
            assert_eq!(w.dtype, if unsigned { DataType::UINT8 } else { DataType::INT8 });
            assert_eq!(mm.inputs.len(), if unsigned { 4 } else { 3 });
            if unsigned {
                let zp = m.graph.constant(&mm.inputs[3]).unwrap().unwrap();
                assert_eq!(zp.to_array::<u8>().unwrap().iter().copied().collect::<Vec<_>>(), vec![128]);
            }
        }
    }
}
