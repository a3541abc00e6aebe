//! How much each channel of a group matters, aggregated over every tensor
//! the group ties together (Torch-Pruning's `Importance`).

use crate::analysis::dependency::{Carrier, DependencyGraph, Group, Role, Tie};
use crate::data::Dataset;
use crate::ir::Model;
use crate::measure::Progress;
use crate::{Error, Result};
use ndarray::{ArrayD, Axis};
use serde::Serialize;
use std::collections::BTreeMap;

/// How channels are scored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Importance {
    /// Σ|w| of the channel's filter and of the weights that read it.
    L1,
    /// ‖w‖₂ of the same slices.
    L2,
    /// |γ| of the BatchNorm (or InstanceNorm) scales of the channel.
    Bn,
    /// Mean squared activation of the channel over calibration data (needs --calib).
    Activation,
}

/// Scores per channel of each prunable group (by id), and notes on groups
/// scored another way than asked.
pub fn group_scores(
    model: &Model,
    deps: &DependencyGraph,
    importance: Importance,
    calib: Option<&Dataset>,
    batch_size: usize,
    progress: &dyn Progress,
) -> Result<(super::select::Scores, Vec<String>)> {
    let groups: Vec<&Group> = deps.groups.iter().filter(|g| g.prunable()).collect();
    let mut notes = vec![];
    let mut scores = BTreeMap::new();
    if importance == Importance::Activation {
        let data = calib.ok_or_else(|| Error::Usage("importance activation needs calibration data".into()))?;
        let energies = activation_energy(model, &groups, data, batch_size, progress)?;
        for (g, e) in groups.iter().zip(energies) {
            scores.insert(g.id, e);
        }
        return Ok((scores, notes));
    }
    for g in groups {
        let s = match importance {
            Importance::Bn => match slice_norms(model, g, |r| *r == Role::NormScale, Norm::MaxAbs)? {
                Some(s) => s,
                None => {
                    notes.push(format!("group {} has no BatchNorm: scored by L2", g.id));
                    weight_norms(model, g, Norm::L2)?
                }
            },
            Importance::L1 => weight_norms(model, g, Norm::L1)?,
            _ => weight_norms(model, g, Norm::L2)?,
        };
        scores.insert(g.id, s);
    }
    Ok((scores, notes))
}

#[derive(Clone, Copy)]
enum Norm {
    L1,
    L2,
    MaxAbs,
}

fn weight_norms(model: &Model, g: &Group, norm: Norm) -> Result<Vec<f64>> {
    let weights = |r: &Role| matches!(r, Role::Output { .. } | Role::Input { .. });
    Ok(slice_norms(model, g, weights, norm)?.unwrap_or_else(|| vec![1.0; g.channels]))
}

/// Per channel, the mean over the matching ties of the slice norm divided by
/// that tie's mean norm (so a wide layer does not outvote a narrow one).
fn slice_norms(model: &Model, g: &Group, pick: impl Fn(&Role) -> bool, norm: Norm) -> Result<Option<Vec<f64>>> {
    let mut total = vec![0.0; g.channels];
    let mut used = 0;
    for tie in &g.ties {
        let Tie::Slice { constant, axis, offset, inner, role } = tie else { continue };
        if !pick(role) {
            continue;
        }
        let t = model.graph.constant(constant).ok_or_else(|| Error::Model(format!("'{constant}' is gone")))??;
        let a = t.to_f32()?;
        let mut per = vec![0.0f64; g.channels];
        for (i, lane) in a.axis_iter(Axis(*axis)).enumerate() {
            let Some(c) = i.checked_sub(*offset).map(|k| k / inner).filter(|&c| c < g.channels) else { continue };
            per[c] = match norm {
                Norm::L1 => per[c] + lane.iter().map(|v| v.abs() as f64).sum::<f64>(),
                Norm::L2 => per[c] + lane.iter().map(|v| (*v as f64).powi(2)).sum::<f64>(),
                Norm::MaxAbs => lane.iter().fold(per[c], |m, v| m.max(v.abs() as f64)),
            };
        }
        if matches!(norm, Norm::L2) {
            per.iter_mut().for_each(|v| *v = v.sqrt());
        }
        let mean = per.iter().sum::<f64>() / per.len().max(1) as f64;
        if mean > 0.0 {
            total.iter_mut().zip(&per).for_each(|(t, p)| *t += p / mean);
        }
        used += 1;
    }
    Ok((used > 0).then(|| total.into_iter().map(|v| v / used as f64).collect()))
}

/// Mean of x² over batch and space of each channel, per carrier normalised by
/// its largest channel, averaged over the group's carriers.
fn activation_energy(
    model: &Model,
    groups: &[&Group],
    data: &Dataset,
    batch_size: usize,
    progress: &dyn Progress,
) -> Result<Vec<Vec<f64>>> {
    let mut tensors: Vec<String> = groups.iter().flat_map(|g| g.carriers.iter().map(|c| c.tensor.clone())).collect();
    tensors.sort();
    tensors.dedup();
    // Per (group, carrier): Σx² per channel and the count of values summed per channel.
    let mut sums: Vec<Vec<(Vec<f64>, f64)>> =
        groups.iter().map(|g| g.carriers.iter().map(|_| (vec![0.0; g.channels], 0.0)).collect()).collect();
    crate::measure::visit_tensors(
        model,
        &tensors,
        data,
        crate::measure::Rows::all(batch_size),
        progress,
        "activations",
        |t, x| {
            let x = x.ok_or_else(|| Error::Model(format!("activation '{}' is not float32", tensors[t])))?;
            for (gi, g) in groups.iter().enumerate() {
                for (ci, c) in g.carriers.iter().enumerate().filter(|(_, c)| c.tensor == tensors[t]) {
                    accumulate(x, c, &mut sums[gi][ci]);
                }
            }
            Ok(())
        },
    )?;
    Ok(groups
        .iter()
        .zip(sums)
        .map(|(g, per_carrier)| {
            let mut total = vec![0.0; g.channels];
            for (sum, count) in &per_carrier {
                let means: Vec<f64> = sum.iter().map(|s| s / count.max(1.0)).collect();
                let max = means.iter().copied().fold(0.0, f64::max);
                if max > 0.0 {
                    total.iter_mut().zip(&means).for_each(|(t, m)| *t += m / max);
                }
            }
            total.into_iter().map(|v| v / per_carrier.len().max(1) as f64).collect()
        })
        .collect())
}

fn accumulate(x: &ArrayD<f32>, c: &Carrier, (sum, count): &mut (Vec<f64>, f64)) {
    let channels = sum.len();
    let mut per_lane = 0.0;
    for (i, lane) in x.axis_iter(Axis(c.axis)).enumerate() {
        let Some(ch) = i.checked_sub(c.offset).map(|k| k / c.inner).filter(|&ch| ch < channels) else { continue };
        sum[ch] += lane.iter().map(|v| (*v as f64).powi(2)).sum::<f64>();
        per_lane = lane.len() as f64;
    }
    *count += per_lane * c.inner as f64;
}
