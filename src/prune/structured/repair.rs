//! Repair without retraining: each layer that lost input channels is re-fitted
//! by ridge least squares so that, on calibration data, its output from the
//! pruned model's inputs matches the original model's output:
//! W' = argmin ‖[X' 1]·W'ᵀ − [X 1]·[W b]ᵀ‖² + λ‖W'‖², solved by a faer Cholesky
//! of X'ᵀX' + λI. Layers are repaired in topological order, each from the
//! already repaired model, so later fits see earlier repairs.

use super::remove::Plan;
use crate::analysis::dependency::{DependencyGraph, Role, Tie};
use crate::data::Dataset;
use crate::ir::{Model, Node, Tensor};
use crate::layerwise::{input_rows_in, row_chunks};
use crate::measure::Progress;
use crate::prune::{prunable_layers, Layer, LayerChoice};
use crate::runtime::{feed_inputs, Session, SessionOptions};
use crate::{Error, Result};
use faer::linalg::solvers::Solve;
use faer::{Mat, Side};
use ndarray::{Array1, Array2, Axis};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// A layer left as it was, and why.
pub type Skipped = (String, String);

/// Ridge λ as a fraction of the mean diagonal of X'ᵀX'.
pub const DEFAULT_DAMP: f64 = 1e-3;

/// One re-fitted layer: its relative output error on the calibration data
/// (‖Y − Y'‖² / ‖Y‖²) before and after the fit.
#[derive(Clone, Debug, Serialize)]
pub struct Repaired {
    /// The layer's node name.
    pub node: String,
    /// Relative output error before the fit.
    pub error_before: f64,
    /// After it.
    pub error_after: f64,
}

/// Re-fits every layer that reads a pruned group. Returns the repaired layers
/// and the ones left as they were, with why.
pub fn repair(
    original: &Model,
    model: &mut Model,
    deps: &DependencyGraph,
    plan: &Plan,
    data: &Dataset,
    batch_size: usize,
    progress: &dyn Progress,
) -> Result<(Vec<Repaired>, Vec<Skipped>)> {
    let readers = readers(model, deps, plan)?;
    let (reference, _) = prunable_layers(original, &LayerChoice::all())?;
    let reference: BTreeMap<String, Layer> = reference.into_iter().map(|l| (l.node.clone(), l)).collect();
    let (mut done, mut skipped) = (vec![], vec![]);
    let inputs: Vec<String> = readers.iter().map(|(_, i)| i.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    let cache = ReferenceCache::fill(original, &inputs, data, batch_size, CACHE_BUDGET)?;
    progress.start(readers.len() as u64, "repair");
    for (node, _) in &readers {
        let (current, _) = prunable_layers(model, &LayerChoice::all())?;
        let current = current.into_iter().find(|l| &l.node == node);
        let fit = match (reference.get(node), current) {
            (Some(r), Some(c)) => fit_layer(original, model, &cache, r, &c, deps, plan, data, batch_size)?,
            _ => Err("not a prunable layer (shared or non-float weight)".to_string()),
        };
        match fit {
            Ok(r) => done.push(r),
            Err(why) => skipped.push((node.clone(), why)),
        }
        progress.advance(1);
        progress.check_stop()?;
    }
    progress.finish();
    Ok((done, skipped))
}

/// The layers reading a planned group (node label, input tensor), in topological order.
fn readers(model: &Model, deps: &DependencyGraph, plan: &Plan) -> Result<Vec<(String, String)>> {
    let mut found = BTreeSet::new();
    for &g in plan.keys() {
        for tie in &deps.groups[g].ties {
            if let Tie::Slice { role: Role::Input { node, input }, .. } = tie {
                found.insert((node.clone(), input.clone()));
            }
        }
    }
    let order = model.graph.topo_order()?;
    let mut out = vec![];
    for n in order {
        let label = model.graph.nodes[n].label();
        out.extend(found.iter().filter(|(node, _)| *node == label).cloned());
    }
    Ok(out)
}

/// Output rows of `layer`'s weight the plan removes.
fn removed_outputs(layer: &Layer, deps: &DependencyGraph, plan: &Plan) -> BTreeSet<usize> {
    let mut out = BTreeSet::new();
    for (&g, removed) in plan {
        for tie in &deps.groups[g].ties {
            if let Tie::Slice { constant, offset, inner, role: Role::Output { node }, .. } = tie {
                if *constant == layer.weight && *node == layer.node {
                    out.extend(removed.iter().flat_map(|c| (0..*inner).map(move |j| offset + c * inner + j)));
                }
            }
        }
    }
    out
}

fn find_node<'a>(model: &'a Model, label: &str) -> Result<&'a Node> {
    model.graph.nodes.iter().find(|n| n.label() == label).ok_or_else(|| Error::Model(format!("no node '{label}'")))
}

/// The bias constant a fit may replace (Conv B, Gemm C along N), or `None`.
fn bias_of(model: &Model, node: &Node, outputs: usize) -> Result<Option<(String, Array1<f32>)>, String> {
    if node.op_type == "Gemm"
        && (node.attr_float("alpha").unwrap_or(1.0) != 1.0 || node.attr_float("beta").unwrap_or(1.0) != 1.0)
    {
        return Err("Gemm with alpha or beta other than 1".into());
    }
    let Some(name) = node.input(2).filter(|_| node.op_type != "MatMul") else { return Ok(None) };
    let t = model.graph.constant(name).ok_or("its bias is not a constant")?.map_err(|e| e.to_string())?;
    let v = t.to_f32().map_err(|e| e.to_string())?;
    if v.len() != outputs {
        return Err(format!("its bias '{name}' does not run along the outputs"));
    }
    Ok(Some((name.to_string(), v.iter().copied().collect())))
}

#[allow(clippy::too_many_arguments)]
fn fit_layer(
    original: &Model,
    model: &mut Model,
    cache: &ReferenceCache,
    reference: &Layer,
    current: &Layer,
    deps: &DependencyGraph,
    plan: &Plan,
    data: &Dataset,
    batch_size: usize,
) -> Result<Result<Repaired, String>> {
    if !current.has_statistics() {
        return Ok(Err("its input patches cannot be formed (grouped conv, or not 1-D or 2-D)".into()));
    }
    let gone = removed_outputs(reference, deps, plan);
    let kept: Vec<usize> = (0..reference.rows.nrows()).filter(|r| !gone.contains(r)).collect();
    let node = find_node(model, &current.node)?.clone();
    let ref_bias = match bias_of(original, find_node(original, &reference.node)?, reference.rows.nrows()) {
        Ok(b) => b,
        Err(why) => return Ok(Err(why)),
    };
    let cur_bias = match bias_of(model, &node, current.rows.nrows()) {
        Ok(b) => b,
        Err(why) => return Ok(Err(why)),
    };
    // Target: the original rows (and bias) of the outputs that stay, over the full input.
    let mut target = reference.rows.select(Axis(0), &kept).mapv(f64::from);
    let mut now = current.rows.mapv(f64::from);
    let intercept = cur_bias.is_some();
    if intercept {
        let rb = ref_bias.as_ref().map(|(_, b)| b.select(Axis(0), &kept)).unwrap_or_else(|| Array1::zeros(kept.len()));
        target.push_column(rb.mapv(f64::from).view()).map_err(|e| Error::Model(e.to_string()))?;
        let cb = &cur_bias.as_ref().expect("intercept").1;
        now.push_column(cb.mapv(f64::from).view()).map_err(|e| Error::Model(e.to_string()))?;
    }
    let (k_now, k_ref) = (now.ncols(), target.ncols());
    let mut g = Array2::<f64>::zeros((k_now, k_now));
    let mut c = Array2::<f64>::zeros((k_now, k_ref));
    let (mut y_sq, mut err_before) = (0.0, 0.0);
    let cur_session = Session::new(
        model,
        &SessionOptions { capture: vec![current.input.clone()], capture_only: true, ..Default::default() },
    )?;
    let live = match cache.get(&reference.input) {
        Some(_) => None,
        None => Some(Session::new(
            original,
            &SessionOptions { capture: vec![reference.input.clone()], capture_only: true, ..Default::default() },
        )?),
    };
    let bound = data.bind(&feed_inputs(model), None)?;
    for (k, batch) in bound.batches(batch_size).enumerate() {
        let (_, batch) = batch?;
        let x_now = cur_session.run(&batch)?.swap_remove(0).to_f32();
        let x_ref = match (&live, cache.get(&reference.input)) {
            (Some(session), _) => session.run(&batch)?.swap_remove(0).to_f32(),
            (None, Some(cached)) => cached[k].clone(),
            (None, None) => unreachable!("a session is made when nothing is cached"),
        };
        let with_ones = |rows: Array2<f32>| -> Result<Array2<f64>> {
            let mut r = rows.mapv(f64::from);
            if intercept {
                r.push_column(Array1::ones(r.nrows()).view()).map_err(|e| Error::Model(e.to_string()))?;
            }
            Ok(r)
        };
        // Formed a chunk of rows at a time (see `layerwise::row_chunks`): the two
        // inputs have the same positions, chunked by the wider.
        let (chunks_now, chunks_ref) = (row_chunks(&x_now, current)?, row_chunks(&x_ref, reference)?);
        let end = |c: &[std::ops::Range<usize>]| c.last().map_or(0, |r| r.end);
        if end(&chunks_now) != end(&chunks_ref) {
            return Ok(Err("pruned and original inputs have different patch counts".into()));
        }
        let chunks = if chunks_now.len() >= chunks_ref.len() { chunks_now } else { chunks_ref };
        for rows in chunks {
            let xn = with_ones(input_rows_in(&x_now, current, rows.clone())?)?;
            let xr = with_ones(input_rows_in(&x_ref, reference, rows)?)?;
            if xn.nrows() != xr.nrows() {
                return Ok(Err("pruned and original inputs have different patch counts".into()));
            }
            g += &xn.t().dot(&xn);
            c += &xn.t().dot(&xr);
            let y = xr.dot(&target.t());
            let y_now = xn.dot(&now.t());
            y_sq += y.iter().map(|v| v * v).sum::<f64>();
            err_before += (&y - &y_now).iter().map(|v| v * v).sum::<f64>();
        }
    }
    let rhs = c.dot(&target.t());
    let solved = match ridge(&g, &rhs, DEFAULT_DAMP) {
        Ok(w) => w,
        Err(why) => return Ok(Err(why)),
    };
    // ‖Y − X'W'ᵀ‖² = ‖Y‖² − 2·tr(W' Cᵀ... ) + tr(W' G W'ᵀ), from the sums above.
    let cross: f64 = (&solved * &rhs).sum();
    let quad: f64 = (&solved * &g.dot(&solved)).sum();
    let err_after = (y_sq - 2.0 * cross + quad).max(0.0);
    let rel = |e: f64| if y_sq > 0.0 { e / y_sq } else { 0.0 };
    if err_after >= err_before {
        return Ok(Err(format!("a fit would not reduce its error ({:.4})", rel(err_before))));
    }
    let k = current.rows.ncols();
    let rows = solved.slice(ndarray::s![..k, ..]).t().mapv(|v| v as f32);
    model.graph.set_constant(&current.weight, Tensor::from_array(&current.weight, &current.restore(&rows)?))?;
    if let Some((name, old)) = cur_bias {
        let b = solved.row(k).mapv(|v| v as f32);
        let t = model.graph.constant(&name).ok_or_else(|| Error::Model(format!("'{name}' is gone")))??;
        let shaped = b.into_shape_with_order(t.shape()).map_err(|e| Error::Model(e.to_string()))?;
        debug_assert_eq!(shaped.len(), old.len());
        model.graph.set_constant(&name, Tensor::from_array(&name, &shaped.into_dyn()))?;
    }
    Ok(Ok(Repaired { node: current.node.clone(), error_before: rel(err_before), error_after: rel(err_after) }))
}

/// Memory the original model's layer inputs may take when kept for all layers' fits.
const CACHE_BUDGET: usize = 1 << 30;

/// The original model's input to each repaired layer, batch by batch, computed
/// in one pass when they fit the budget (else each fit recomputes its own).
struct ReferenceCache {
    inputs: Option<BTreeMap<String, Vec<ndarray::ArrayD<f32>>>>,
}

impl ReferenceCache {
    fn fill(model: &Model, names: &[String], data: &Dataset, batch_size: usize, budget: usize) -> Result<Self> {
        let mut inputs: BTreeMap<String, Vec<ndarray::ArrayD<f32>>> = BTreeMap::new();
        let (mut bytes, mut over) = (0, false);
        let silent = &crate::measure::Silent;
        crate::measure::visit_tensors(
            model,
            names,
            data,
            crate::measure::Rows::all(batch_size),
            silent,
            "reference",
            |i, x| {
                let x = x.ok_or_else(|| Error::Model(format!("'{}' is not float32", names[i])))?;
                bytes += x.len() * 4;
                over |= bytes > budget;
                if !over {
                    inputs.entry(names[i].clone()).or_default().push(x.clone());
                }
                Ok(())
            },
        )?;
        Ok(ReferenceCache { inputs: (!over).then_some(inputs) })
    }

    fn get(&self, name: &str) -> Option<&Vec<ndarray::ArrayD<f32>>> {
        self.inputs.as_ref()?.get(name)
    }
}

/// Solves (G + λI)·W = R for W, λ = damp × mean diag(G).
fn ridge(g: &Array2<f64>, rhs: &Array2<f64>, damp: f64) -> std::result::Result<Array2<f64>, String> {
    let n = g.nrows();
    let mean = (0..n).map(|i| g[[i, i]]).sum::<f64>() / n.max(1) as f64;
    let lambda = damp * mean.max(f64::MIN_POSITIVE);
    let a = Mat::<f64>::from_fn(n, n, |i, j| g[[i, j]] + if i == j { lambda } else { 0.0 });
    let b = Mat::<f64>::from_fn(n, rhs.ncols(), |i, j| rhs[[i, j]]);
    let llt = a.llt(Side::Lower).map_err(|e| format!("the least-squares system is singular ({e:?})"))?;
    let w = llt.solve(&b);
    Ok(Array2::from_shape_fn((n, rhs.ncols()), |(i, j)| w[(i, j)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ridge_recovers_a_linear_map() {
        let x = Array2::from_shape_fn((50, 3), |(i, j)| ((i * (j + 2)) as f64 * 0.37 + j as f64).sin());
        let w = ndarray::array![[1.0, -2.0], [0.5, 0.0], [3.0, 1.0]];
        let y = x.dot(&w);
        let got = ridge(&x.t().dot(&x), &x.t().dot(&y), 1e-9).unwrap();
        assert!((&got - &w).iter().all(|d| d.abs() < 1e-5), "{got:?}");
    }
}
