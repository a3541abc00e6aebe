//! Bias correction after static quantization: each Conv/Gemm's output, run
//! quantized on the calibration data, drifts from the float model's by a mean
//! per channel (rounding and clipping of its inputs that do not cancel); that
//! mean is taken out of the layer's int32 bias. Layer by layer in graph order,
//! each drift measured with the layers before it already corrected: measuring
//! every drift once and correcting all at once counts upstream drifts twice
//! and overshoots (on ppocr_rec_v4 the drifts grew round after round), and the
//! drift of the rounded weights alone, (W_q − W)·E[x], is nil here — the
//! rounding keeps each channel's sum. Kept only when the output's SQNR on other
//! calibration rows than those it was measured on improves.

use crate::data::Dataset;
use crate::ir::{DataType, GraphIndex, Model, Tensor};
use crate::quant::report::{BiasShift, QuantReport};
use crate::runtime::{feed_inputs, Session};
use crate::Result;
use ndarray::Axis;

/// Calibration rows the means are taken over; the next as many (when there
/// are) judge whether the correction is kept, so it is not judged on the rows
/// it was fitted to.
const ROWS: usize = 32;

/// A Conv or Gemm whose bias is an int32 constant behind a `DequantizeLinear`.
struct Target {
    node: String,
    /// Its output (the same name in the float model).
    output: String,
    bias: String,
    bias_scale: Vec<f32>,
}

/// Corrects the biases of `quantized` against `float` (the model it was made
/// from, same tensor names). Returns the output SQNR on the calibration data (before,
/// after) when anything was corrected and kept.
pub fn correct_biases(
    float: &Model,
    quantized: &mut Model,
    calib: &Dataset,
    report: &mut QuantReport,
) -> Result<Option<(f64, f64)>> {
    let targets = targets(float, quantized)?;
    if targets.is_empty() {
        return Ok(None);
    }
    // Layer by layer in graph order: each drift is measured with the layers before it corrected.
    let want = channel_means(float, &targets.iter().map(|t| t.output.clone()).collect::<Vec<_>>(), calib)?;
    let mut corrected = quantized.clone();
    let mut shifts = vec![];
    for (t, want) in targets.iter().zip(&want) {
        let got = channel_means(&corrected, std::slice::from_ref(&t.output), calib)?.remove(0);
        let Some(Ok(bias)) = corrected.graph.constant(&t.bias) else { continue };
        let mut q = bias.to_array::<i32>()?;
        if q.len() != got.len() || got.len() != want.len() {
            continue;
        }
        let mut largest = 0f64;
        for (c, v) in q.iter_mut().enumerate() {
            let shift = got[c] - want[c];
            largest = largest.max(shift.abs());
            let scale = t.bias_scale[if t.bias_scale.len() == 1 { 0 } else { c }] as f64;
            let step = (shift / scale).round() as i64;
            *v = (*v as i64 - step).clamp(i32::MIN as i64, i32::MAX as i64) as i32;
        }
        let slot = corrected.graph.initializers.iter_mut().find(|i| i.name == t.bias).expect("an initializer");
        *slot = Tensor::from_array(&t.bias, &q);
        shifts.push(BiasShift { node: t.node.clone(), max_shift: largest });
    }
    let before = output_sqnr(float, quantized, calib)?;
    let after = output_sqnr(float, &corrected, calib)?;
    if after <= before {
        report.notes.push(format!(
            "bias correction left out: output SQNR on the calibration data {before:.1} dB without, {after:.1} dB with"
        ));
        return Ok(None);
    }
    report.bias_correction = shifts;
    *quantized = corrected;
    Ok(Some((before, after)))
}

/// Conv and Gemm nodes of `quantized` with an int32 bias behind a
/// `DequantizeLinear`, whose output the float model also makes.
fn targets(float: &Model, quantized: &Model) -> Result<Vec<Target>> {
    let g = &quantized.graph;
    let index = GraphIndex::new(g);
    let in_float: std::collections::BTreeSet<&str> =
        float.graph.nodes.iter().flat_map(|n| n.outputs.iter().map(String::as_str)).collect();
    let mut out = vec![];
    for i in g.topo_order()? {
        let node = &g.nodes[i];
        if !matches!(node.op_type.as_str(), "Conv" | "Gemm") || !in_float.contains(node.outputs[0].as_str()) {
            continue;
        }
        let Some(dq) = node.input(2).and_then(|b| index.producer(b)).map(|i| &g.nodes[i]) else { continue };
        let (Some(q), Some(s)) = (dq.input(0), dq.input(1)) else { continue };
        let (Some(Ok(bias)), Some(Ok(scale))) = (g.constant(q), g.constant(s)) else { continue };
        if dq.op_type != "DequantizeLinear"
            || bias.dtype != DataType::INT32
            || g.initializers.iter().all(|i| i.name != q)
        {
            continue;
        }
        out.push(Target {
            node: node.label(),
            output: node.outputs[0].clone(),
            bias: q.to_string(),
            bias_scale: scale.to_f32()?.iter().copied().collect(),
        });
    }
    Ok(out)
}

/// The mean of each channel (axis 1) of every named tensor over the first calibration rows.
fn channel_means(model: &Model, names: &[String], calib: &Dataset) -> Result<Vec<Vec<f64>>> {
    let mut sums: Vec<(Vec<f64>, f64)> = names.iter().map(|_| (vec![], 0.0)).collect();
    let rows = crate::measure::Rows::first(ROWS, 8);
    crate::measure::visit_tensors(model, names, calib, rows, &crate::measure::Silent, "", |i, x| {
        let (sum, count) = &mut sums[i];
        let Some(x) = x.filter(|x| x.ndim() >= 2) else { return Ok(()) };
        if sum.is_empty() {
            *sum = vec![0.0; x.shape()[1]];
        }
        for (c, lane) in x.axis_iter(Axis(1)).enumerate() {
            if let Some(s) = sum.get_mut(c) {
                *s += lane.iter().map(|v| *v as f64).sum::<f64>();
            }
        }
        *count += (x.len() / x.shape()[1].max(1)) as f64;
        Ok(())
    })?;
    Ok(sums.into_iter().map(|(s, n)| s.into_iter().map(|v| v / n.max(1.0)).collect()).collect())
}

/// The candidate's output SQNR against the reference on the calibration rows
/// after the first [`ROWS`] (on those when there are no others).
fn output_sqnr(reference: &Model, candidate: &Model, calib: &Dataset) -> Result<f64> {
    let bound = calib.bind(&feed_inputs(reference), None)?;
    let held_out = if bound.rows > ROWS { ROWS } else { 0 };
    let batches: Vec<Vec<crate::data::Array>> = bound
        .batches_upto(8, held_out + ROWS)
        .filter(|b| b.as_ref().map_or(true, |(start, _)| *start >= held_out))
        .map(|b| b.map(|(_, inputs)| inputs))
        .collect::<Result<_>>()?;
    let judge = crate::measure::Reference::new(&Session::new(reference, &Default::default())?, batches)?;
    Ok(judge.noise(&Session::new(candidate, &Default::default())?, None)?.sqnr_db())
}
