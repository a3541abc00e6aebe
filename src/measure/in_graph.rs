//! Statistics reduced inside the graph: nodes that reduce each wanted tensor (its extremes, its
//! largest values …) are added to a copy of the model, and the runtime hands back a few numbers
//! per tensor and batch instead of the tensor (gigabytes per batch on ppocr_rec).

use crate::data::{Array, Bound};
use crate::ir::{Model, Node, Tensor};
use crate::measure::Progress;
use crate::runtime::{Session, SessionOptions};
use crate::Result;
use std::collections::BTreeSet;

/// How one tensor is reduced: the nodes added for it and the outputs handed back, in order.
pub struct Reduction {
    /// Nodes reading the tensor (and each other's outputs).
    pub nodes: Vec<Node>,
    /// The reduced values returned for the tensor on each batch.
    pub outputs: Vec<String>,
}

/// Runs the first `rows` rows of `bound` through `model` with `reduce(t)` added for each of
/// `tensors` (and `constants` as initializers), `batch_size` rows at a time, and hands each
/// batch's outputs of each tensor to `visit(tensor, outputs)` in the data's order, then calls
/// `batch_done(rows in the batch)`. `Ok(false)` when the runtime will not build or run the
/// augmented copy (an op that does not take the tensor's type): the caller measures otherwise.
#[allow(clippy::too_many_arguments)]
pub fn reduce_in_graph(
    model: &Model,
    bound: &Bound,
    rows: usize,
    tensors: &[String],
    batch_size: usize,
    reduce: impl Fn(&String) -> Reduction,
    constants: Vec<Tensor>,
    mut visit: impl FnMut(&String, &[Array]),
    progress: &dyn Progress,
) -> Result<bool> {
    // The reductions go at the end, the last-made tensor's first. ONNX Runtime's default
    // execution order is a depth-first walk up from the graph's leaves taken from the last node
    // back: so the first activation's reduction is reached first, runs as soon as its producer
    // has, and each tensor is freed right after it is reduced. ppocr_rec at batch 8: 136 MB and
    // 3.5× faster, against 1.7 GB with the reductions in production order at the end (every
    // activation held to the end) and 3.1 GB (prunq) with each right after its producer.
    let wanted: BTreeSet<&String> = tensors.iter().collect();
    let produced: Vec<&String> =
        model.graph.nodes.iter().flat_map(|n| n.outputs.iter()).filter(|t| wanted.contains(t)).collect();
    let placed: BTreeSet<&String> = produced.iter().copied().collect();
    let mut m = model.clone();
    m.graph.initializers.extend(constants);
    for t in tensors.iter().filter(|t| !placed.contains(t)).chain(produced.into_iter().rev()) {
        m.graph.nodes.extend(reduce(t).nodes);
    }
    let per_tensor: Vec<usize> = tensors.iter().map(|t| reduce(t).outputs.len()).collect();
    let capture: Vec<String> = tensors.iter().flat_map(|t| reduce(t).outputs).collect();
    let session = match Session::new(&m, &SessionOptions { capture, capture_only: true, ..Default::default() }) {
        Ok(s) => s,
        Err(_) => return Ok(false),
    };
    let batches = bound.batches_upto(batch_size, rows).map(|b| b.map(|(_, batch)| batch));
    let run = crate::parallel::ordered(
        batches,
        |batch| session.run(batch),
        |batch, outputs| {
            let mut rest = &outputs[..];
            for (t, &n) in tensors.iter().zip(&per_tensor) {
                let (mine, after) = rest.split_at(n.min(rest.len()));
                visit(t, mine);
                rest = after;
            }
            progress.advance(bound.rows_in(&batch) as u64);
            progress.check_stop()
        },
    );
    match run {
        Ok(()) => Ok(true),
        Err(crate::Error::Interrupted) => Err(crate::Error::Interrupted),
        Err(_) => Ok(false),
    }
}

/// A node `op_type(inputs) → output` named after its output.
pub fn node(op_type: &str, inputs: &[&str], output: String, attributes: Vec<crate::ir::Attribute>) -> Node {
    Node {
        name: output.clone(),
        op_type: op_type.into(),
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        outputs: vec![output],
        attributes,
        ..Default::default()
    }
}
