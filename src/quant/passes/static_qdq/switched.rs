//! The sensitivity trials of static quantization in one session: a copy of the
//! prepared model where each candidate group's quantization is simulated —
//! QuantizeLinear → DequantizeLinear on its activations, dequantized int8
//! weights — and switched on by one element of an extra input
//! ([`SWITCHES`]: 1 quantized, 0 float). One session built once then runs
//! every group's trial, where a model per trial cost a session each (ppocr_rec:
//! 53 sessions, 35 s). What the simulation lacks is the runtime's integer
//! kernels: they compute the same values up to accumulation order, except
//! where a CPU's kernels saturate — the sensitivity pass checks its choice on
//! the real quantized model in the runtime for that reason.
//!
//! A switched tensor `t` becomes `If(on, DQ(Q(t)), t)`, `on` when any group
//! quantizing it is switched on; a node with weights `W` runs beside a twin
//! with the dequantized `Ŵ`, and `If(on, …)` picks between their outputs. An
//! `If` runs only the branch taken (about 2.5 µs a node in ONNX Runtime), so a
//! trial with one group on costs about a float run: with `Where`, every twin
//! and every Q/DQ pair ran in every trial (ppocr_rec: 4× a float run). tract
//! runs an `If` only where its condition is known before the run, so there the
//! switch is a `Where`.
//! Biases stay float (their int32 rounding is below the simulation's noise);
//! Gather tables are dequantized in every trial, as the real trials quantize them.

use super::{gathers, weight_inputs, Plan, StaticOptions};
use crate::ir::{AttrValue, Attribute, DataType, Dim, Graph, Model, Node, Tensor, ValueInfo};
use crate::quant::pack::int_tensor;
use crate::quant::scheme::dequantize;
use crate::quant::sensitivity::{Group, SWITCHES};
use crate::Result;
use ndarray::ArrayD;
use std::collections::{BTreeMap, BTreeSet};

pub(super) fn switched_model(
    prepared: &Model,
    plan: &Plan,
    params: &BTreeMap<String, (f32, i32)>,
    groups: &[Group],
    options: &StaticOptions,
) -> Result<Model> {
    // tract runs an `If` only where its condition is known before the run: `Where` there.
    let gated = crate::runtime::default_backend()? == crate::runtime::Backend::Ort;
    let mut m = prepared.clone();
    let group_of: BTreeMap<usize, usize> =
        groups.iter().enumerate().flat_map(|(gi, g)| g.nodes.iter().map(move |&n| (n, gi))).collect();
    // Each simulated activation: its parameters and the groups that quantize it.
    let mut fake: BTreeMap<String, ((f32, i32), BTreeSet<usize>)> = BTreeMap::new();
    for (n, tensors) in &plan.node_tensors {
        let Some(&gi) = group_of.get(n) else { continue };
        for t in tensors {
            if let Some(&p) = params.get(t) {
                fake.entry(t.clone()).or_insert((p, BTreeSet::new())).1.insert(gi);
            }
        }
    }
    // Pass-through outputs (plan.followers) are left out: they move values of
    // a tensor already on its grid, so their Q/DQ pair with its parameters is
    // an exact no-op whenever that tensor is switched on.
    let mut gates = Gates::default();
    let mut added: Vec<Node> = vec![];
    // Weighted nodes first: they are rewritten by index. Each runs twice, with
    // float and with dequantized weights, and the switch picks the output:
    // switching the weights themselves would make them non-constant, and ONNX
    // Runtime then neither pre-packs them nor uses its blocked conv layout
    // (ppocr_rec ran 4.7× slower than float that way, twice as slow this way).
    for (gi, group) in groups.iter().enumerate() {
        for &n in &group.nodes {
            let node = m.graph.nodes[n].clone();
            let [y] = node.outputs.as_slice() else { continue };
            let mut twin = node.clone();
            for (slot, w, axis) in weight_inputs(&m.graph, &node) {
                let Some(Ok(t)) = m.graph.constant(&w) else { continue };
                let Some(iw) = plan.weights.int8_weight(&t, axis, options)? else { continue };
                let name = format!("{w}_prunq_dequantized_{n}");
                let dequantized = dequantize(&iw.q, &iw.params, iw.scheme.granularity);
                m.graph.initializers.push(Tensor::from_array(&name, &dequantized));
                twin.inputs[slot] = name;
            }
            if twin.inputs == node.inputs {
                continue;
            }
            let (float, quantized) = (format!("{y}_prunq_float"), format!("{y}_prunq_quantized"));
            twin.name = format!("{}_prunq_quantized", node.name);
            twin.outputs = vec![quantized.clone()];
            m.graph.nodes[n].outputs = vec![float.clone()];
            let gate = gates.of(&mut m, &mut added, &BTreeSet::from([gi]));
            added.extend(switch(gated, &gate, y, vec![twin], &quantized, &float));
        }
    }
    for n in gathers(&prepared.graph).collect::<Vec<_>>() {
        for (slot, w, axis) in weight_inputs(&m.graph, &m.graph.nodes[n]) {
            let Some(Ok(t)) = m.graph.constant(&w) else { continue };
            let Some(iw) = plan.weights.int8_weight(&t, axis, options)? else { continue };
            let name = format!("{w}_prunq_dequantized");
            m.graph.initializers.push(Tensor::from_array(&name, &dequantize(&iw.q, &iw.params, iw.scheme.granularity)));
            m.graph.nodes[n].inputs[slot] = name;
        }
    }
    for (t, ((s, z), switched_by)) in &fake {
        let switched = format!("{t}_prunq_switched");
        // Twins inside an `If` read it too (the switches added below do not exist yet).
        for node in m.graph.nodes.iter_mut().chain(added.iter_mut()) {
            rename_input(node, t, &switched);
        }
        let (sname, zname) = (format!("{t}_prunq_scale"), format!("{t}_prunq_zero_point"));
        m.graph.initializers.push(Tensor::scalar(&sname, *s));
        m.graph.initializers.push(int_tensor(&zname, &ArrayD::from_elem(vec![], *z), options.activation_type));
        let gate = gates.of(&mut m, &mut added, switched_by);
        let (q, dq) = (format!("{t}_prunq_q"), format!("{t}_prunq_dq"));
        let fake_quantized =
            vec![op("QuantizeLinear", &q, &[t, &sname, &zname]), op("DequantizeLinear", &dq, &[&q, &sname, &zname])];
        added.extend(switch(gated, &gate, &switched, fake_quantized, &dq, t));
    }
    m.graph.nodes.extend(added);
    let shape = [Dim::Fixed(groups.len() as i64)];
    m.graph.inputs.push(ValueInfo::tensor(SWITCHES, Some(DataType::FLOAT), Some(&shape)));
    crate::transform::remove_unused_constants(&mut m.graph);
    m.graph.sort_nodes()?;
    Ok(m)
}

/// The boolean switch of each set of groups: on when any of their elements of [`SWITCHES`] is.
#[derive(Default)]
struct Gates(BTreeMap<BTreeSet<usize>, String>);

impl Gates {
    fn of(&mut self, m: &mut Model, added: &mut Vec<Node>, groups: &BTreeSet<usize>) -> String {
        if let Some(name) = self.0.get(groups) {
            return name.clone();
        }
        let name = format!("prunq_switch_{}", self.0.len());
        let indices: Vec<i64> = groups.iter().map(|&g| g as i64).collect();
        let index = ArrayD::from_shape_vec(vec![indices.len()], indices).expect("1-d");
        m.graph.initializers.push(Tensor::from_array(format!("{name}_groups"), &index));
        added.push(op("Gather", &format!("{name}_each"), &[SWITCHES, &format!("{name}_groups")]));
        let mut max = op("ReduceMax", &format!("{name}_max"), &[&format!("{name}_each")]);
        max.attributes.push(Attribute::int("keepdims", 0));
        added.push(max);
        m.graph.initializers.push(Tensor::scalar(format!("{name}_half"), 0.5f32));
        added.push(op("Greater", &name, &[&format!("{name}_max"), &format!("{name}_half")]));
        self.0.insert(groups.clone(), name.clone());
        name
    }
}

/// Makes `node`, and the nodes of its subgraphs, read `to` instead of `from`.
fn rename_input(node: &mut Node, from: &str, to: &str) {
    for i in node.inputs.iter_mut().filter(|i| *i == from) {
        *i = to.to_string();
    }
    for g in node.subgraphs_mut() {
        for n in &mut g.nodes {
            rename_input(n, from, to);
        }
    }
}

/// `output = If(gate) { on_nodes → on_output } else { off }` (`gated`): the nodes run only when
/// switched on; else `output = Where(gate, on_output, off)` beside the nodes, which always run.
fn switch(gated: bool, gate: &str, output: &str, mut on_nodes: Vec<Node>, on_output: &str, off: &str) -> Vec<Node> {
    if !gated {
        on_nodes.push(op("Where", output, &[gate, on_output, off]));
        return on_nodes;
    }
    let branch = |name: String, nodes: Vec<Node>, out: &str| {
        let outputs = vec![ValueInfo::tensor(out, Some(DataType::FLOAT), None)];
        AttrValue::Graph(Box::new(Graph { name, nodes, outputs, ..Default::default() }))
    };
    let off_output = format!("{output}_prunq_off");
    let mut node = op("If", output, &[gate]);
    node.attributes = vec![
        Attribute::new("then_branch", branch(format!("{output}_on"), on_nodes, on_output)),
        Attribute::new(
            "else_branch",
            branch(format!("{output}_off"), vec![op("Identity", &off_output, &[off])], &off_output),
        ),
    ];
    vec![node]
}

fn op(op_type: &str, output: &str, inputs: &[&str]) -> Node {
    Node {
        name: format!("{output}_{op_type}"),
        op_type: op_type.into(),
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        outputs: vec![output.into()],
        ..Default::default()
    }
}
