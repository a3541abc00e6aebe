//! Control-flow bodies (If branches, Loop and Scan bodies) as models of their own, so a pass that
//! works on one graph and needs no data — weight-only, dynamic, float16 storage, magnitude
//! pruning — enters them as it works on the main graph. Names stay as they were: a body's outputs,
//! what it captures from outside and the types at its boundary are the pass's usual contract
//! (weights restored under their old names, float in and out).

use crate::ir::{collect_captures, AttrValue, Graph, Model, OpsetId, ValueInfo};
use crate::Result;
use std::collections::BTreeSet;

/// Runs `pass` on every If/Loop/Scan body of `model`, nested ones included (each body before the
/// bodies inside it), with the label of the node that holds it. Each body is given as a model of
/// its own: the model's IR version and opsets, and the outer names it captures declared as (untyped)
/// inputs so the graph is whole; those declarations are taken away after. What a pass imported
/// (a raised opset, a new domain) is raised in the whole model. Returns how many bodies were entered.
pub fn for_each_body(model: &mut Model, pass: &mut dyn FnMut(&mut Model, &str) -> Result<()>) -> Result<usize> {
    let mut imports = model.opset_import.clone();
    let mut entered = 0;
    let outer = super::specialise::defined_in(&model.graph);
    enter(&mut model.graph, &outer, model.ir_version, &mut imports, pass, &mut entered)?;
    let target = onnx_version(&imports);
    if target > onnx_version(&model.opset_import) {
        // Raised in one body: the main graph and the other bodies follow (rewriting them where an
        // op changed its signature).
        super::upgrade_opset(model, target, &|_| None)?;
    }
    for import in imports {
        let same = |o: &&mut OpsetId| normal(&o.domain) == normal(&import.domain);
        match model.opset_import.iter_mut().find(same) {
            Some(o) => o.version = o.version.max(import.version),
            None => model.opset_import.push(import),
        }
    }
    Ok(entered)
}

/// `outer`: the names the scopes around `graph` define, its own included.
fn enter(
    graph: &mut Graph,
    outer: &BTreeSet<String>,
    ir_version: i64,
    imports: &mut Vec<OpsetId>,
    pass: &mut dyn FnMut(&mut Model, &str) -> Result<()>,
    entered: &mut usize,
) -> Result<()> {
    for node in graph.nodes.iter_mut() {
        let op = format!("{} '{}'", node.op_type, node.label());
        for attr in node.attributes.iter_mut() {
            let label = format!("{op} ({})", attr.name);
            let bodies: Vec<&mut Graph> = match &mut attr.value {
                AttrValue::Graph(g) => vec![g.as_mut()],
                AttrValue::Graphs(gs) => gs.iter_mut().collect(),
                _ => continue,
            };
            for body in bodies {
                let mut captured = BTreeSet::new();
                collect_captures(body, &mut captured);
                let captured: BTreeSet<String> = captured.into_iter().map(str::to_string).collect();
                let mut sub = Model::from_graph(std::mem::take(body), 0);
                (sub.ir_version, sub.opset_import) = (ir_version, imports.clone());
                sub.graph.inputs.extend(captured.iter().map(|name| ValueInfo::tensor(name.as_str(), None, None)));
                let done = pass(&mut sub, &label);
                sub.graph.inputs.retain(|i| !captured.contains(&i.name));
                // A name the pass made here that a scope around defines too (both quantized the
                // same activation) is renamed: ONNX defines each name once.
                super::specialise::rename_clashes(&mut sub.graph, outer);
                *body = std::mem::take(&mut sub.graph);
                done?;
                *entered += 1;
                for import in sub.opset_import {
                    match imports.iter_mut().find(|o| normal(&o.domain) == normal(&import.domain)) {
                        Some(o) => o.version = o.version.max(import.version),
                        None => imports.push(import),
                    }
                }
                let mut around = outer.clone();
                around.extend(super::specialise::defined_in(body));
                enter(body, &around, ir_version, imports, pass, entered)?;
            }
        }
    }
    Ok(())
}

/// The default domain's spellings as one.
fn normal(domain: &Option<String>) -> &str {
    match domain.as_deref() {
        None | Some("ai.onnx") => "",
        Some(d) => d,
    }
}

fn onnx_version(imports: &[OpsetId]) -> i64 {
    imports.iter().filter(|o| normal(&o.domain).is_empty()).map(|o| o.version).max().unwrap_or(0)
}
