//! SmoothQuant (Xiao et al., 2023) before static quantization: a MatMul's
//! activation outliers sit in a few input channels, which a per-tensor
//! activation scale must cover; dividing channel k of the activation by s_k and
//! multiplying row k of the weight by s_k keeps the product and moves the
//! outliers into the weights, which are quantized per output channel.
//! s_k = max|X_k|^α / max|W_k|^(1−α), from the calibration data. The division
//! is one `Mul` by 1/s on the activation, shared by the MatMuls that read it
//! (so Q, K and V get one s).

use crate::data::Dataset;
use crate::ir::{Model, Node, Tensor};
use crate::Result;
use ndarray::{Array1, ArrayD, Axis, IxDyn};
use std::collections::BTreeMap;

/// Calibration rows the activation ranges are taken over.
const ROWS: usize = 64;

/// Smooths every group of MatMuls with constant 2-D weights that read one
/// activation. Returns the activations smoothed.
pub fn smooth(model: &mut Model, calib: &Dataset, alpha: f64) -> Result<Vec<String>> {
    let g = &model.graph;
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, n) in g.nodes.iter().enumerate() {
        if n.op_type != "MatMul" || !n.is_onnx_op() {
            continue;
        }
        let (Some(x), Some(w)) = (n.input(0), n.input(1)) else { continue };
        let Some(Ok(t)) = g.constant(w) else { continue };
        if t.dims.len() != 2 || g.constant_site(x).is_some() {
            continue;
        }
        groups.entry(x.to_string()).or_default().push(i);
    }
    if groups.is_empty() {
        return Ok(vec![]);
    }
    let names: Vec<String> = groups.keys().cloned().collect();
    let ranges = channel_absmax(model, &names, calib)?;
    let mut smoothed = vec![];
    for ((x, nodes), xmax) in groups.iter().zip(ranges) {
        let Some(xmax) = xmax else { continue };
        let weights: Vec<(String, ndarray::Array2<f32>)> = nodes
            .iter()
            .filter_map(|&i| {
                let w = model.graph.nodes[i].inputs[1].clone();
                let t = model.graph.constant(&w)?.ok()?.to_f32().ok()?.into_dimensionality().ok()?;
                Some((w, t))
            })
            .collect();
        if weights.len() != nodes.len() || weights.iter().any(|(_, w)| w.nrows() != xmax.len()) {
            continue;
        }
        let wmax: Vec<f32> = (0..xmax.len())
            .map(|k| {
                weights.iter().map(|(_, w)| w.row(k).iter().fold(0f32, |m, v| m.max(v.abs()))).fold(0f32, f32::max)
            })
            .collect();
        let s: Array1<f32> = xmax
            .iter()
            .zip(&wmax)
            .map(|(&a, &b)| {
                let v = (a as f64).powf(alpha) / (b as f64).max(1e-8).powf(1.0 - alpha);
                if v.is_finite() && v > 1e-5 {
                    v as f32
                } else {
                    1.0
                }
            })
            .collect();
        for (name, w) in &weights {
            let scaled = w * &s.view().insert_axis(Axis(1));
            model.graph.set_constant(name, Tensor::from_array(name, &scaled.into_dyn()))?;
        }
        let inv = ArrayD::from_shape_vec(IxDyn(&[s.len()]), s.iter().map(|v| 1.0 / v).collect()).expect("1-d");
        let (inv_name, out) = (format!("{x}_smooth_scale"), format!("{x}_smoothed"));
        model.graph.initializers.push(Tensor::from_array(&inv_name, &inv));
        model.graph.nodes.push(Node::single(&out, "Mul", &[x, &inv_name], vec![]));
        for &i in nodes {
            model.graph.nodes[i].inputs[0] = out.clone();
        }
        smoothed.push(x.clone());
    }
    model.graph.sort_nodes()?;
    Ok(smoothed)
}

/// Each named activation's largest magnitude per channel (last axis) over the
/// first calibration rows; `None` where it is not float or not finite.
fn channel_absmax(model: &Model, names: &[String], calib: &Dataset) -> Result<Vec<Option<Vec<f32>>>> {
    let mut out: Vec<Option<Vec<f32>>> = names.iter().map(|_| None).collect();
    let mut bad = vec![false; names.len()];
    let rows = crate::layerwise::Rows::first(ROWS, 8);
    crate::layerwise::visit_tensors(model, names, calib, rows, &crate::eval::Silent, "", |i, x| {
        let Some(x) = x else {
            bad[i] = true;
            return Ok(());
        };
        let Some(&k) = x.shape().last() else { return Ok(()) };
        let m = out[i].get_or_insert_with(|| vec![0.0; k]);
        if m.len() != k {
            bad[i] = true;
            return Ok(());
        }
        for lane in x.lanes(Axis(x.ndim() - 1)) {
            for (slot, v) in m.iter_mut().zip(lane.iter()) {
                *slot = slot.max(v.abs());
            }
        }
        Ok(())
    })?;
    Ok(out.into_iter().zip(bad).map(|(m, bad)| m.filter(|m| !bad && m.iter().all(|v| v.is_finite()))).collect())
}
