//! Fuses hard-swish written out as `x · clip(x + 3, 0, 6) / 6` (how Paddle and
//! older PyTorch exports write it: four ops, four passes over the activation)
//! into one `HardSwish` (opset 14; the model's opset is raised when lower).
//! Equal up to float rounding; both ONNX Runtime and tract run `HardSwish`.

use crate::ir::{Graph, GraphIndex, Model, Node};
use crate::Result;

/// Returns how many hard-swishes were fused.
pub fn fuse_hardswish(model: &mut Model) -> Result<usize> {
    if next(&model.graph).is_none() {
        return Ok(0);
    }
    if model.onnx_opset().unwrap_or(1) < 14 {
        let ranks = crate::analysis::rank_lookup(model);
        super::upgrade_opset(model, 14, &|n| ranks.get(n).copied())?;
    }
    let mut fused = 0;
    while let Some(site) = next(&model.graph) {
        let g = &mut model.graph;
        let node = Node::single(&site.y, "HardSwish", &[&site.x], vec![]);
        g.nodes[site.div] = node;
        let mut gone = [site.add, site.clip, site.mul];
        gone.sort_unstable();
        for ix in gone.into_iter().rev() {
            g.nodes.remove(ix);
        }
        fused += 1;
    }
    super::remove_unused_constants(&mut model.graph);
    Ok(fused)
}

/// One written-out hard-swish: its nodes, input and output.
struct Site {
    add: usize,
    clip: usize,
    mul: usize,
    div: usize,
    x: String,
    y: String,
}

/// Whether `name` is a constant holding the one value `v`.
fn is_scalar(g: &Graph, name: Option<&str>, v: f32) -> bool {
    match name.and_then(|n| g.constant(n)) {
        Some(Ok(t)) => t.to_f32().is_ok_and(|a| a.len() == 1 && a.iter().all(|&x| x == v)),
        _ => false,
    }
}

fn next(g: &Graph) -> Option<Site> {
    let index = GraphIndex::new(g);
    let sole = |t: &str| index.consumers(t).len() == 1 && g.outputs.iter().all(|o| o.name != t);
    let producer = |t: &str, op: &str| {
        index.producer(t).filter(|&p| g.nodes[p].op_type == op && g.nodes[p].is_onnx_op() && sole(t))
    };
    g.nodes.iter().enumerate().find_map(|(div, d)| {
        if d.op_type != "Div" || !d.is_onnx_op() || !is_scalar(g, d.input(1), 6.0) {
            return None;
        }
        let mul = producer(d.input(0)?, "Mul")?;
        let m = &g.nodes[mul];
        [(0, 1), (1, 0)].into_iter().find_map(|(xs, cs)| {
            let x = m.input(xs)?;
            let clip = producer(m.input(cs)?, "Clip")?;
            let c = &g.nodes[clip];
            let bounds = match (c.input(1), c.input(2)) {
                (lo @ Some(_), hi @ Some(_)) => is_scalar(g, lo, 0.0) && is_scalar(g, hi, 6.0),
                (None, None) => c.attr_float("min") == Some(0.0) && c.attr_float("max") == Some(6.0),
                _ => false,
            };
            let add = producer(c.input(0)?, "Add").filter(|_| bounds)?;
            let a = &g.nodes[add];
            let adds_three = (a.input(0) == Some(x) && is_scalar(g, a.input(1), 3.0))
                || (a.input(1) == Some(x) && is_scalar(g, a.input(0), 3.0));
            adds_three.then(|| Site { add, clip, mul, div, x: x.to_string(), y: d.outputs[0].clone() })
        })
    })
}
