//! Which layers to keep float: each candidate group is quantized alone and the
//! model's output noise on a few calibration samples measured; the noisiest
//! groups fall back to float until the summed noise of the rest meets the
//! target. Noise powers of independent rounding errors add, so the sum is a
//! fair estimate of the whole model's noise.

use super::registry;
use crate::data::{Array, Dataset};
use crate::eval::Progress;
use crate::ir::Model;
use crate::runtime::{feed_inputs, Session};
use crate::Result;

/// Samples of the calibration set used to measure sensitivity.
pub const SENSITIVITY_SAMPLES: usize = 16;
/// At most this fraction of the groups falls back to float.
pub const MAX_FALLBACK_FRACTION: f64 = 0.25;

/// Nodes judged together: one layer with weights, or every other node of an op type.
pub struct Group {
    pub label: String,
    pub nodes: Vec<usize>,
}

pub fn candidate_groups(model: &Model, nodes: &[usize]) -> Vec<Group> {
    let g = &model.graph;
    let mut groups: Vec<Group> = vec![];
    let mut by_type: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
    for &n in nodes {
        let node = &g.nodes[n];
        let weighted = registry::rule(node).is_some_and(|r| {
            r.weights.iter().any(|s| node.input(s.input).is_some_and(|w| g.constant_site(w).is_some()))
        });
        if weighted {
            groups.push(Group { label: node.label(), nodes: vec![n] });
        } else {
            by_type.entry(node.op_type.clone()).or_default().push(n);
        }
    }
    groups.extend(by_type.into_iter().map(|(op, nodes)| Group { label: format!("every quantized {op}"), nodes }));
    groups
}

/// The nodes to keep float, each with the reason.
pub fn choose_fallback(
    model: &Model,
    calib: &Dataset,
    groups: &[Group],
    build: &(dyn Fn(&[usize]) -> Result<Model> + Sync),
    target_sqnr_db: f64,
    batch_size: usize,
    progress: &dyn Progress,
) -> Result<Vec<(usize, String)>> {
    let bound = calib.bind(&feed_inputs(model), None)?;
    let rows = SENSITIVITY_SAMPLES.min(bound.rows);
    let subset: Vec<Vec<Array>> = bound
        .batches(batch_size)
        .take_while(|(start, _)| *start < rows)
        .map(|(start, b)| b.iter().map(|a| a.rows(0, a.shape()[0].min(rows - start))).collect())
        .collect();
    let reference = outputs(model, &subset)?;
    let signal: f64 = reference.iter().map(|v| v * v).sum::<f64>().max(f64::MIN_POSITIVE);
    let budget = 10f64.powf(-target_sqnr_db / 10.0);
    // One trial with every group quantized first: when that already meets the
    // target, nothing falls back and the per-group trials are not needed.
    let everything: Vec<usize> = groups.iter().flat_map(|g| g.nodes.iter().copied()).collect();
    let out = outputs(&build(&everything)?, &subset)?;
    let whole: f64 = out.iter().zip(&reference).map(|(a, b)| (a - b) * (a - b)).sum::<f64>() / signal;
    if whole <= budget {
        return Ok(vec![]);
    }
    progress.start(groups.len() as u64, "sensitivity");
    // Each group's trial model is independent: they run in parallel, results in group order.
    let noise: Vec<f64> = crate::parallel::map(groups, |group| -> Result<f64> {
        let out = outputs(&build(&group.nodes)?, &subset)?;
        let n: f64 = out.iter().zip(&reference).map(|(a, b)| (a - b) * (a - b)).sum();
        Ok(n / signal)
    })
    .into_iter()
    .collect::<Result<_>>()?;
    progress.advance(groups.len() as u64);
    progress.finish();
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by(|&a, &b| noise[b].total_cmp(&noise[a]).then(a.cmp(&b)));
    let mut remaining: f64 = noise.iter().sum();
    let max_groups = ((groups.len() as f64 * MAX_FALLBACK_FRACTION).floor() as usize).max(1);
    let mut float = vec![];
    for &g in order.iter().take(max_groups) {
        if remaining <= budget {
            break;
        }
        remaining -= noise[g];
        let why = format!(
            "kept float: quantized alone, {} gives output SQNR {:.1} dB on {rows} calibration samples",
            groups[g].label,
            -10.0 * noise[g].max(1e-30).log10()
        );
        float.extend(groups[g].nodes.iter().map(|&n| (n, why.clone())));
    }
    Ok(float)
}

/// The float fallback for a pass over candidate `nodes` of `model`:
/// `build(only)` returns the model with only those nodes quantized. The
/// chosen nodes (indices into `model`) are recorded in `report` with the reason.
pub fn fallback(
    model: &Model,
    nodes: &[usize],
    calib: &Dataset,
    target_sqnr_db: f64,
    build: &(dyn Fn(&[usize]) -> Result<Model> + Sync),
    report: &mut super::QuantReport,
    progress: &dyn Progress,
) -> Result<Vec<usize>> {
    let groups = candidate_groups(model, nodes);
    let float = choose_fallback(model, calib, &groups, build, target_sqnr_db, 8, progress)?;
    for (n, why) in &float {
        report.skipped.push(super::Skipped::new(&model.graph.nodes[*n].label(), why.clone()));
    }
    Ok(float.into_iter().map(|(n, _)| n).collect())
}

/// Every output value, flattened, over all batches (f64 for the sums).
fn outputs(model: &Model, batches: &[Vec<Array>]) -> Result<Vec<f64>> {
    let session = Session::new(model, &Default::default())?;
    let mut all = vec![];
    for b in batches {
        for o in session.run(b)? {
            all.extend(o.to_f32().iter().map(|&v| v as f64));
        }
    }
    Ok(all)
}
