//! Exact graph clean-up: shape computations folded into constants.
//!
//! Exporters compute every Reshape target at run time from `Shape` of a
//! tensor (`Shape → Gather → Unsqueeze → Concat`), and scales such as
//! `1/sqrt(head_dim)` from a dim cast to float. ONNX Runtime and tract run
//! those chains on every inference when a dim is symbolic (the batch): on a
//! small transformer they are a third of the time. tract's inference analysis
//! evaluates them with the dims as symbols ([`crate::runtime::symbolic_facts`]);
//! what it proves constant becomes a constant, and a Reshape target that
//! depends on a symbolic dim becomes a constant with `0` (copy the input's dim)
//! and at most one `-1`. The result is checked against the input model's
//! outputs at two sizes of every symbolic dim before it is kept.

use crate::ir::{DataType, GraphIndex, Model, Tensor};
use crate::measure::{made_up_inputs, sizes_that_run, Fill};
use crate::runtime::{symbolic_facts, Session, SessionOptions, SymDim, SymValue, SymbolicFact};
use crate::Result;
use std::collections::{BTreeMap, BTreeSet};

/// Ops whose output is not a function of their inputs: never folded.
pub(super) const NONDETERMINISTIC: &[&str] =
    &["RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"];

/// A folded value larger than this stays computed (a `ConstantOfShape` or
/// `Range` output would otherwise grow the file).
const MAX_FOLDED_ELEMENTS: usize = 4096;

/// The symbolic dims' values the rewritten model is checked at.
const CHECK_SIZES: usize = 2;

/// What the clean-up did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Simplification {
    /// Nodes before.
    pub nodes_before: usize,
    /// Nodes after.
    pub nodes_after: usize,
    /// Tensors computed at run time that became constants.
    pub folded: usize,
    /// Reshape targets that became constants with `0`/`-1` for symbolic dims.
    pub reshapes: usize,
    /// Why the model was left as it was, when the rewrite could not be checked
    /// or changed its outputs.
    pub skipped: Option<String>,
}

/// Folds shape computations (see the module comment); the model is unchanged
/// when there is nothing to fold or the rewritten one cannot be shown to give
/// the same outputs (`skipped` says why).
pub fn simplify(model: &mut Model) -> Result<Simplification> {
    let mut done = Simplification { nodes_before: model.graph.nodes.len(), ..Default::default() };
    done.nodes_after = done.nodes_before;
    let facts = match symbolic_facts(model) {
        Ok(f) => f,
        Err(e) => {
            done.skipped = Some(format!("the shapes could not be analysed: {e}"));
            return Ok(done);
        }
    };
    let mut candidate = model.clone();
    let (folded, reshapes) = fold(&mut candidate, &facts)?;
    if folded + reshapes == 0 {
        return Ok(done);
    }
    if let Err(why) = same_outputs(model, &candidate) {
        done.skipped = Some(why);
        return Ok(done);
    }
    *model = candidate;
    done.folded = folded;
    done.reshapes = reshapes;
    done.nodes_after = model.graph.nodes.len();
    Ok(done)
}

/// The rewrite itself, unchecked: (tensors folded, reshape targets fixed).
fn fold(model: &mut Model, facts: &BTreeMap<String, SymbolicFact>) -> Result<(usize, usize)> {
    let g = &model.graph;
    let ix = GraphIndex::new(g);
    // Nodes computing from shapes and constants alone, in topological order.
    let mut derived = vec![false; g.nodes.len()];
    let mut derived_tensors: BTreeSet<String> = BTreeSet::new();
    for n in g.topo_order()? {
        let node = &g.nodes[n];
        let computable = node.is_onnx_op()
            && node.op_type != "Constant"
            && node.subgraphs().next().is_none()
            && !NONDETERMINISTIC.contains(&node.op_type.as_str());
        let from_shapes = matches!(node.op_type.as_str(), "Shape" | "Size")
            || node
                .inputs
                .iter()
                .filter(|i| !i.is_empty())
                .all(|i| derived_tensors.contains(i.as_str()) || g.constant_site(i).is_some());
        if computable && from_shapes {
            derived[n] = true;
            derived_tensors.extend(node.outputs.iter().filter(|o| !o.is_empty()).cloned());
        }
    }
    let graph_outputs: BTreeSet<&str> = g.outputs.iter().map(|o| o.name.as_str()).collect();
    let captured: BTreeSet<String> =
        g.nodes.iter().flat_map(|n| n.subgraphs().flat_map(super::captured_names)).collect();
    let mut constants: Vec<Tensor> = vec![];
    let mut folded_nodes = BTreeSet::new();
    let mut reshape_targets: Vec<(usize, Vec<i64>)> = vec![];
    for (n, node) in g.nodes.iter().enumerate().filter(|(n, _)| derived[*n]) {
        let read_outside = |t: &String| {
            !t.is_empty()
                && (ix.consumers(t).iter().any(|(c, _)| !derived[*c]) || captured.contains(t))
                && !graph_outputs.contains(t.as_str())
        };
        let used: Vec<&String> = node.outputs.iter().filter(|t| read_outside(t)).collect();
        if used.is_empty() {
            continue;
        }
        let values: Option<Vec<Tensor>> = used.iter().map(|t| known_value(t, facts.get(t.as_str())?)).collect();
        if let Some(values) = values {
            constants.extend(values);
            folded_nodes.insert(n);
            continue;
        }
        // Only Reshape targets are rewritten from symbolic values.
        for t in used {
            let readers = ix.consumers(t).iter().filter(|(c, _)| !derived[*c]);
            for &(r, slot) in readers {
                if let (1, Some(target)) = (slot, reshape_target(&g.nodes[r], facts)) {
                    reshape_targets.push((r, target));
                }
            }
        }
    }
    let (folded, reshapes) = (constants.len(), reshape_targets.len());
    let g = &mut model.graph;
    let mut names: BTreeSet<String> = g.nodes.iter().flat_map(|n| n.outputs.iter().cloned()).collect();
    names.extend(g.initializers.iter().map(|t| t.name.clone()));
    let mut shared: BTreeMap<Vec<i64>, String> = BTreeMap::new();
    for (r, target) in reshape_targets {
        let name = shared
            .entry(target.clone())
            .or_insert_with(|| {
                let base = format!("{}_target", g.nodes[r].inputs[1]);
                let name = (0..)
                    .map(|k| if k == 0 { base.clone() } else { format!("{base}_{k}") })
                    .find(|n| !names.contains(n));
                let name = name.expect("an unused name");
                names.insert(name.clone());
                constants.push(Tensor::from_array(&name, &ndarray::Array1::from(target).into_dyn()));
                name
            })
            .clone();
        g.nodes[r].inputs[1] = name;
    }
    // A folded node's outputs become initializers of the same names.
    let mut k = 0;
    g.nodes.retain(|_| {
        k += 1;
        !folded_nodes.contains(&(k - 1))
    });
    g.initializers.extend(constants);
    remove_dead_nodes(g, &derived_tensors);
    super::remove_unused_constants(g);
    let live: BTreeSet<String> = g
        .nodes
        .iter()
        .flat_map(|n| n.outputs.iter().cloned())
        .chain(g.initializers.iter().map(|t| t.name.clone()))
        .collect();
    g.value_info.retain(|v| live.contains(&v.name));
    Ok((folded, reshapes))
}

/// Drops nodes that computed from shapes and whose outputs nothing reads any more.
fn remove_dead_nodes(g: &mut crate::ir::Graph, derived: &BTreeSet<String>) {
    loop {
        let used: BTreeSet<String> = g
            .nodes
            .iter()
            .flat_map(|n| n.inputs.iter().cloned().chain(n.subgraphs().flat_map(super::captured_names)))
            .chain(g.outputs.iter().map(|o| o.name.clone()))
            .collect();
        let before = g.nodes.len();
        g.nodes.retain(|n| {
            let dead = n.outputs.iter().all(|o| o.is_empty() || !used.contains(o));
            !(dead && n.outputs.iter().any(|o| derived.contains(o)))
        });
        if g.nodes.len() == before {
            return;
        }
    }
}

/// The tensor a fully known value makes, if it is small enough to store.
fn known_value(name: &str, fact: &SymbolicFact) -> Option<Tensor> {
    let shape = |dims: &[usize]| ndarray::IxDyn(dims);
    match fact.value.as_ref()? {
        SymValue::Ints { dtype, dims, values } => {
            let ints: Option<Vec<i64>> =
                values.iter().map(|v| if let SymDim::Known(n) = v { Some(*n) } else { None }).collect();
            let ints = ints.filter(|v| v.len() <= MAX_FOLDED_ELEMENTS)?;
            match *dtype {
                DataType::INT64 => {
                    Some(Tensor::from_array(name, &ndarray::ArrayD::from_shape_vec(shape(dims), ints).ok()?))
                }
                DataType::INT32 => {
                    let ints: Vec<i32> = ints.iter().map(|&v| i32::try_from(v).ok()).collect::<Option<_>>()?;
                    Some(Tensor::from_array(name, &ndarray::ArrayD::from_shape_vec(shape(dims), ints).ok()?))
                }
                _ => None,
            }
        }
        SymValue::Floats { dtype, dims, values } if values.len() <= MAX_FOLDED_ELEMENTS => match *dtype {
            DataType::FLOAT => {
                let v: Vec<f32> = values.iter().map(|&v| v as f32).collect();
                Some(Tensor::from_array(name, &ndarray::ArrayD::from_shape_vec(shape(dims), v).ok()?))
            }
            DataType::DOUBLE => {
                Some(Tensor::from_array(name, &ndarray::ArrayD::from_shape_vec(shape(dims), values.clone()).ok()?))
            }
            _ => None,
        },
        SymValue::Floats { .. } => None,
    }
}

/// A constant target for a Reshape whose output shape is known in terms of
/// the symbolic dims: each known dim as is, a symbolic dim the input has at
/// the same position as `0` (copy), at most one other as `-1`.
fn reshape_target(node: &crate::ir::Node, facts: &BTreeMap<String, SymbolicFact>) -> Option<Vec<i64>> {
    if node.op_type != "Reshape" || !node.is_onnx_op() {
        return None;
    }
    let input = facts.get(node.input(0)?)?.shape.as_ref()?;
    let output = facts.get(node.outputs.first()?)?.shape.as_ref()?;
    let allow_zero = node.attr_int("allowzero").unwrap_or(0) != 0;
    let mut inferred = false;
    output
        .iter()
        .enumerate()
        .map(|(i, d)| match d {
            SymDim::Known(0) if !allow_zero => None,
            SymDim::Known(n) => Some(*n),
            SymDim::Expr(_) if !allow_zero && input.get(i) == Some(d) => Some(0),
            SymDim::Expr(_) if !inferred => {
                inferred = true;
                Some(-1)
            }
            SymDim::Expr(_) => None,
        })
        .collect()
}

/// Both models' outputs on the same pseudo-random inputs, every symbolic dim at
/// each of the first [`CHECK_SIZES`] sizes the input model runs at, in the default runtime: equal to float
/// rounding (a runtime may fuse the simplified graph differently).
fn same_outputs(before: &Model, after: &Model) -> std::result::Result<(), String> {
    let options = SessionOptions::default();
    // Loaded at once (ONNX Runtime optimizes a graph on one thread).
    let (a, b) = crate::parallel::join(|| Session::new(before, &options), || Session::new(after, &options));
    let a = a.map_err(|e| format!("the input model does not run: {e}"))?;
    let b = b.map_err(|e| format!("the simplified model does not run: {e}"))?;
    // Two sizes the input model runs at: 2 and 3 for most, longer where its windows need them.
    let sizes = sizes_that_run(before, &a, CHECK_SIZES).map_err(|e| format!("the input model does not run: {e}"))?;
    for size in sizes {
        let inputs = made_up_inputs(before, size, Fill::Spread)?;
        let want = a.run(&inputs).map_err(|e| format!("the input model does not run: {e}"))?;
        let got = b.run(&inputs).map_err(|e| format!("the simplified model does not run: {e}"))?;
        for ((w, g), out) in want.iter().zip(&got).zip(&before.graph.outputs) {
            let (w, g) = (w.to_f32(), g.to_f32());
            let scale = w.iter().fold(1f32, |m, v| m.max(v.abs()));
            let equal = w.shape() == g.shape()
                && w.iter().zip(g.iter()).all(|(x, y)| (x - y).abs() <= 1e-5 * scale || (x.is_nan() && y.is_nan()));
            if !equal {
                return Err(format!("output '{}' changed when simplified (symbolic dims = {size})", out.name));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Array;
    use crate::ir::{Attribute, Dim, Graph, Node, ValueInfo};
    use crate::runtime::Backend;
    use ndarray::{ArrayD, IxDyn};

    fn node(op: &str, inputs: &[&str], output: &str, attributes: Vec<Attribute>) -> Node {
        Node {
            name: output.into(),
            op_type: op.into(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: vec![output.into()],
            attributes,
            ..Default::default()
        }
    }

    fn ints(name: &str, v: &[i64]) -> Tensor {
        Tensor::from_array(name, &ndarray::Array1::from(v.to_vec()).into_dyn())
    }

    /// `Reshape(x, Concat(Unsqueeze(Shape(x)[0]), [24])) / sqrt(Shape(x)[2])`
    /// on x: [batch, 4, 6], as exporters write a flatten and an attention scale.
    fn exported() -> Model {
        let batch = [Dim::Symbolic("batch".into()), Dim::Fixed(4), Dim::Fixed(6)];
        let nodes = vec![
            node("Shape", &["x"], "s", vec![]),
            node("Gather", &["s", "zero"], "b", vec![]),
            node("Unsqueeze", &["b", "axes"], "b1", vec![]),
            node("Concat", &["b1", "rest"], "target", vec![Attribute::int("axis", 0)]),
            node("Reshape", &["x", "target"], "y", vec![]),
            node("Gather", &["s", "two"], "d", vec![]),
            node("Cast", &["d"], "df", vec![Attribute::int("to", DataType::FLOAT.0 as i64)]),
            node("Sqrt", &["df"], "scale", vec![]),
            node("Div", &["y", "scale"], "z", vec![]),
        ];
        let mut zero = ints("zero", &[0]);
        zero.dims.clear();
        let mut two = ints("two", &[2]);
        two.dims.clear();
        let graph = Graph {
            nodes,
            initializers: vec![zero, two, ints("axes", &[0]), ints("rest", &[24])],
            inputs: vec![ValueInfo::tensor("x", Some(DataType::FLOAT), Some(&batch))],
            outputs: vec![ValueInfo::tensor("z", Some(DataType::FLOAT), None)],
            ..Default::default()
        };
        Model::from_graph(graph, 17)
    }

    fn run(m: &Model, x: &ArrayD<f32>) -> ArrayD<f32> {
        let options = SessionOptions { backend: Some(Backend::Tract), ..Default::default() };
        Session::new(m, &options).unwrap().run(&[Array::F32(x.clone())]).unwrap().remove(0).to_f32()
    }

    #[test]
    fn shape_chains_become_constants_and_the_outputs_stay() {
        let before = exported();
        let mut after = before.clone();
        let done = simplify(&mut after).unwrap();
        assert_eq!(done.skipped, None);
        assert_eq!((done.folded, done.reshapes), (1, 1), "{done:?}");
        let ops: Vec<&str> = after.graph.nodes.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["Reshape", "Div"]);
        // The batch is copied from the input (0), the rest known.
        let target = after.graph.constant(&after.graph.nodes[0].inputs[1]).unwrap().unwrap();
        assert_eq!(target.to_i64_vec().unwrap(), [0, 24]);
        let scale = after.graph.constant("scale").unwrap().unwrap();
        assert_eq!(scale.to_f32().unwrap().iter().copied().collect::<Vec<_>>(), [6f32.sqrt()]);
        // At a batch size the check did not use.
        let x = ArrayD::from_shape_fn(IxDyn(&[5, 4, 6]), |i| (i[0] * 24 + i[1] * 6 + i[2]) as f32 * 0.1 - 3.0);
        assert_eq!(run(&before, &x), run(&after, &x));
    }

    #[test]
    fn a_model_without_shape_computations_is_left_as_it_is() {
        let mut m = exported();
        m.graph.nodes.truncate(0);
        m.graph.nodes.push(node("Relu", &["x"], "z", vec![]));
        let before = m.clone();
        let done = simplify(&mut m).unwrap();
        assert_eq!((done.folded, done.reshapes, done.nodes_after), (0, 0, 1));
        assert_eq!(m, before);
    }
}
