//! float16: the float32 constants and computations in half precision, except
//! where float16 cannot hold them — measured, not assumed. The model runs on
//! the data (made-up inputs without): nodes whose values leave float16's range
//! or fall below its smallest normal, ops with no float16 form and ops holding
//! subgraphs stay float32 (Casts at the boundaries); then the converted model
//! runs beside the original, tensor by tensor, and each node where the error
//! starts is kept float32 too, until the outputs agree. Graph inputs and
//! outputs stay float32 unless asked.

use crate::data::{Array, Dataset};
use crate::ir::{AttrValue, Attribute, DataType, Graph, GraphIndex, Model, Node, Tensor, TensorData};
use crate::quant::report::{QuantReport, Skipped};
use crate::runtime::{Backend, Session, SessionOptions};
use crate::{Error, Result};
use std::collections::{BTreeMap, BTreeSet};

/// Inputs that are float32 whatever the data type: (op, input slot).
const FLOAT32_ONLY: &[(&str, usize)] = &[("Resize", 1), ("Resize", 2), ("Upsample", 1)];
/// Ops the ONNX standard defines without a float16 form.
const NO_FLOAT16: &[&str] = &["Range"];
/// Largest magnitude float16 holds.
const F16_MAX: f32 = 65504.0;
/// Values must stay below this share of float16's range (data not seen may be larger).
const HEADROOM: f32 = 0.25;
/// Smallest normal float16: below it values lose precision, then vanish.
const F16_MIN_NORMAL: f32 = 6.103_515_6e-5;
/// A node whose float16 output is worse than this (its inputs being fine) stays float32.
const NODE_SQNR_DB: f64 = 30.0;
/// Rounds of measuring and keeping nodes float32.
const MAX_ROUNDS: usize = 8;
/// float16 weights should cost the outputs less than this (their summed noise, in dB).
const WEIGHTS_SQNR_DB: f64 = 45.0;
/// Layers whose weights are measured one by one.
const WEIGHTED: &[&str] = &["Conv", "ConvTranspose", "MatMul", "Gemm"];

/// fp16 conversion's options.
#[derive(Clone, Debug)]
pub struct Fp16Options {
    /// Keep float32 graph inputs and outputs (Casts inserted at the edges).
    pub keep_io_types: bool,
    /// Where the converted model is checked; empty: the process's runtime.
    pub backends: Vec<Backend>,
    /// Nodes (by name) or op types left float32.
    pub exclude: Vec<String>,
}

impl Default for Fp16Options {
    fn default() -> Self {
        Fp16Options { keep_io_types: true, backends: vec![], exclude: vec![] }
    }
}

/// Converts `model` to float16 where float16 holds its values, measured on the
/// first rows of `data` (made-up inputs when `None`) in each runtime of `options`.
pub fn convert_fp16(
    model: &mut Model,
    options: &Fp16Options,
    data: Option<&Dataset>,
    report: &mut QuantReport,
) -> Result<()> {
    // tract 0.23 types a float16 Gemm's output as float32; MatMul + Add is the same maths.
    crate::transform::gemm_to_matmul(&mut model.graph)?;
    // ONNX Runtime 1.32 crashes on a float16 Transpose feeding a MatMul; MatMul first is the same maths.
    crate::transform::transpose_after_matmul(&mut model.graph)?;
    model.graph.sort_nodes()?;
    let backends = match options.backends.is_empty() {
        true => vec![crate::runtime::default_backend()?],
        false => options.backends.clone(),
    };
    let batches = crate::eval::check_batches(model, data, CHECK_ROWS, 4)?;
    let float = float_tensors(model, &batches, &backends)?;
    let mut keep: BTreeMap<String, String> = static_reasons(model, &float);
    for n in model.graph.nodes.iter().filter(|n| n.is_any_of(&options.exclude)) {
        if let Some(key) = n.outputs.first() {
            keep.entry(key.clone()).or_insert_with(|| format!("{}: excluded", n.label()));
        }
    }
    // Where the error starts is found in the first runtime; the others check the outputs.
    for round in 0..MAX_ROUNDS {
        let (candidate, half) = mixed(model, &float, &keep, options.keep_io_types)?;
        let culprits = measure(model, &candidate, &half, &float, &keep, &batches, backends[0])?;
        if culprits.is_empty() {
            break;
        }
        if round + 1 == MAX_ROUNDS {
            report.notes.push(format!(
                "float16 still loses accuracy after {MAX_ROUNDS} rounds of keeping nodes float32 (last: {})",
                culprits.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        keep.extend(culprits);
    }
    keep.extend(weight_culprits(model, &keep, &batches, backends[0])?);
    let converted = mixed(model, &float, &keep, options.keep_io_types)?.0;
    for &backend in &backends {
        match output_problem(model, &converted, &batches, backend) {
            Ok(Some(problem)) => report.notes.push(format!("float16 output: {problem}")),
            Ok(None) => {}
            Err(e) => report.notes.push(format!("float16 not checked in {backend}: {e}")),
        }
    }
    *model = converted;
    for (node, why) in &keep {
        report.skipped.push(Skipped::new(node, why.clone()));
    }
    Ok(())
}

/// Layers whose float16 weights cost the outputs most, kept float32 (weights
/// too) until the summed noise of the rest's is under [`WEIGHTS_SQNR_DB`].
/// Measured one layer at a time (its weights alone rounded, everything else
/// float32): where a network amplifies its weights' rounding (re-parameterized
/// convs, folded BatchNorms) a few layers make most of float16's error —
/// ppocr_rec_v4: two 1×1 convs cost 43.7 and 46.5 dB, the next 51.1.
fn weight_culprits(
    model: &Model,
    keep: &BTreeMap<String, String>,
    batches: &[Vec<Array>],
    backend: Backend,
) -> Result<BTreeMap<String, String>> {
    let g = &model.graph;
    let weight_of = |n: &Node| -> Option<String> {
        let w = n.input(1)?;
        let t = g.constant(w)?.ok()?;
        (t.dtype == DataType::FLOAT && t.numel().unwrap_or(0) > 1).then(|| w.to_string())
    };
    let layers: Vec<(&Node, String)> = g
        .nodes
        .iter()
        .filter(|n| n.is_onnx_op() && WEIGHTED.contains(&n.op_type.as_str()))
        .filter(|n| n.outputs.first().is_some_and(|o| !keep.contains_key(o)))
        .filter_map(|n| Some((n, weight_of(n)?)))
        .collect();
    let options = SessionOptions { backend: Some(backend), ..Default::default() };
    let judge = crate::measure::Reference::new(&Session::new(model, &options)?, batches.to_vec())?;
    let noises = crate::parallel::map_upto(crate::parallel::MODEL_RUNS_IN_FLIGHT, &layers, |(_, w)| -> Result<f64> {
        let mut m = model.clone();
        let t = m.graph.constant(w).ok_or_else(|| Error::Model(format!("'{w}' is not a constant")))??;
        let rounded = t.to_f32()?.mapv(|v| half::f16::from_f32(v.clamp(-F16_MAX, F16_MAX)).to_f32());
        m.graph.set_constant(w, Tensor::from_array(w, &rounded))?;
        Ok(judge.noise(&Session::new(&m, &options)?, None)?.whole)
    });
    let noises: Vec<f64> = noises.into_iter().collect::<Result<_>>()?;
    let mut order: Vec<usize> = (0..layers.len()).collect();
    order.sort_by(|&a, &b| noises[b].total_cmp(&noises[a]).then(a.cmp(&b)));
    let budget = 10f64.powf(-WEIGHTS_SQNR_DB / 10.0);
    let mut left: f64 = noises.iter().sum();
    let mut culprits = BTreeMap::new();
    for i in order {
        if left <= budget {
            break;
        }
        left -= noises[i];
        let (node, _) = layers[i];
        let db = -10.0 * noises[i].max(f64::MIN_POSITIVE).log10();
        let why = format!("{}: its float16 weights alone cost the outputs {db:.1} dB", node.label());
        culprits.insert(node.outputs[0].clone(), why);
    }
    Ok(culprits)
}

/// Rows the check runs (in batches of 4: every tensor of a batch is held at once).
const CHECK_ROWS: usize = 16;

/// Float32 tensors of the main graph: inputs, constants, and node outputs the
/// first runtime that runs the model returns as float32, with their largest magnitude.
fn float_tensors(model: &Model, batches: &[Vec<Array>], backends: &[Backend]) -> Result<BTreeMap<String, f32>> {
    let g = &model.graph;
    let mut float: BTreeMap<String, f32> = BTreeMap::new();
    for t in g.initializers.iter().filter(|t| t.dtype == DataType::FLOAT) {
        float.insert(t.name.clone(), t.to_f32()?.iter().fold(0.0, |m, v| m.max(v.abs())));
    }
    for n in &g.nodes {
        for a in &n.attributes {
            if let AttrValue::Tensor(t) = &a.value {
                if t.dtype == DataType::FLOAT && n.op_type == "Constant" {
                    float.insert(n.outputs[0].clone(), t.to_f32()?.iter().fold(0.0, |m, v| m.max(v.abs())));
                }
            }
        }
    }
    let inputs = crate::runtime::feed_inputs(model);
    let captured: Vec<String> = g
        .nodes
        .iter()
        .filter(|n| n.op_type != "Constant")
        .flat_map(|n| n.outputs.iter())
        .filter(|o| !o.is_empty() && !float.contains_key(*o))
        .cloned()
        .collect();
    let mut last_error = None;
    for &backend in backends {
        let options = SessionOptions {
            capture: captured.clone(),
            capture_only: true,
            backend: Some(backend),
            ..Default::default()
        };
        let session = match Session::new(model, &options) {
            Ok(s) => s,
            Err(e) => {
                last_error = Some(e);
                continue;
            }
        };
        for batch in batches {
            let values = session.run(batch)?;
            let named = captured.iter().zip(&values).chain(inputs.iter().map(|i| &i.name).zip(batch));
            for (name, value) in named {
                if let Array::F32(a) = value {
                    let m = a.iter().filter(|v| v.is_finite()).fold(0.0f32, |m, v| m.max(v.abs()));
                    let e = float.entry(name.clone()).or_insert(0.0);
                    *e = e.max(m);
                }
            }
        }
        return Ok(float);
    }
    Err(Error::Runtime(format!(
        "float16 conversion runs the model to check it, and no runtime could: {}",
        last_error.map_or("none given".into(), |e| e.to_string())
    )))
}

/// Nodes float32 before any measuring of errors, by first output: ops without a
/// float16 form, subgraphs, other domains, and values float16 cannot hold.
fn static_reasons(model: &Model, float: &BTreeMap<String, f32>) -> BTreeMap<String, String> {
    let mut keep = BTreeMap::new();
    for n in &model.graph.nodes {
        let Some(key) = n.outputs.first().cloned() else { continue };
        let touches_float = n.inputs.iter().chain(&n.outputs).any(|t| float.contains_key(t));
        let why = if !touches_float {
            None
        } else if NO_FLOAT16.contains(&n.op_type.as_str()) {
            Some(format!("{} has no float16 form", n.op_type))
        } else if n.subgraphs().next().is_some() {
            Some(format!("{} holds subgraphs, which stay as they are", n.op_type))
        } else if !n.is_onnx_op() {
            Some(format!("{} is of domain '{}', whose float16 support is unknown", n.op_type, n.domain))
        } else {
            let big = n.inputs.iter().chain(&n.outputs).filter_map(|t| Some((t, *float.get(t)?)));
            let big: Vec<(&String, f32)> = big.filter(|(_, m)| *m > F16_MAX * HEADROOM).collect();
            // Small constants are fine (their readers' sums are not small); small activations vanish.
            let computed = n.op_type != "Constant";
            let tiny = n
                .outputs
                .iter()
                .filter_map(|t| Some((t, *float.get(t)?)))
                .find(|(_, m)| computed && *m > 0.0 && *m < F16_MIN_NORMAL);
            match (big.first(), tiny) {
                (Some((t, m)), _) => {
                    Some(format!("'{t}' reaches {m:.3e}, past float16's safe range (±{:.0})", F16_MAX * HEADROOM))
                }
                (None, Some((t, m))) => {
                    Some(format!("'{t}' stays below {m:.1e}, under float16's smallest normal ({F16_MIN_NORMAL:.1e})"))
                }
                _ => None,
            }
        };
        if let Some(why) = why {
            keep.insert(key, format!("{}: {why}", n.label()));
        }
    }
    keep
}

/// The model with every float node in float16 except those in `keep` (by first output).
/// Returns the model and the tensors it computes in float16.
fn mixed(
    model: &Model,
    float: &BTreeMap<String, f32>,
    keep: &BTreeMap<String, String>,
    keep_io: bool,
) -> Result<(Model, BTreeSet<String>)> {
    let mut m = model.clone();
    let g = &mut m.graph;
    let mut half_node: Vec<bool> =
        g.nodes.iter().map(|n| n.outputs.first().is_none_or(|o| !keep.contains_key(o))).collect();
    // Constants go float16 when every reader wants float16 (a Constant node as an initializer).
    let wants_half = |op: &str, h: bool, slot: usize| h && !FLOAT32_ONLY.contains(&(op, slot));
    let index = GraphIndex::new(g);
    for (n, node) in g.nodes.iter().enumerate() {
        if node.op_type == "Constant" && half_node[n] {
            let readers = node.outputs.first().map_or(&[][..], |o| index.consumers(o));
            half_node[n] = readers.iter().all(|&(r, s)| wants_half(&g.nodes[r].op_type, half_node[r], s));
        }
    }
    // The element type each float tensor has after the conversion.
    let mut half: BTreeSet<String> = BTreeSet::new();
    let inits: BTreeSet<String> = g.initializers.iter().map(|t| t.name.clone()).collect();
    for i in g.inputs.iter().filter(|i| !keep_io && float.contains_key(&i.name) && !inits.contains(&i.name)) {
        half.insert(i.name.clone());
    }
    for (n, &h) in g.nodes.iter().zip(&half_node) {
        if h {
            half.extend(n.outputs.iter().filter(|o| float.contains_key(*o)).cloned());
        }
    }
    for t in g.initializers.iter_mut().filter(|t| float.contains_key(&t.name)) {
        let readers = index.consumers(&t.name);
        if !readers.is_empty() && readers.iter().all(|&(n, s)| wants_half(&g.nodes[n].op_type, half_node[n], s)) {
            to_half(t);
            half.insert(t.name.clone());
        }
    }
    // Attributes of float16 nodes: constants and target types follow.
    for (n, &h) in g.nodes.iter_mut().zip(&half_node) {
        if !h {
            continue;
        }
        for a in n.attributes.iter_mut() {
            match &mut a.value {
                AttrValue::Tensor(t) => to_half(t),
                AttrValue::Int(v) if (a.name == "to" || a.name == "dtype") && *v == DataType::FLOAT.0 as i64 => {
                    *v = DataType::FLOAT16.0 as i64
                }
                _ => {}
            }
        }
    }
    // Casts where a reader wants the other type.
    let mut casts: BTreeMap<(String, bool), String> = BTreeMap::new();
    let mut added = Vec::new();
    for (ni, &h) in half_node.iter().enumerate() {
        let node = &mut g.nodes[ni];
        for (slot, input) in node.inputs.iter_mut().enumerate() {
            if input.is_empty() || !float.contains_key(input.as_str()) {
                continue;
            }
            let want = wants_half(&node.op_type, h, slot);
            if half.contains(input.as_str()) != want {
                *input = cast_name(input, want, &mut casts, &mut added);
            }
        }
        // Subgraphs of a float32 node read outer float16 tensors through a Cast.
        if !h {
            let mut reads = BTreeSet::new();
            for sub in node.subgraphs() {
                crate::ir::collect_captures(sub, &mut reads);
            }
            let reads: Vec<String> = reads.into_iter().filter(|r| half.contains(*r)).map(str::to_string).collect();
            for name in reads {
                let to = cast_name(&name, false, &mut casts, &mut added);
                for a in node.attributes.iter_mut() {
                    match &mut a.value {
                        AttrValue::Graph(sub) => rename_reads(sub, &name, &to),
                        AttrValue::Graphs(subs) => subs.iter_mut().for_each(|s| rename_reads(s, &name, &to)),
                        _ => {}
                    }
                }
            }
        }
    }
    g.nodes.extend(added);
    // Graph outputs keep their declared type.
    let outputs: Vec<(String, bool)> = g
        .outputs
        .iter()
        .filter(|o| float.contains_key(&o.name))
        .map(|o| (o.name.clone(), !keep_io && o.dtype() == Some(DataType::FLOAT)))
        .collect();
    for (y, want_half) in outputs {
        if half.contains(&y) == want_half {
            continue;
        }
        let inner = format!("{y}_{}", if want_half { "fp32" } else { "fp16" });
        for node in g.nodes.iter_mut() {
            node.outputs.iter_mut().chain(node.inputs.iter_mut()).filter(|t| **t == y).for_each(|t| *t = inner.clone());
        }
        g.nodes.push(cast(&inner, &y, want_half));
        if want_half {
            half.insert(y.clone());
        } else {
            half.remove(&y);
            half.insert(inner);
        }
    }
    for v in g.value_info.iter_mut().chain(g.inputs.iter_mut()).chain(g.outputs.iter_mut()) {
        if half.contains(&v.name) && v.dtype() == Some(DataType::FLOAT) {
            let shape = v.shape();
            v.set_tensor_type(Some(DataType::FLOAT16), shape.as_deref());
        }
    }
    g.sort_nodes()?;
    Ok((m, half))
}

/// The name of `t` cast to float16 (`half`) or float32, adding the Cast once.
fn cast_name(t: &str, half: bool, casts: &mut BTreeMap<(String, bool), String>, added: &mut Vec<Node>) -> String {
    casts
        .entry((t.to_string(), half))
        .or_insert_with(|| {
            let out = format!("{t}_{}", if half { "fp16" } else { "fp32" });
            added.push(cast(t, &out, half));
            out
        })
        .clone()
}

fn cast(input: &str, output: &str, half: bool) -> Node {
    Node {
        name: format!("{output}_Cast"),
        op_type: "Cast".into(),
        inputs: vec![input.into()],
        outputs: vec![output.into()],
        attributes: vec![Attribute::int("to", if half { DataType::FLOAT16.0 } else { DataType::FLOAT.0 } as i64)],
        ..Default::default()
    }
}

/// Renames reads of the outer tensor `from` inside `g` (and its subgraphs), where not shadowed.
fn rename_reads(g: &mut Graph, from: &str, to: &str) {
    let shadowed = g.inputs.iter().any(|i| i.name == from) || g.initializers.iter().any(|t| t.name == from);
    if shadowed {
        return;
    }
    for n in g.nodes.iter_mut() {
        n.inputs.iter_mut().filter(|i| *i == from).for_each(|i| *i = to.to_string());
        for a in n.attributes.iter_mut() {
            match &mut a.value {
                AttrValue::Graph(sub) => rename_reads(sub, from, to),
                AttrValue::Graphs(subs) => subs.iter_mut().for_each(|s| rename_reads(s, from, to)),
                _ => {}
            }
        }
    }
}

/// Nodes where the error starts, measured in `backend`: float16 nodes whose
/// float output is non-finite where the original's is finite, or below
/// [`NODE_SQNR_DB`], while every float input they read from other nodes is
/// fine. By first output, with the reason.
#[allow(clippy::too_many_arguments)]
fn measure(
    original: &Model,
    candidate: &Model,
    half: &BTreeSet<String>,
    float: &BTreeMap<String, f32>,
    keep: &BTreeMap<String, String>,
    batches: &[Vec<Array>],
    backend: Backend,
) -> Result<BTreeMap<String, String>> {
    let g = &original.graph;
    let names: Vec<String> = g
        .nodes
        .iter()
        .filter(|n| n.op_type != "Constant")
        .flat_map(|n| n.outputs.iter())
        .filter(|t| float.contains_key(*t))
        .cloned()
        .collect();
    // float16 tensors are captured through a Cast to float32 added after them.
    let probe = |n: &String| if half.contains(n) { format!("{n}__probe_fp32") } else { n.clone() };
    let mut probed = candidate.clone();
    for n in names.iter().filter(|n| half.contains(*n)) {
        probed.graph.nodes.push(cast(n, &probe(n), false));
    }
    let probe_names: Vec<String> = names.iter().map(probe).collect();
    let stats = errors(original, &probed, &names, &probe_names, batches, backend)?;
    let bad = |t: &str| stats.get(t).and_then(|e| e.problem(t, backend, NODE_SQNR_DB));
    let mut culprits = BTreeMap::new();
    for n in &g.nodes {
        let Some(key) = n.outputs.first() else { continue };
        if keep.contains_key(key) {
            continue;
        }
        let Some(why) = n.outputs.iter().find_map(|o| bad(o)) else { continue };
        if n.inputs.iter().all(|i| bad(i).is_none()) {
            culprits.insert(key.clone(), format!("{}: {why}", n.label()));
        }
    }
    Ok(culprits)
}

/// What is wrong with the graph outputs of `candidate` in `backend`, if anything.
fn output_problem(
    original: &Model,
    candidate: &Model,
    batches: &[Vec<Array>],
    backend: Backend,
) -> Result<Option<String>> {
    let names: Vec<String> = original.graph.outputs.iter().map(|o| o.name.clone()).collect();
    let stats = errors(original, candidate, &names, &names, batches, backend)?;
    Ok(names.iter().find_map(|n| stats.get(n.as_str()).and_then(|e| e.problem(n, backend, OUTPUT_SQNR_DB))))
}

/// A graph output of the float16 model worse than this is reported.
const OUTPUT_SQNR_DB: f64 = 25.0;

/// Error of one tensor against the original's.
#[derive(Default)]
struct TensorError {
    signal: f64,
    noise: f64,
    non_finite: usize,
}

impl TensorError {
    fn problem(&self, t: &str, backend: Backend, min_db: f64) -> Option<String> {
        if self.non_finite > 0 {
            return Some(format!("{} values of '{t}' turn non-finite in float16 ({backend})", self.non_finite));
        }
        let db = crate::measure::sqnr_db(self.signal, self.noise);
        (self.signal > 0.0 && db < min_db).then(|| format!("'{t}' is {db:.1} dB from float32 in float16 ({backend})"))
    }
}

/// Errors of `names` of the original against `probes` of the candidate, over the batches.
fn errors<'a>(
    original: &Model,
    candidate: &Model,
    names: &'a [String],
    probes: &[String],
    batches: &[Vec<Array>],
    backend: Backend,
) -> Result<BTreeMap<&'a str, TensorError>> {
    let opts = |capture: &[String]| SessionOptions {
        capture: capture.to_vec(),
        capture_only: true,
        backend: Some(backend),
        ..Default::default()
    };
    let reference = Session::new(original, &opts(names))?;
    let converted = Session::new(candidate, &opts(probes))
        .map_err(|e| Error::Runtime(format!("the float16 model does not load in {backend}: {e}")))?;
    let mut stats: BTreeMap<&str, TensorError> = BTreeMap::new();
    for batch in batches {
        let (r, c) = (reference.run(batch)?, converted.run(batch)?);
        for ((name, r), c) in names.iter().zip(&r).zip(&c) {
            let (Array::F32(r), Array::F32(c)) = (r, c) else { continue };
            let s = stats.entry(name).or_default();
            for (&a, &b) in r.iter().zip(c).filter(|(a, _)| a.is_finite()) {
                if b.is_finite() {
                    s.signal += f64::from(a) * f64::from(a);
                    s.noise += f64::from(a - b) * f64::from(a - b);
                } else {
                    s.non_finite += 1;
                }
            }
        }
    }
    Ok(stats)
}

fn to_half(t: &mut Tensor) {
    if t.dtype != DataType::FLOAT {
        return;
    }
    let Ok(a) = t.to_f32() else { return };
    let h = a.mapv(|v| half::f16::from_f32(v.clamp(-F16_MAX, F16_MAX)));
    let mut new = Tensor::from_array(&t.name, &h);
    new.doc_string = std::mem::take(&mut t.doc_string);
    new.metadata_props = std::mem::take(&mut t.metadata_props);
    if let TensorData::Bytes(_) = &new.data {
        *t = new;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::testing::{model, node, tensor};

    /// `h = x·w1` cancels two large weights (1000.1·x0 − 1000·x1, x = 1):
    /// float16 rounds 1000.1 to 1000 and loses h's 0.1; `y = h·w2` has weights float16
    /// holds exactly. Only the first stays float32.
    #[test]
    fn the_layer_whose_float16_weights_cost_the_output_stays_float32() {
        let w1 = [1000.1, 1.0, -1000.0, 0.5];
        let w2 = [1.0, 0.25];
        let nodes = vec![node("MatMul", &["x", "w1"], "h", &[]), node("MatMul", &["h", "w2"], "y", &[])];
        let inits = vec![tensor("w1", &[2, 2], |i| w1[i]), tensor("w2", &[2, 1], |i| w2[i])];
        let m = model(nodes, inits, &[4, 2], &["y"], 17);
        let x = ndarray::ArrayD::from_elem(ndarray::IxDyn(&[4, 2]), 1.0f32);
        let culprits = weight_culprits(&m, &BTreeMap::new(), &[vec![Array::F32(x)]], Backend::Tract).unwrap();
        assert_eq!(culprits.keys().collect::<Vec<_>>(), ["h"], "{culprits:?}");
        assert!(culprits["h"].contains("float16 weights alone cost"), "{culprits:?}");
    }
}
