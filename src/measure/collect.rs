//! The one collector: a pass declares what it needs of the data as [`Statistic`]s, and
//! [`collect`] serves all of them in one run over the data. A statistic reduced inside the graph
//! (extremes, largest values …) adds nodes to a copy of the model, so the runtime hands back a few
//! numbers per tensor and batch instead of the tensor (gigabytes per batch on ppocr_rec); one that
//! needs whole tensors (histograms, Gram matrices, per-channel sums) captures them. Every run gets
//! the memory budget of `capture.rs`.

use super::capture::{measured_batch_plan, runs_in_flight, Rows};
use crate::data::{Array, Bound};
use crate::ir::{Model, Node, Tensor};
use crate::measure::Progress;
use crate::runtime::{Session, SessionOptions};
use crate::Result;
use std::collections::BTreeSet;

/// How one tensor is reduced: the nodes added for it and the outputs handed back, in order.
pub struct Reduction {
    /// Nodes reading the tensor (and each other's outputs, and the statistic's shared nodes).
    pub nodes: Vec<Node>,
    /// The reduced values returned for the tensor on each batch.
    pub outputs: Vec<String>,
}

/// One statistic a pass asks of some tensors: how each is reduced inside the graph, and what is
/// done with each batch's reduced values. Names it adds start with the tensor's name or `prunq_`.
pub trait Statistic {
    /// The tensors it reduces.
    fn tensors(&self) -> Vec<String>;
    /// Constants and nodes its reductions share (the nodes read only graph inputs and constants).
    fn shared(&self) -> (Vec<Tensor>, Vec<Node>) {
        (vec![], vec![])
    }
    /// The nodes reducing `t` and the outputs handed back for it.
    fn reduce(&self, t: &str) -> Reduction;
    /// One batch's reduced values of `t` (as many as [`Reduction::outputs`]), in the data's order.
    fn visit(&mut self, t: &str, reduced: &[Array]) -> Result<()>;
    /// Whether it hands back whole tensors: the batches in flight then also keep every
    /// intermediate within [`super::RUN_BYTES`] (a reduced tensor is freed as soon as it is
    /// reduced, so in-graph runs hold far less than the model's every activation).
    fn whole_tensors(&self) -> bool {
        false
    }
    /// Whether `t`'s reduction hands back the fed value itself (a graph input captured whole):
    /// when every tensor asked is, the data is read without running the model.
    fn fed_as_is(&self, _t: &str) -> bool {
        false
    }
}

/// Runs the rows of `bound` that `rows` says through `model` with every statistic's reductions
/// added to one copy of it, and hands each batch's reduced values to each statistic in the data's
/// order; `progress` advances by the rows of each batch. Batches shrink and fewer run at once when
/// what they hand back (and, for whole tensors, what they make) would pass the memory budget. An
/// error when the runtime will not build or run the augmented copy (an op that does not take a
/// tensor's type): the statistics may then hold part of the data.
pub fn collect(
    model: &Model,
    bound: &Bound,
    rows: Rows,
    statistics: &mut [&mut dyn Statistic],
    progress: &dyn Progress,
) -> Result<()> {
    collect_in(None, model, bound, rows, statistics, progress)
}

/// [`collect`] in `backend` (`None`: the process's default runtime).
pub fn collect_in(
    backend: Option<crate::runtime::Backend>,
    model: &Model,
    bound: &Bound,
    rows: Rows,
    statistics: &mut [&mut dyn Statistic],
    progress: &dyn Progress,
) -> Result<()> {
    let asked: Vec<Vec<(String, Reduction)>> =
        statistics.iter().map(|s| s.tensors().into_iter().map(|t| (t.clone(), s.reduce(&t))).collect()).collect();
    if asked.iter().zip(statistics.iter()).all(|(a, s)| a.iter().all(|(t, _)| s.fed_as_is(t))) {
        return visit_fed(bound, rows, statistics, &asked, progress);
    }
    // The reductions go at the end, the last-made tensor's first. ONNX Runtime's default
    // execution order is a depth-first walk up from the graph's leaves taken from the last node
    // back: so the first activation's reduction is reached first, runs as soon as its producer
    // has, and each tensor is freed right after it is reduced. ppocr_rec at batch 8: 136 MB and
    // 3.5× faster, against 1.7 GB with the reductions in production order at the end (every
    // activation held to the end) and 3.1 GB (prunq) with each right after its producer.
    let wanted: BTreeSet<&String> = asked.iter().flatten().map(|(t, _)| t).collect();
    let produced: Vec<&String> =
        model.graph.nodes.iter().flat_map(|n| n.outputs.iter()).filter(|t| wanted.contains(t)).collect();
    let placed: BTreeSet<&String> = produced.iter().copied().collect();
    let mut m = model.clone();
    let mut shared_nodes = vec![];
    for s in statistics.iter() {
        let (constants, nodes) = s.shared();
        let known: BTreeSet<String> = m.graph.initializers.iter().map(|i| i.name.clone()).collect();
        m.graph.initializers.extend(constants.into_iter().filter(|c| !known.contains(&c.name)));
        shared_nodes.extend(nodes);
    }
    m.graph.nodes.splice(0..0, shared_nodes);
    for t in wanted.iter().filter(|t| !placed.contains(*t)).copied().chain(produced.into_iter().rev()) {
        for (_, r) in asked.iter().flatten().filter(|(name, _)| name == t) {
            m.graph.nodes.extend(r.nodes.iter().cloned());
        }
    }
    let capture: Vec<String> = asked.iter().flatten().flat_map(|(_, r)| r.outputs.iter().cloned()).collect();
    if capture.is_empty() {
        // Nothing asked: a runtime refuses a run without outputs, and there is nothing to run.
        for b in bound.batches_upto(rows.batch, rows.limit) {
            progress.advance(bound.rows_in(&b?.1) as u64);
            progress.check_stop()?;
        }
        return Ok(());
    }
    // Batches run on every thread, each thread's session made at once (ppocr_rec_v4's calibration
    // copy, 6 800 nodes, 0.7 s each to optimize). Whole tensors may allow fewer runs in flight:
    // as many sessions as the batch asked for allows (known before any session, from tract's
    // analysis), any other made only when it runs (ppocr_rec_v4's calibration with SmoothQuant's
    // captures: its second session made then cost 0.4 s).
    let whole = statistics.iter().any(|s| s.whole_tensors());
    let threads = crate::parallel::threads().min(bound.rows.min(rows.limit).div_ceil(rows.batch.max(1)));
    let fit_asked = match whole {
        true => runs_in_flight(model, &capture, bound, rows.batch, threads)?,
        false => threads,
    };
    let options = SessionOptions { capture, capture_only: true, backend, sessions: fit_asked, ..Default::default() };
    let session = Session::new(&m, &options)?;
    let (batch, in_flight) = measured_batch_plan(&session, bound, rows.batch)?;
    let in_flight = match whole {
        true if batch == rows.batch => fit_asked.min(in_flight),
        true => runs_in_flight(model, &options.capture, bound, batch, in_flight)?,
        false => in_flight,
    };
    let batches = bound.batches_upto(batch, rows.limit).map(|b| b.map(|(_, batch)| batch));
    crate::parallel::ordered_upto(
        in_flight,
        batches,
        |batch| session.run(batch),
        |batch, outputs| {
            let mut rest = &outputs[..];
            for (statistic, reductions) in statistics.iter_mut().zip(&asked) {
                for (t, r) in reductions {
                    let (mine, after) = rest.split_at(r.outputs.len().min(rest.len()));
                    statistic.visit(t, mine)?;
                    rest = after;
                }
            }
            progress.advance(bound.rows_in(&batch) as u64);
            progress.check_stop()
        },
    )
}

/// Hands each statistic the fed values it asked for straight from the data (the model would
/// only copy them): ppocr_rec's input ranges, 64 lines read twice, 3.1 s of model runs → none.
fn visit_fed(
    bound: &Bound,
    rows: Rows,
    statistics: &mut [&mut dyn Statistic],
    asked: &[Vec<(String, Reduction)>],
    progress: &dyn Progress,
) -> Result<()> {
    for batch in bound.batches_upto(rows.batch, rows.limit) {
        let (_, batch) = batch?;
        for (statistic, reductions) in statistics.iter_mut().zip(asked) {
            for (t, _) in reductions {
                let Some(i) = bound.names.iter().position(|n| n == t) else { continue };
                statistic.visit(t, std::slice::from_ref(&batch[i]))?;
            }
        }
        progress.advance(bound.rows_in(&batch) as u64);
        progress.check_stop()?;
    }
    Ok(())
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
