//! Unstructured and N:M pruning: zero the least important weights of Conv,
//! Gemm and MatMul layers. Scores are |w| (magnitude) or |w|·‖x_j‖₂ (Wanda,
//! with input-feature norms from calibration data), compared within each
//! output row, or across all layers with one threshold (global).

use crate::data::Dataset;
use crate::ir::{Model, Tensor};
use crate::layerwise::{prunable_layers, Layer, LayerChoice};
use crate::measure::Progress;
use crate::{Error, Result};
use ndarray::{Array2, Axis};
use serde::Serialize;

/// How weights are scored for pruning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// |w|.
    Magnitude,
    /// |w| · ‖x_j‖₂ over calibration data (needs --calib).
    Wanda,
    /// Optimal-brain-surgeon updates with H = XᵀX from calibration data (needs --calib):
    /// the remaining weights of each row compensate for the pruned ones.
    Sparsegpt,
}

/// Where the sparsity applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The same sparsity in every output row of every layer.
    Layer,
    /// One threshold across all layers (each capped so none is emptied).
    Global,
}

/// Unstructured or N:M pruning's options.
#[derive(Clone, Debug)]
pub struct SparseOptions {
    /// The fraction of each pruned layer's weights set to zero.
    pub sparsity: f64,
    /// How weights are scored.
    pub method: Method,
    /// Per layer or one global threshold.
    pub scope: Scope,
    /// N:M: keep N of every M consecutive input weights of a row.
    pub pattern: Option<(usize, usize)>,
    /// Which layers are pruned.
    pub layers: LayerChoice,
    /// Global scope never prunes a layer beyond this fraction.
    pub max_layer_sparsity: f64,
    /// Rows per calibration batch.
    pub batch_size: usize,
}

impl Default for SparseOptions {
    fn default() -> Self {
        SparseOptions {
            sparsity: 0.5,
            method: Method::Magnitude,
            scope: Scope::Layer,
            pattern: None,
            layers: LayerChoice::default(),
            max_layer_sparsity: 0.95,
            batch_size: 8,
        }
    }
}

/// One pruned layer.
#[derive(Clone, Debug, Serialize)]
pub struct LayerRecord {
    /// The node's name.
    pub node: String,
    /// The weight's name.
    pub weight: String,
    /// The weight's shape.
    pub shape: Vec<usize>,
    /// Zero fraction before.
    pub sparsity_before: f64,
    /// Zero fraction after.
    pub sparsity_after: f64,
}

/// What unstructured or N:M pruning did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PruneReport {
    /// The graph clean-up done before pruning (absent with `--no-simplify`).
    pub simplified: Option<crate::transform::Simplification>,
    /// The layers pruned.
    pub layers: Vec<LayerRecord>,
    /// Layers left dense, and why.
    pub skipped: Vec<(String, String)>,
    /// Zero fraction over all pruned layers' weights.
    pub sparsity: f64,
    /// How each pruned weight is stored (with `--sparse-storage`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub storage: Vec<super::StorageRecord>,
    /// The result compared with the original on the validation data.
    pub comparison: Option<crate::eval::CompareReport>,
    /// What ran the model for statistics and validation.
    pub runtime: Option<crate::runtime::RuntimeInfo>,
    /// What the user should know that the numbers do not say.
    pub notes: Vec<String>,
    /// The check the output passed before it was written (the CLI runs it).
    pub output_check: Option<crate::eval::OutputCheck>,
    /// The output timed against the input where it runs (absent with `--no-latency-check`).
    pub latency: Option<crate::eval::LatencyCheck>,
}

/// Prunes the weights of Conv/Gemm/MatMul layers to `options.sparsity` (SparseGPT and Wanda on `calib`).
pub fn prune_sparse(
    model: &mut Model,
    options: &SparseOptions,
    calib: Option<&Dataset>,
    report: &mut PruneReport,
    progress: &dyn Progress,
) -> Result<()> {
    if !(0.0..1.0).contains(&options.sparsity) && options.pattern.is_none() {
        return Err(Error::Usage(format!("sparsity {} must be in [0, 1)", options.sparsity)));
    }
    if let Some((n, m)) = options.pattern {
        if n == 0 || n >= m {
            return Err(Error::Usage(format!("pattern {n}:{m}: N must be in 1..M")));
        }
    }
    if options.method == Method::Magnitude && (options.scope == Scope::Layer || options.pattern.is_some()) {
        return prune_by_magnitude_layer_by_layer(model, options, report);
    }
    let (layers, skipped) = prunable_layers(model, &options.layers)?;
    report.skipped.extend(skipped);
    let data = || {
        calib.ok_or_else(|| Error::Usage(format!("method {:?} needs calibration data", options.method).to_lowercase()))
    };
    if options.method == Method::Sparsegpt {
        return prune_with_sparsegpt(model, &layers, data()?, options, report, progress);
    }
    let norms = match options.method {
        Method::Wanda => Some(input_norms(model, &layers, data()?, options.batch_size, progress)?),
        _ => None,
    };
    // Scores per layer, as rows × inputs.
    let scores: Vec<Array2<f32>> = layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let mut s = l.rows.mapv(f32::abs);
            if let Some(norms) = &norms {
                for mut row in s.axis_iter_mut(Axis(0)) {
                    row.iter_mut().zip(&norms[i]).for_each(|(v, n)| *v *= n);
                }
            }
            s
        })
        .collect();
    let masks: Vec<Array2<bool>> = match (options.pattern, options.scope) {
        (Some((n, m)), _) => scores.iter().map(|s| n_of_m_mask(s, n, m)).collect(),
        (None, Scope::Layer) => scores.iter().map(|s| row_mask(s, options.sparsity)).collect(),
        (None, Scope::Global) => global_masks(&scores, options.sparsity, options.max_layer_sparsity),
    };
    let pruned: Vec<Array2<f32>> = layers
        .iter()
        .zip(&masks)
        .map(|(layer, mask)| {
            let mut rows = layer.rows.clone();
            rows.zip_mut_with(mask, |w, keep| {
                if !keep {
                    *w = 0.0
                }
            });
            rows
        })
        .collect();
    write_back(model, &layers, pruned, report)
}

/// Prunes the weights inside every If/Loop/Scan body by magnitude, layer by layer, at the same
/// sparsity or pattern (statistics are not gathered inside control flow); the report's overall
/// sparsity then counts them too, and a note per body says what was done there.
pub fn prune_bodies(model: &mut Model, options: &SparseOptions, report: &mut PruneReport) -> Result<()> {
    if model.weights_in_subgraphs().is_empty() {
        return Ok(());
    }
    let why = match options.method {
        Method::Magnitude => "",
        _ => " (statistics are not gathered inside control flow)",
    };
    let mut said = vec![];
    crate::transform::for_each_body(model, &mut |body, label| {
        let mut inside = PruneReport::default();
        prune_by_magnitude_layer_by_layer(body, options, &mut inside)?;
        if !inside.layers.is_empty() {
            said.push(format!("inside {label}: {} layers pruned by magnitude{why}", inside.layers.len()));
        }
        report.layers.append(&mut inside.layers);
        report.skipped.append(&mut inside.skipped);
        Ok(())
    })?;
    let (weights, zeros) = report.layers.iter().fold((0.0, 0.0), |(w, z), l| {
        let n = l.shape.iter().product::<usize>() as f64;
        (w + n, z + n * l.sparsity_after)
    });
    report.sparsity = if weights > 0.0 { zeros / weights } else { 0.0 };
    report.notes.extend(said);
    Ok(())
}

/// SparseGPT on every layer whose input statistics can be gathered; others by magnitude.
fn prune_with_sparsegpt(
    model: &mut Model,
    layers: &[Layer],
    data: &Dataset,
    options: &SparseOptions,
    report: &mut PruneReport,
    progress: &dyn Progress,
) -> Result<()> {
    let (with_stats, without): (Vec<usize>, Vec<usize>) = (0..layers.len()).partition(|&i| layers[i].has_statistics());
    let subset: Vec<Layer> = with_stats.iter().map(|&i| layers[i].clone()).collect();
    let grams = crate::layerwise::input_grams(model, &subset, data, options.batch_size, progress)?;
    let mut pruned: Vec<Array2<f32>> = layers.iter().map(|l| l.rows.clone()).collect();
    // Layers are independent once their statistics are known: solved in parallel.
    let jobs: Vec<(usize, &Array2<f64>)> = with_stats.iter().copied().zip(grams.iter().map(|(h, _)| h)).collect();
    let solved = crate::parallel::map(&jobs, |&(i, h)| {
        let mut w = layers[i].rows.clone();
        super::sparsegpt::sparsegpt(&mut w, h, options.sparsity, options.pattern)
            .map(|_| w)
            .map_err(|e| Error::Model(format!("layer '{}': {e}", layers[i].node)))
    });
    for (&(i, _), w) in jobs.iter().zip(solved) {
        pruned[i] = w?;
    }
    for &i in &without {
        report.skipped.push((layers[i].node.clone(), "no input statistics (grouped conv): pruned by magnitude".into()));
        let s = pruned[i].mapv(f32::abs);
        let mask = match options.pattern {
            Some((n, m)) => n_of_m_mask(&s, n, m),
            None => row_mask(&s, options.sparsity),
        };
        pruned[i].zip_mut_with(&mask, |w, keep| {
            if !keep {
                *w = 0.0
            }
        });
    }
    write_back(model, layers, pruned, report)
}

/// Magnitude needs no statistics: each layer is loaded, pruned and stored
/// before the next, so a model larger than memory is pruned in the memory of
/// one layer (its old weight's pages are handed back as it is replaced).
fn prune_by_magnitude_layer_by_layer(
    model: &mut Model,
    options: &SparseOptions,
    report: &mut PruneReport,
) -> Result<()> {
    let (sites, skipped) = crate::layerwise::layer_sites(model, &options.layers)?;
    report.skipped.extend(skipped);
    let mut counts = (0, 0);
    for site in &sites {
        let mut layer = site.load(model)?;
        let before = zero_fraction(&layer.rows);
        // The rows move out of the layer: one copy of the weight at a time.
        let mut rows = std::mem::take(&mut layer.rows);
        let scores = rows.mapv(f32::abs);
        let mask = match options.pattern {
            Some((n, m)) => n_of_m_mask(&scores, n, m),
            None => row_mask(&scores, options.sparsity),
        };
        drop(scores);
        rows.zip_mut_with(&mask, |w, keep| {
            if !keep {
                *w = 0.0
            }
        });
        store_layer(model, &layer, rows, before, report, &mut counts)?;
    }
    report.sparsity = if counts.0 == 0 { 0.0 } else { counts.1 as f64 / counts.0 as f64 };
    Ok(())
}

/// Stores each layer's pruned rows back into its weight and records the sparsity.
fn write_back(model: &mut Model, layers: &[Layer], pruned: Vec<Array2<f32>>, report: &mut PruneReport) -> Result<()> {
    let mut counts = (0, 0);
    for (layer, rows) in layers.iter().zip(pruned) {
        store_layer(model, layer, rows, zero_fraction(&layer.rows), report, &mut counts)?;
    }
    report.sparsity = if counts.0 == 0 { 0.0 } else { counts.1 as f64 / counts.0 as f64 };
    Ok(())
}

fn zero_fraction(rows: &Array2<f32>) -> f64 {
    rows.iter().filter(|v| **v == 0.0).count() as f64 / rows.len().max(1) as f64
}

/// Writes one layer's pruned rows back and records its sparsity (`before`:
/// the zero fraction it had); `counts` sums (weights, zeros).
fn store_layer(
    model: &mut Model,
    layer: &Layer,
    rows: Array2<f32>,
    before: f64,
    report: &mut PruneReport,
    counts: &mut (usize, usize),
) -> Result<()> {
    let len = rows.len();
    let z = rows.iter().filter(|v| **v == 0.0).count();
    counts.0 += rows.len();
    counts.1 += z;
    let weight = layer.restore(&rows)?;
    drop(rows);
    model.graph.set_constant(&layer.weight, Tensor::from_array(&layer.weight, &weight))?;
    report.layers.push(LayerRecord {
        node: layer.node.clone(),
        weight: layer.weight.clone(),
        shape: weight.shape().to_vec(),
        sparsity_before: before,
        sparsity_after: z as f64 / len.max(1) as f64,
    });
    Ok(())
}

/// Keeps the largest (1 − s) of each row's scores (ties broken by position).
pub(crate) fn row_mask(scores: &Array2<f32>, sparsity: f64) -> Array2<bool> {
    let mut mask = Array2::from_elem(scores.raw_dim(), true);
    for (row, mut m) in scores.axis_iter(Axis(0)).zip(mask.axis_iter_mut(Axis(0))) {
        let k = (row.len() as f64 * sparsity).round() as usize;
        let mut idx: Vec<usize> = (0..row.len()).collect();
        idx.sort_by(|&a, &b| row[a].total_cmp(&row[b]).then(a.cmp(&b)));
        for &i in idx.iter().take(k) {
            m[i] = false;
        }
    }
    mask
}

/// In each row, every run of `m` consecutive inputs keeps its `n` largest scores.
fn n_of_m_mask(scores: &Array2<f32>, n: usize, m: usize) -> Array2<bool> {
    let mut mask = Array2::from_elem(scores.raw_dim(), true);
    for (row, mut out) in scores.axis_iter(Axis(0)).zip(mask.axis_iter_mut(Axis(0))) {
        let len = row.len();
        for start in (0..len).step_by(m) {
            let end = (start + m).min(len);
            let mut idx: Vec<usize> = (start..end).collect();
            idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
            for &i in idx.iter().skip(n) {
                out[i] = false;
            }
        }
    }
    mask
}

/// One threshold over every layer's scores, each layer capped at `cap` sparsity.
fn global_masks(scores: &[Array2<f32>], sparsity: f64, cap: f64) -> Vec<Array2<bool>> {
    let mut all: Vec<f32> = scores.iter().flat_map(|s| s.iter().copied()).collect();
    all.sort_by(f32::total_cmp);
    let k = (all.len() as f64 * sparsity).round() as usize;
    let threshold = if k == 0 { f32::NEG_INFINITY } else { all[k - 1] };
    scores
        .iter()
        .map(|s| {
            let pruned = s.iter().filter(|v| **v <= threshold).count() as f64 / s.len() as f64;
            if pruned > cap {
                // Too much of this layer falls below the line: prune it to the cap by rank.
                let mut flat = s.clone().into_shape_with_order((1, s.len())).expect("flat");
                flat = row_mask(&flat, cap).mapv(|b| if b { 1.0 } else { 0.0 });
                flat.into_shape_with_order(s.raw_dim()).expect("same size").mapv(|v| v > 0.5)
            } else {
                s.mapv(|v| v > threshold)
            }
        })
        .collect()
}

/// ‖x_j‖₂ of each layer's input features over the calibration data (for a
/// Conv, per input channel, repeated over the kernel positions).
fn input_norms(
    model: &Model,
    layers: &[Layer],
    data: &Dataset,
    batch_size: usize,
    progress: &dyn Progress,
) -> Result<Vec<Vec<f32>>> {
    let mut sums: Vec<Vec<f64>> = layers.iter().map(|l| vec![0.0; l.channels]).collect();
    crate::layerwise::visit_layer_inputs(model, layers, data, batch_size, progress, |i, x| {
        let l = &layers[i];
        if !l.grouped {
            let axis = if l.conv { 1 } else { x.ndim() - 1 };
            for (j, lane) in x.axis_iter(Axis(axis)).enumerate().take(sums[i].len()) {
                sums[i][j] += lane.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>();
            }
        }
        Ok(())
    })?;
    Ok(layers
        .iter()
        .zip(sums)
        .map(|(l, s)| {
            if l.grouped {
                // Every row of a grouped conv reads its own group: a uniform norm
                // (magnitude within the row) is what the statistics would give
                // for depthwise kernels.
                return vec![1.0; l.rows.ncols()];
            }
            let per_channel: Vec<f32> = s.iter().map(|v| v.sqrt() as f32).collect();
            // Each input channel covers `inputs / channels` columns (kernel positions).
            let repeat = l.rows.ncols() / l.channels.max(1);
            per_channel.iter().flat_map(|&v| std::iter::repeat_n(v, repeat)).collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn row_masks_keep_the_largest_per_row() {
        let s = array![[1.0f32, 4.0, 2.0, 3.0], [9.0, 1.0, 1.0, 1.0]];
        assert_eq!(row_mask(&s, 0.5), array![[false, true, false, true], [true, false, false, true]]);
    }

    #[test]
    fn two_of_four_keeps_two_per_group() {
        let s = array![[1.0f32, 4.0, 2.0, 3.0, 8.0, 7.0, 6.0, 5.0]];
        assert_eq!(n_of_m_mask(&s, 2, 4), array![[false, true, false, true, true, true, false, false]]);
    }

    #[test]
    fn global_threshold_caps_each_layer() {
        let a = array![[0.1f32, 0.2, 0.3, 0.4]];
        let b = array![[5.0f32, 6.0, 7.0, 8.0]];
        let m = global_masks(&[a, b], 0.5, 0.75);
        // Half of all scores is the whole first layer: capped at 3 of 4.
        assert_eq!(m[0], array![[false, false, false, true]]);
        assert_eq!(m[1], array![[true, true, true, true]]);
    }
}
