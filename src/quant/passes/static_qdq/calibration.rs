//! Calibration: activation ranges measured on the data — min/max and percentiles reduced inside
//! the graph, histograms (entropy, MSE) captured in batches under a memory budget.

use super::*;

/// Extremes of tensors computed inside the graph.
pub(super) struct Reduced {
    /// Float tensors with finite extremes: their minimum and maximum.
    pub(super) ranges: BTreeMap<String, (f32, f32)>,
    /// How many values each of them held over the rows.
    pub(super) counts: BTreeMap<String, u64>,
    /// Tensors that turned out not to be float (shapes, indices): nothing to calibrate.
    pub(super) not_float: BTreeSet<String>,
}

/// The minimum, maximum and number of values of each float tensor in `tensors` over the first
/// `rows` rows, by ReduceMin/ReduceMax/Size nodes added to a copy of the model; tensors with a
/// non-finite extreme are in neither set. `None` when the runtime will not run the augmented
/// copy (a tensor ReduceMin does not take).
pub(super) fn reduced_min_max(
    model: &Model,
    bound: &crate::data::Bound,
    rows: usize,
    tensors: &[String],
    batch_size: usize,
    progress: &dyn Progress,
) -> Result<Option<Reduced>> {
    let mut reduced = Reduced { ranges: BTreeMap::new(), counts: BTreeMap::new(), not_float: BTreeSet::new() };
    if tensors.is_empty() {
        return Ok(Some(reduced));
    }
    let reduce = |t: &String| {
        let nodes = [("ReduceMin", true), ("ReduceMax", true), ("Size", false)].map(|(op, attr)| {
            let keepdims = if attr { vec![crate::ir::Attribute::int("keepdims", 0)] } else { vec![] };
            crate::measure::node(op, &[t], format!("{t}_prunq_{op}"), keepdims)
        });
        let outputs = nodes.iter().map(|n| n.outputs[0].clone()).collect();
        crate::measure::Reduction { nodes: nodes.into(), outputs }
    };
    let Reduced { ranges, counts, not_float } = &mut reduced;
    let visit = |t: &String, out: &[Array]| {
        let (Some(Array::F32(lo)), Some(Array::F32(hi)), Some(Array::I64(n))) = (out.first(), out.get(1), out.get(2))
        else {
            not_float.insert(t.clone());
            return;
        };
        let (lo, hi) = (lo.iter().copied().fold(f32::NAN, f32::min), hi.iter().copied().fold(f32::NAN, f32::max));
        let r = ranges.entry(t.clone()).or_insert((lo, hi));
        // NaN wins here on purpose: any non-finite extreme sends the tensor to the full capture.
        r.0 = if r.0.is_nan() || lo.is_nan() { f32::NAN } else { r.0.min(lo) };
        r.1 = if r.1.is_nan() || hi.is_nan() { f32::NAN } else { r.1.max(hi) };
        *counts.entry(t.clone()).or_default() += n.iter().sum::<i64>().max(0) as u64;
    };
    progress.start(rows as u64, "calibrate");
    let ran =
        crate::measure::reduce_in_graph(model, bound, rows, tensors, batch_size, reduce, vec![], visit, progress)?;
    progress.finish();
    if !ran {
        return Ok(None);
    }
    reduced.ranges.retain(|t, (lo, hi)| lo.is_finite() && hi.is_finite() && !reduced.not_float.contains(t));
    Ok(Some(reduced))
}

/// The `percentile` ranges of the finite float tensors in `counts` (each with its number of
/// values over the rows, its extremes in `extremes`) from the values ranked `(1 − p/100)·n` from
/// either end (see [`crate::quant::calibrate::percentile_range_of_ranked`]), found by
/// TopK nodes added to a copy of the model — each batch hands back the tensor's largest and
/// smallest values, as many as the rank needs, instead of the tensor (ppocr_rec: 17.5 s of
/// capture and histograms before, 4.6 s now, in ONNX Runtime). `None` when the runtime will
/// not run the copy (opset under 10 has no TopK with a tensor `k`) or is tract.
pub(super) fn percentile_ranges(
    model: &Model,
    bound: &crate::data::Bound,
    rows: usize,
    reduced: &Reduced,
    percentile: f64,
    batch_size: usize,
    progress: &dyn Progress,
) -> Result<Option<BTreeMap<String, (f32, f32)>>> {
    // tract sorts the whole tensor for a TopK: minilm_l6 took 224 s here against 17 s of capture.
    let fast_top_k = crate::runtime::default_backend()? == crate::runtime::Backend::Ort;
    let (extremes, counts) = (&reduced.ranges, &reduced.counts);
    let counts: BTreeMap<&String, u64> =
        counts.iter().filter(|(t, _)| extremes.contains_key(*t)).map(|(t, &n)| (t, n)).collect();
    if counts.is_empty() || !fast_top_k || model.onnx_opset().unwrap_or(0) < 10 {
        return Ok(None);
    }
    // The value ranked r from the top is among the r + 1 largest of the batch holding it.
    let rank = |n: u64| ((1.0 - percentile / 100.0).max(0.0) * n as f64).floor() as u64;
    let keep: BTreeMap<&String, usize> =
        counts.iter().map(|(&t, &n)| (t, (rank(n) + 1).min(n.max(1)) as usize)).collect();
    let most = keep.values().copied().max().unwrap_or(1);
    // A batch may hold fewer values than k: the flattened tensor gets k infinities appended,
    // which no finite value loses to, and which are dropped here.
    let constants = vec![
        Tensor::from_array("prunq_flat", &ndarray::arr1(&[-1i64]).into_dyn()),
        Tensor::from_array("prunq_pad", &ArrayD::from_elem(vec![most], f32::NEG_INFINITY)),
    ];
    let mut constants = constants;
    for (t, &k) in &keep {
        constants.push(Tensor::from_array(format!("{t}_prunq_k"), &ndarray::arr1(&[k as i64]).into_dyn()));
    }
    let reduce = |t: &String| {
        let n = |what: &str| format!("{t}_prunq_{what}");
        let node = crate::measure::node;
        let topk = |input: &str, what: &str| crate::ir::Node {
            outputs: vec![n(what), n(&format!("{what}_at"))],
            ..node("TopK", &[input, &n("k")], n(what), vec![])
        };
        let nodes = vec![
            node("Reshape", &[t, "prunq_flat"], n("flat"), vec![]),
            node("Concat", &[&n("flat"), "prunq_pad"], n("high_in"), vec![crate::ir::Attribute::int("axis", 0)]),
            topk(&n("high_in"), "high"),
            // The smallest values are the largest of the negated tensor (TopK's `largest` is opset 11).
            node("Neg", &[&n("flat")], n("negated"), vec![]),
            node("Concat", &[&n("negated"), "prunq_pad"], n("low_in"), vec![crate::ir::Attribute::int("axis", 0)]),
            topk(&n("low_in"), "low"),
        ];
        crate::measure::Reduction { nodes, outputs: vec![n("high"), n("low")] }
    };
    // Each tensor's k largest and k largest-negated values so far.
    let mut tails: BTreeMap<String, (Vec<f32>, Vec<f32>)> = BTreeMap::new();
    let visit = |t: &String, out: &[Array]| {
        let (Some(Array::F32(high)), Some(Array::F32(low))) = (out.first(), out.get(1)) else { return };
        let k = keep[t];
        let (h, l) = tails.entry(t.clone()).or_default();
        for (kept, new) in [(h, high), (l, low)] {
            kept.extend(new.iter().copied().filter(|v| v.is_finite()));
            kept.sort_unstable_by(|a, b| b.total_cmp(a));
            kept.truncate(k);
        }
    };
    let tensors: Vec<String> = counts.keys().map(|t| t.to_string()).collect();
    progress.start(rows as u64, "percentile ranges");
    let ran =
        crate::measure::reduce_in_graph(model, bound, rows, &tensors, batch_size, reduce, constants, visit, progress)?;
    progress.finish();
    if !ran {
        return Ok(None);
    }
    let mut ranges = BTreeMap::new();
    for (t, (high, low)) in tails {
        let r = rank(counts[&&t]) as usize;
        let (Some(&hi), Some(&neg_lo)) = (high.get(r).or(high.last()), low.get(r).or(low.last())) else { continue };
        let (min, max) = extremes[&t];
        ranges.insert(t, crate::quant::calibrate::percentile_range_of_ranked(min, max, -neg_lo, hi));
    }
    Ok(Some(ranges))
}

/// What calibration found.
#[derive(Clone)]
pub(super) struct Calibrated {
    /// Each calibrated float tensor's range.
    pub(super) ranges: BTreeMap<String, (f32, f32)>,
    /// Each calibrated float tensor's smallest and largest value (min-max's ranges).
    pub(super) extremes: BTreeMap<String, (f32, f32)>,
    /// Float tensors holding infinities or NaN on the calibration data (attention
    /// masks written as -inf): quantizing them would turn -inf into a finite value.
    pub(super) non_finite: BTreeSet<String>,
}

/// Runs the calibration data through the model and returns each tensor's range.
pub(super) fn calibrate(
    model: &Model,
    data: &Dataset,
    tensors: &BTreeSet<String>,
    options: &StaticOptions,
    progress: &dyn Progress,
) -> Result<Calibrated> {
    let bound = data.bind(&feed_inputs(model), None)?;
    let rows = options.max_samples.map_or(bound.rows, |m| m.min(bound.rows));
    // `optimize` calibrates one prepared model for several candidates (fallback targets):
    // the ranges depend only on what is keyed here, so they are measured once.
    let key = crate::measure::memo::key((
        crate::ir::fingerprint(model),
        crate::measure::memo::bound_fingerprint(&bound, options.batch_size, rows)?,
        tensors,
        format!("{:?} {} {:?} {}", options.method, options.percentile, options.activation_type, options.batch_size),
        format!("{:?}", crate::runtime::default_backend()?),
    ));
    CALIBRATION.get_or_measure(key, || measure_ranges(model, &bound, rows, tensors, options, progress))
}

/// Ranges measured once per process (see `calibrate`).
static CALIBRATION: crate::measure::memo::Memo<Calibrated> = crate::measure::memo::Memo::new();

pub(super) fn measure_ranges(
    model: &Model,
    bound: &crate::data::Bound,
    rows: usize,
    tensors: &BTreeSet<String>,
    options: &StaticOptions,
    progress: &dyn Progress,
) -> Result<Calibrated> {
    let feeds: BTreeSet<&str> = bound.names.iter().map(String::as_str).collect();
    let mut captured: Vec<String> = tensors.iter().filter(|t| !feeds.contains(t.as_str())).cloned().collect();
    let reduced_in_graph = !captured.is_empty();
    let mut cals: BTreeMap<String, Box<dyn Calibrator + Send>> =
        tensors.iter().map(|t| (t.clone(), calibrator(options.method, options.percentile))).collect();
    let mut float = BTreeSet::new();
    let mut non_finite = BTreeSet::new();
    // Each tensor's minimum and maximum computed inside the graph first: the
    // runtime hands back two numbers per tensor instead of the tensor
    // (gigabytes per batch on ppocr_rec). Min and max are exact, so for MinMax
    // these are the ranges of a full capture; the histogram methods capture
    // only the finite float tensors whole below.
    // The percentile (and `auto`'s) ranges come exact from a second in-graph pass.
    let mut exact = BTreeMap::new();
    if let Some(reduced) = reduced_min_max(model, bound, rows, &captured, options.batch_size, progress)? {
        non_finite.extend(
            captured.iter().filter(|t| !reduced.ranges.contains_key(*t) && !reduced.not_float.contains(*t)).cloned(),
        );
        if matches!(options.method, Method::Percentile | Method::Auto) {
            let (p, batch) = (options.percentile, options.batch_size);
            if let Some(ranges) = percentile_ranges(model, bound, rows, &reduced, p, batch, progress)? {
                exact = ranges;
            }
        }
        captured
            .retain(|t| reduced.ranges.contains_key(t) && options.method != Method::MinMax && !exact.contains_key(t));
        // The histogram methods still count every value, but need no pass to find the range.
        for (name, (lo, hi)) in reduced.ranges {
            if let Some(cal) = cals.get_mut(&name) {
                cal.know_range(lo, hi);
                float.insert(name);
            }
        }
    }
    // Nothing left to capture: only the graph inputs are observed, straight from the data.
    let session = Session::capturing(model, &captured)?;
    let (batch_size, in_flight) = match &session {
        Some(s) => crate::measure::measured_batch_plan(s, bound, options.batch_size)?,
        None => (options.batch_size, crate::parallel::threads()),
    };
    let passes = if cals.values().any(|c| c.needs_second_pass()) { 2 } else { 1 };
    // After the in-graph passes, with nothing captured, only the graph inputs' ranges are read
    // from the data here (a model whose only calibrated tensors are inputs calibrates here).
    let stage = if session.is_some() || !reduced_in_graph { "calibrate" } else { "input ranges" };
    progress.start((rows * passes) as u64, stage);
    for pass in 0..passes {
        // A second pass runs the model again only for captured tensors that need it.
        let again: BTreeSet<String> =
            cals.iter().filter(|(_, c)| pass == 1 && c.needs_second_pass()).map(|(n, _)| n.clone()).collect();
        let run_model = pass == 0 || captured.iter().any(|t| again.contains(t));
        let batches = bound.batches_upto(batch_size, rows).map(|b| b.map(|(_, batch)| batch));
        // Batches run in parallel; the calibrators see them in order, as in one sequential pass.
        crate::parallel::ordered_upto(
            in_flight,
            batches,
            |batch| session.as_ref().filter(|_| run_model).map_or(Ok(vec![]), |s| s.run(batch)),
            |batch, outputs| {
                let named = captured.iter().zip(outputs.iter()).chain(bound.names.iter().zip(batch.iter()));
                for (name, value) in named {
                    if pass == 1 && !again.contains(name) {
                        continue;
                    }
                    let Some(cal) = cals.get_mut(name) else { continue };
                    let Array::F32(a) = value else { continue };
                    float.insert(name.clone());
                    let a = a.as_standard_layout();
                    let values = a.as_slice().expect("standard layout");
                    if values.iter().any(|v| !v.is_finite()) {
                        non_finite.insert(name.clone());
                    }
                    if pass == 0 {
                        cal.observe(values);
                    } else {
                        cal.observe_again(values);
                    }
                }
                progress.advance(bound.rows_in(&batch) as u64);
                progress.check_stop()?;
                Ok(())
            },
        )?;
    }
    progress.finish();
    let levels = 1usize << options.activation_type.bits();
    let kept: Vec<_> = cals.into_iter().filter(|(n, _)| float.contains(n) && !non_finite.contains(n)).collect();
    let ranges =
        kept.iter().map(|(n, c)| (n.clone(), exact.get(n).copied().unwrap_or_else(|| c.range(levels)))).collect();
    let extremes = kept.iter().map(|(n, c)| (n.clone(), c.extremes())).collect();
    Ok(Calibrated { ranges, extremes, non_finite })
}
