//! Calibration: activation ranges measured on the data in one pass (min/max reduced inside the
//! graph, histograms captured in batches under a memory budget).

use super::*;

/// Extremes of tensors computed inside the graph.
pub(super) struct Reduced {
    /// Float tensors with finite extremes: their minimum and maximum.
    pub(super) ranges: BTreeMap<String, (f32, f32)>,
    /// Tensors that turned out not to be float (shapes, indices): nothing to calibrate.
    pub(super) not_float: BTreeSet<String>,
}

/// The minimum and maximum of each float tensor in `tensors` over the first
/// `rows` rows, by ReduceMin/ReduceMax nodes added to a copy of the model;
/// tensors with a non-finite extreme are in neither set. `None` when the runtime
/// will not run the augmented copy (a tensor ReduceMin does not take).
pub(super) fn reduced_min_max(
    model: &Model,
    bound: &crate::data::Bound,
    rows: usize,
    tensors: &[String],
    batch_size: usize,
    progress: &dyn Progress,
) -> Result<Option<Reduced>> {
    if tensors.is_empty() {
        return Ok(Some(Reduced { ranges: BTreeMap::new(), not_float: BTreeSet::new() }));
    }
    // The pairs go at the end, the last-made tensor's first. ONNX Runtime's
    // default execution order is a depth-first walk up from the graph's
    // leaves taken from the last node back: so the first activation's pair
    // is reached first, runs as soon as its producer has, and each tensor is
    // freed right after it is reduced. ppocr_rec at batch 8: 136 MB and 3.5×
    // faster, against 1.7 GB with the pairs in production order at the end
    // (every activation held to the end) and 3.1 GB (prunq) with each pair
    // right after its producer.
    let wanted: BTreeSet<&String> = tensors.iter().collect();
    let reduce = |t: &String| {
        ["ReduceMin", "ReduceMax"].map(|op| crate::ir::Node {
            name: format!("{t}_prunq_{op}"),
            op_type: op.into(),
            inputs: vec![t.clone()],
            outputs: vec![format!("{t}_prunq_{op}")],
            attributes: vec![crate::ir::Attribute::int("keepdims", 0)],
            ..Default::default()
        })
    };
    let mut m = model.clone();
    let produced: Vec<&String> =
        model.graph.nodes.iter().flat_map(|n| n.outputs.iter()).filter(|t| wanted.contains(t)).collect();
    let placed: BTreeSet<&String> = produced.iter().copied().collect();
    for t in tensors.iter().filter(|t| !placed.contains(t)).chain(produced.into_iter().rev()) {
        m.graph.nodes.extend(reduce(t));
    }
    let capture: Vec<String> =
        tensors.iter().flat_map(|t| ["ReduceMin", "ReduceMax"].map(|op| format!("{t}_prunq_{op}"))).collect();
    let session = match Session::new(&m, &SessionOptions { capture, capture_only: true, ..Default::default() }) {
        Ok(s) => s,
        Err(_) => return Ok(None),
    };
    let mut ranges: BTreeMap<String, (f32, f32)> = BTreeMap::new();
    let mut not_float = BTreeSet::new();
    progress.start(rows as u64, "calibrate");
    let batches = bound.batches_upto(batch_size, rows).map(|b| b.map(|(_, batch)| batch));
    let run = crate::parallel::ordered(
        batches,
        |batch| session.run(batch),
        |batch, outputs| {
            for (t, pair) in tensors.iter().zip(outputs.chunks(2)) {
                let (Array::F32(lo), Array::F32(hi)) = (&pair[0], &pair[1]) else {
                    not_float.insert(t.clone());
                    continue;
                };
                let (lo, hi) =
                    (lo.iter().copied().fold(f32::NAN, f32::min), hi.iter().copied().fold(f32::NAN, f32::max));
                let r = ranges.entry(t.clone()).or_insert((lo, hi));
                // NaN wins here on purpose: any non-finite extreme sends the tensor to the full capture.
                r.0 = if r.0.is_nan() || lo.is_nan() { f32::NAN } else { r.0.min(lo) };
                r.1 = if r.1.is_nan() || hi.is_nan() { f32::NAN } else { r.1.max(hi) };
            }
            progress.advance(bound.rows_in(&batch) as u64);
            progress.check_stop()?;
            Ok(())
        },
    );
    progress.finish();
    if run.is_err() {
        return Ok(None);
    }
    ranges.retain(|t, (lo, hi)| lo.is_finite() && hi.is_finite() && !not_float.contains(t));
    Ok(Some(Reduced { ranges, not_float }))
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
    let mut cals: BTreeMap<String, Box<dyn Calibrator + Send>> =
        tensors.iter().map(|t| (t.clone(), calibrator(options.method, options.percentile))).collect();
    let mut float = BTreeSet::new();
    let mut non_finite = BTreeSet::new();
    // Each tensor's minimum and maximum computed inside the graph first: the
    // runtime hands back two numbers per tensor instead of the tensor
    // (gigabytes per batch on ppocr_rec). Min and max are exact, so for MinMax
    // these are the ranges of a full capture; the histogram methods capture
    // only the finite float tensors whole below.
    if let Some(reduced) = reduced_min_max(model, bound, rows, &captured, options.batch_size, progress)? {
        non_finite.extend(
            captured.iter().filter(|t| !reduced.ranges.contains_key(*t) && !reduced.not_float.contains(*t)).cloned(),
        );
        captured.retain(|t| reduced.ranges.contains_key(t) && options.method != Method::MinMax);
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
    progress.start((rows * passes) as u64, "calibrate");
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
    let ranges = kept.iter().map(|(n, c)| (n.clone(), c.range(levels))).collect();
    let extremes = kept.iter().map(|(n, c)| (n.clone(), c.extremes())).collect();
    Ok(Calibrated { ranges, extremes, non_finite })
}
