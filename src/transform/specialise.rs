//! Specialisation (`--fix-input NAME=VALUE`): an input frozen to a constant — a streaming model's
//! sample rate, a flag —, what it decides computed, and every `If` whose condition it fixes replaced
//! by the branch it takes. The result is the original on inputs that carry that value, as a plain
//! graph the passes that need one (static quantization, structured pruning, LiteRT) can work on.

use crate::ir::{AttrValue, DataType, Dim, Graph, Model, Node, Tensor};
use crate::{Error, Result};
use std::collections::{BTreeMap, BTreeSet};

/// An input frozen to a value, as `NAME=VALUE` (a number, `true`/`false`, or numbers separated by
/// commas for an input of fixed size).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FixedInput {
    /// The graph input.
    pub name: String,
    /// Its value as written.
    pub value: String,
}

impl std::str::FromStr for FixedInput {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.split_once('=') {
            Some((name, value)) if !name.trim().is_empty() && !value.trim().is_empty() => {
                Ok(FixedInput { name: name.trim().into(), value: value.trim().into() })
            }
            _ => Err(format!("'{s}': expected NAME=VALUE (e.g. sr=16000)")),
        }
    }
}

/// What specialising did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Specialised {
    /// The inputs fixed, as `name = value`.
    pub fixed: Vec<String>,
    /// Each `If` folded and the branch it took, as `If 'name': then_branch`.
    pub branches: Vec<String>,
    /// Constant values no longer read (the branches not taken, what decided them), dropped.
    pub dropped_values: usize,
}

/// Freezes `fixes` into `model` (see the module comment). An unknown input, a value that does
/// not fit the input's type or size, or an input of open size is an error naming it.
pub fn fix_inputs(model: &mut Model, fixes: &[FixedInput]) -> Result<Specialised> {
    let mut done = Specialised::default();
    if fixes.is_empty() {
        return Ok(done);
    }
    let weights_before = weight_values(model);
    for fix in fixes {
        let constant = value_of(&model.graph, fix)?;
        model.graph.inputs.retain(|i| i.name != fix.name);
        model.graph.initializers.push(constant);
        done.fixed.push(format!("{} = {}", fix.name, fix.value));
    }
    loop {
        let conditions: BTreeSet<String> = model
            .graph
            .nodes
            .iter()
            .filter(|n| n.op_type == "If")
            .filter_map(|n| n.input(0))
            .map(String::from)
            .collect();
        super::fold_constants_into(model, &conditions)?;
        let Some(at) = model.graph.nodes.iter().position(|n| n.op_type == "If" && decided(&model.graph, n).is_some())
        else {
            break;
        };
        let node = model.graph.nodes.remove(at);
        let then = decided(&model.graph, &node).unwrap_or(true);
        let branch = if then { "then_branch" } else { "else_branch" };
        done.branches.push(format!("If '{}': {branch}", node.label()));
        let body = node.attributes.iter().find(|a| a.name == branch).and_then(|a| match &a.value {
            AttrValue::Graph(g) => Some(g.as_ref().clone()),
            _ => None,
        });
        let body = body.ok_or_else(|| Error::Model(format!("node '{}' (If) has no {branch}", node.label())))?;
        inline(&mut model.graph, at, body, &node.outputs);
    }
    super::remove_unused_constants(&mut model.graph);
    model.graph.sort_nodes()?;
    model.graph.validate(&BTreeSet::new())?;
    done.dropped_values = weights_before.saturating_sub(weight_values(model));
    Ok(done)
}

/// Constant values in the model, its bodies' included.
fn weight_values(model: &Model) -> usize {
    let main: usize = model.graph.initializers.iter().map(|t| t.numel().unwrap_or(0)).sum();
    main + model.weights_in_subgraphs().iter().map(|(_, n)| n).sum::<usize>()
}

/// The graph inputs the conditions of the main graph's `If`s are computed from: what
/// `--fix-input` would fix to take one branch.
pub fn deciding_inputs(model: &Model) -> Vec<String> {
    let g = &model.graph;
    let index = crate::ir::GraphIndex::new(g);
    let inputs: BTreeSet<&str> = g.inputs.iter().map(|i| i.name.as_str()).collect();
    let constants: BTreeSet<String> = g.constant_names().into_iter().collect();
    let mut found = BTreeSet::new();
    let mut todo: Vec<&str> = g.nodes.iter().filter(|n| n.op_type == "If").filter_map(|n| n.input(0)).collect();
    let mut seen = BTreeSet::new();
    while let Some(name) = todo.pop() {
        if !seen.insert(name) || constants.contains(name) {
            continue;
        }
        if inputs.contains(name) {
            found.insert(name.to_string());
        } else if let Some(p) = index.producer(name) {
            todo.extend(g.nodes[p].inputs.iter().map(String::as_str).filter(|i| !i.is_empty()));
        }
    }
    found.into_iter().collect()
}

impl FixedInput {
    /// The value as a constant of the input's type and size in `model` (named like the input).
    pub fn constant(&self, model: &Model) -> Result<Tensor> {
        value_of(&model.graph, self)
    }
}

/// The input's value as a constant of its type and size.
fn value_of(g: &Graph, fix: &FixedInput) -> Result<Tensor> {
    let err = |why: String| Error::Usage(format!("--fix-input {}={}: {why}", fix.name, fix.value));
    let constants: BTreeSet<String> = g.constant_names().into_iter().collect();
    let Some(input) = g.inputs.iter().find(|i| i.name == fix.name && !constants.contains(&i.name)) else {
        let names: Vec<&str> =
            g.inputs.iter().filter(|i| !constants.contains(&i.name)).map(|i| i.name.as_str()).collect();
        return Err(err(format!("the model has no input '{}' (inputs: {})", fix.name, names.join(", "))));
    };
    let words: Vec<&str> = fix.value.split(',').map(str::trim).collect();
    let dims: Vec<i64> = match input.shape() {
        Some(shape) => shape
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => Ok(*n),
                _ => Err(err(format!("input '{}' has open dims: only inputs of fixed size can be fixed", fix.name))),
            })
            .collect::<Result<_>>()?,
        None if words.len() == 1 => vec![],
        None => vec![words.len() as i64],
    };
    let count = dims.iter().product::<i64>().max(0) as usize;
    if count != words.len() {
        return Err(err(format!(
            "input '{}' has shape {dims:?}: {count} values needed, {} given",
            fix.name,
            words.len()
        )));
    }
    let dtype = input.dtype().unwrap_or(DataType::FLOAT);
    let not = |w: &str, what: &str| err(format!("'{w}' is not {what} (input '{}' takes {dtype})", fix.name));
    let ints = || words.iter().map(|w| w.parse::<i64>().map_err(|_| not(w, "an integer"))).collect::<Result<Vec<_>>>();
    let floats = || words.iter().map(|w| w.parse::<f64>().map_err(|_| not(w, "a number"))).collect::<Result<Vec<_>>>();
    let shape: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
    let name = fix.name.as_str();
    let whole = |v: Vec<i64>| ndarray::ArrayD::from_shape_vec(shape.clone(), v).expect("count checked");
    let array = |v: Vec<f64>| ndarray::ArrayD::from_shape_vec(shape.clone(), v).expect("count checked");
    Ok(match dtype {
        DataType::INT64 => Tensor::from_array(name, &whole(ints()?)),
        DataType::INT32 => Tensor::from_array(name, &whole(ints()?).mapv(|v| v as i32)),
        DataType::FLOAT => Tensor::from_array(name, &array(floats()?).mapv(|v| v as f32)),
        DataType::DOUBLE => Tensor::from_array(name, &array(floats()?)),
        DataType::BOOL => {
            let bits = words
                .iter()
                .map(|w| match w.to_ascii_lowercase().as_str() {
                    "true" | "1" => Ok(1u8),
                    "false" | "0" => Ok(0u8),
                    _ => Err(not(w, "true or false")),
                })
                .collect::<Result<Vec<u8>>>()?;
            Tensor::from_bytes(name, DataType::BOOL, dims.clone(), bits.into())
        }
        other => return Err(err(format!("inputs of type {other} cannot be fixed"))),
    })
}

/// The branch an `If` takes when its condition is a constant: `Some(true)` for then.
fn decided(g: &Graph, node: &Node) -> Option<bool> {
    let condition = g.constant(node.input(0)?)?.ok()?;
    let bytes = condition.bytes()?;
    (condition.dtype == DataType::BOOL && condition.numel() == Some(1)).then(|| bytes.first() != Some(&0))
}

/// Puts `body`'s nodes where the `If` at `at` was, its values renamed where they clash with the
/// graph's, its outputs under the If's output names.
fn inline(g: &mut Graph, at: usize, mut body: Graph, outputs: &[String]) {
    let mut taken = BTreeSet::new();
    names_in(g, &mut taken);
    let mut renamed = fresh_names(&body, &taken);
    // A body output a node of the body makes (once) takes the If's output name directly.
    let made: BTreeSet<&String> = body.nodes.iter().flat_map(|n| n.outputs.iter()).collect();
    let mut identities = vec![];
    let mut seen = BTreeSet::new();
    for (out, wanted) in body.outputs.iter().zip(outputs) {
        if wanted.is_empty() {
            continue;
        }
        if made.contains(&out.name) && seen.insert(out.name.clone()) && !renamed.contains_key(&out.name) {
            renamed.insert(out.name.clone(), wanted.clone());
        } else {
            let from = renamed.get(&out.name).cloned().unwrap_or_else(|| out.name.clone());
            identities.push(Node::single(wanted, "Identity", &[&from], vec![]));
        }
    }
    rename(&mut body, &renamed);
    g.value_info.extend(body.value_info);
    g.initializers.extend(body.initializers);
    let nodes: Vec<Node> = body.nodes.into_iter().chain(identities).collect();
    g.nodes.splice(at..at, nodes);
}

/// Renames the values `g` defines that `outer` (the scopes around it) defines too — a name a pass
/// made inside a body, say — so no name is defined twice; returns how many.
pub(super) fn rename_clashes(g: &mut Graph, outer: &BTreeSet<String>) -> usize {
    let renamed = fresh_names(g, outer);
    rename(g, &renamed);
    renamed.len()
}

/// New names (`name__1` …, free in `outer` and `g`) for the values `g` defines that `outer` has.
fn fresh_names(g: &Graph, outer: &BTreeSet<String>) -> BTreeMap<String, String> {
    let defined: Vec<String> = g
        .initializers
        .iter()
        .map(|t| t.name.clone())
        .chain(g.nodes.iter().flat_map(|n| n.outputs.iter().filter(|o| !o.is_empty()).cloned()))
        .collect();
    let mut taken: BTreeSet<String> = outer.clone();
    names_in(g, &mut taken);
    let mut renamed = BTreeMap::new();
    for name in defined.into_iter().filter(|d| outer.contains(d)) {
        let fresh = (1..).map(|k| format!("{name}__{k}")).find(|n| !taken.contains(n)).expect("unbounded");
        taken.insert(fresh.clone());
        renamed.insert(name, fresh);
    }
    renamed
}

/// Every value name `g` defines itself (not its bodies): inputs, initializers, node outputs.
pub(super) fn defined_in(g: &Graph) -> BTreeSet<String> {
    g.inputs
        .iter()
        .map(|i| i.name.clone())
        .chain(g.initializers.iter().map(|t| t.name.clone()))
        .chain(g.nodes.iter().flat_map(|n| n.outputs.iter().filter(|o| !o.is_empty()).cloned()))
        .collect()
}

/// Renames what `g`'s nodes read and write (and what its nested bodies read of them), its
/// initializers, declared types and outputs.
fn rename(g: &mut Graph, renamed: &BTreeMap<String, String>) {
    if renamed.is_empty() {
        return;
    }
    for t in &mut g.initializers {
        if let Some(n) = renamed.get(&t.name) {
            t.name = n.clone();
        }
    }
    for v in &mut g.value_info {
        if let Some(n) = renamed.get(&v.name) {
            v.name = n.clone();
        }
    }
    for node in &mut g.nodes {
        for name in node.inputs.iter_mut().chain(node.outputs.iter_mut()) {
            if let Some(n) = renamed.get(name) {
                *name = n.clone();
            }
        }
        for body in node.subgraphs_mut() {
            // Names a nested body defines itself shadow nothing it reads from here.
            let mut own = BTreeSet::new();
            names_in(body, &mut own);
            let outer: BTreeMap<String, String> =
                renamed.iter().filter(|(k, _)| !own.contains(*k)).map(|(k, v)| (k.clone(), v.clone())).collect();
            rename(body, &outer);
        }
    }
    for o in &mut g.outputs {
        if let Some(n) = renamed.get(&o.name) {
            o.name = n.clone();
        }
    }
}

/// Every value name `g` and its bodies define.
fn names_in(g: &Graph, out: &mut BTreeSet<String>) {
    out.extend(g.inputs.iter().map(|i| i.name.clone()));
    out.extend(g.initializers.iter().map(|t| t.name.clone()));
    for n in &g.nodes {
        out.extend(n.outputs.iter().filter(|o| !o.is_empty()).cloned());
        for b in n.subgraphs() {
            names_in(b, out);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::data::Array;
    use crate::ir::testing::{model, node, tensor, wavy};
    use crate::ir::{Attribute, ValueInfo};
    use crate::runtime::{Backend, Session, SessionOptions};

    /// y = Relu(x · (sr == 16000 ? a : b)), x [2, 8]; the then branch names a value `z` as the main
    /// graph does (a clash the inlining must rename).
    pub(crate) fn gated() -> Model {
        let branch = |name: &str, w: &str, scale: f32| {
            let graph = Graph {
                name: name.into(),
                nodes: vec![
                    node("MatMul", &["x", w], "z", &[]),
                    node("Mul", &["z", "two"], &format!("{name}_out"), &[]),
                ],
                initializers: vec![tensor(w, &[8, 16], move |i| wavy(i) * scale), tensor("two", &[], |_| 2.0)],
                outputs: vec![ValueInfo::tensor(format!("{name}_out"), Some(DataType::FLOAT), None)],
                ..Default::default()
            };
            Attribute::new(&format!("{name}_branch"), AttrValue::Graph(Box::new(graph)))
        };
        let mut iff = node("If", &["is_16k"], "y", &[]);
        iff.attributes = vec![branch("then", "a", 1.0), branch("else", "b", -0.5)];
        let nodes = vec![node("Equal", &["sr", "rate"], "is_16k", &[]), iff, node("Relu", &["y"], "z", &[])];
        let mut m = model(nodes, vec![Tensor::scalar("rate", 16000i64)], &[2, 8], &["z"], 17);
        m.graph.inputs.push(ValueInfo::tensor("sr", Some(DataType::INT64), Some(&[])));
        m
    }

    fn run(m: &Model, inputs: &[Array]) -> Vec<f32> {
        let options = SessionOptions { backend: Some(Backend::Tract), ..Default::default() };
        Session::new(m, &options).unwrap().run(inputs).unwrap().remove(0).to_f32().iter().copied().collect()
    }

    fn x() -> Array {
        Array::F32(ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[2, 8]), |i| wavy(i[0] * 8 + i[1])))
    }

    fn fix(name: &str, value: &str) -> FixedInput {
        FixedInput { name: name.into(), value: value.into() }
    }

    #[test]
    fn a_fixed_rate_leaves_the_branch_it_takes_and_the_same_outputs() {
        let original = gated();
        for (rate, branch) in [("16000", "then_branch"), ("8000", "else_branch")] {
            let mut m = original.clone();
            let done = fix_inputs(&mut m, &[fix("sr", rate)]).unwrap();
            assert_eq!(done.branches, vec![format!("If 'y_If': {branch}")]);
            assert_eq!(done.dropped_values, 128 + 1 + 1, "the other branch's weights and the folded rate");
            assert!(m.graph.nodes.iter().all(|n| n.op_type != "If"));
            assert_eq!(m.graph.inputs.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["x"]);
            let sr = Array::I64(ndarray::arr0(rate.parse::<i64>().unwrap()).into_dyn());
            assert_eq!(run(&m, &[x()]), run(&original, &[x(), sr]), "sr = {rate}");
        }
    }

    #[test]
    fn fixes_that_cannot_be_made_say_why() {
        let e = |f: FixedInput| fix_inputs(&mut gated(), &[f]).unwrap_err().to_string();
        assert!(e(fix("rate", "1")).contains("no input 'rate' (inputs: x, sr)"));
        assert!(e(fix("sr", "16k")).contains("'16k' is not an integer"));
        assert!(e(fix("sr", "1,2")).contains("1 values needed, 2 given"));
        assert!(e(fix("x", "1")).contains("16 values needed"));
        assert_eq!("sr=16000".parse::<FixedInput>(), Ok(fix("sr", "16000")));
        assert!("sr".parse::<FixedInput>().unwrap_err().contains("NAME=VALUE"));
        assert_eq!(deciding_inputs(&gated()), vec!["sr".to_string()]);
    }
}
