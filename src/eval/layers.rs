//! `compare --per-layer`: every intermediate tensor the two models share by
//! name, compared on the same data — the culprit finder (what ONNX Runtime's
//! `qdq_loss_debug` is used for). prunq's passes keep tensor names, so a
//! quantized or pruned model lines up with its original.

use super::{OutputComparison, RunOptions};
use crate::data::{Array, Dataset};
use crate::ir::Model;
use crate::measure::Progress;
use crate::runtime::{feed_inputs, RuntimeInfo, Session};
use crate::{Error, Result};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Per-layer batches are small: every shared tensor of both models is held at once.
const LAYER_BATCH: usize = 8;

/// One intermediate tensor of both models compared.
#[derive(Clone, Debug, Serialize)]
pub struct LayerMetrics {
    /// The tensor's name (the same in both models).
    pub name: String,
    /// The reference node that makes it.
    pub op_type: String,
    /// That node's name.
    pub node: String,
    /// The node's place in the reference graph (0 first): where error starts.
    pub position: usize,
    /// The tensor's shape (first batch).
    pub shape: Vec<usize>,
    /// SQNR of the candidate's tensor against the reference's.
    #[serde(serialize_with = "super::metrics::finite_or_string")]
    pub sqnr_db: f64,
    /// The lowest per-row cosine.
    pub cosine_min: f64,
    /// The mean per-row cosine.
    pub cosine_mean: f64,
    /// The largest absolute difference.
    pub max_abs_error: f64,
}

/// Every intermediate tensor two models share, compared.
#[derive(Clone, Debug, Serialize)]
pub struct LayerComparison {
    /// Rows compared.
    pub samples: usize,
    /// The runtime that ran both.
    pub runtime: RuntimeInfo,
    /// Worst first (lowest SQNR).
    pub layers: Vec<LayerMetrics>,
    /// Tensors in both models that could not be compared, and why (shapes differ).
    pub skipped: Vec<(String, String)>,
    /// Tensors of the reference with no tensor of that name in the candidate.
    pub unmatched: usize,
}

impl LayerComparison {
    /// The first tensor in graph order whose SQNR is under `db`: where the error starts.
    pub fn first_below(&self, db: f64) -> Option<&LayerMetrics> {
        self.layers.iter().filter(|l| l.sqnr_db < db).min_by_key(|l| l.position)
    }
}

/// Compares every float tensor made by a node of `reference` with the
/// candidate's tensor of the same name, over `data`.
pub fn compare_layers(
    reference: &Model,
    candidate: &Model,
    data: &Dataset,
    options: &RunOptions,
    progress: &dyn Progress,
) -> Result<LayerComparison> {
    let feeds = feed_inputs(reference);
    if feed_inputs(candidate).iter().map(|i| &i.name).ne(feeds.iter().map(|i| &i.name)) {
        return Err(Error::Usage("the two models take different inputs".into()));
    }
    let made_by: BTreeMap<&str, (usize, &str, &str)> = reference
        .graph
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.op_type != "Constant")
        .flat_map(|(i, n)| {
            n.outputs
                .iter()
                .filter(|o| !o.is_empty())
                .map(move |o| (o.as_str(), (i, n.op_type.as_str(), n.name.as_str())))
        })
        .collect();
    let in_candidate: BTreeSet<&str> =
        candidate.graph.nodes.iter().flat_map(|n| n.outputs.iter().map(String::as_str)).collect();
    let shared: Vec<String> = made_by.keys().filter(|n| in_candidate.contains(*n)).map(|n| n.to_string()).collect();
    if shared.is_empty() {
        return Err(Error::Usage("the two models share no tensor names to compare".into()));
    }
    let bound = data.bind(&feeds, options.labels.as_deref())?;
    let a = Session::capturing(reference, &shared)?.expect("shared is not empty");
    let b = Session::capturing(candidate, &shared)?.expect("shared is not empty");
    let mut cmps: Vec<Option<OutputComparison>> = shared.iter().map(|_| Some(OutputComparison::new())).collect();
    let mut shapes: Vec<Vec<usize>> = vec![vec![]; shared.len()];
    let mut skipped = BTreeMap::new();
    progress.start(bound.rows as u64, "compare layers");
    let batch = options.batch_size.clamp(1, LAYER_BATCH);
    let run = |(_, inputs): &(usize, Vec<Array>)| Ok((a.run(inputs)?, b.run(inputs)?));
    crate::parallel::ordered(bound.batches(batch), run, |(_, inputs), (ra, rb)| {
        for (i, (x, y)) in ra.iter().zip(&rb).enumerate() {
            let Some(cmp) = cmps[i].as_mut() else { continue };
            let (Array::F32(x), Array::F32(y)) = (x, y) else {
                cmps[i] = None; // shape computations, masks: not activations
                continue;
            };
            if x.shape() != y.shape() {
                skipped.insert(
                    shared[i].clone(),
                    format!("shape {:?} in the reference, {:?} in the candidate", x.shape(), y.shape()),
                );
                cmps[i] = None;
                continue;
            }
            shapes[i] = x.shape().iter().skip(1).copied().collect();
            cmp.update(x, y);
        }
        progress.advance(bound.rows_in(&inputs) as u64);
        progress.check_stop()?;
        Ok(())
    })?;
    progress.finish();
    let mut layers: Vec<LayerMetrics> = shared
        .iter()
        .zip(cmps)
        .zip(shapes)
        .filter_map(|((name, cmp), shape)| {
            let m = cmp?.finish(name);
            let (position, op_type, node) = made_by[name.as_str()];
            Some(LayerMetrics {
                name: name.clone(),
                op_type: op_type.to_string(),
                node: node.to_string(),
                position,
                shape,
                // A tensor that turned NaN is the worst there is.
                sqnr_db: if m.sqnr_db.is_nan() { f64::NEG_INFINITY } else { m.sqnr_db },
                cosine_min: m.cosine_min,
                cosine_mean: m.cosine_mean,
                max_abs_error: m.max_abs_error,
            })
        })
        .collect();
    layers.sort_by(|x, y| x.sqnr_db.total_cmp(&y.sqnr_db).then(x.position.cmp(&y.position)));
    Ok(LayerComparison {
        samples: bound.rows,
        runtime: RuntimeInfo::of(a.backend),
        layers,
        skipped: skipped.into_iter().collect(),
        unmatched: made_by.len() - shared.len(),
    })
}
