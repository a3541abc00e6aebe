//! Calibration: activation ranges measured on the data — min/max and percentiles reduced inside
//! the graph, histograms (entropy, MSE) captured in batches under a memory budget.

use super::*;
use crate::measure::{collect, Extremes, Ranked};

/// The minimum, maximum and number of values of each tensor in `tensors` over the first `rows`
/// rows, and with `ranked` (`Percentile` and `Auto`) the values ranked at the percentile from
/// either end — all reduced inside the graph in one run over the data (ppocr_rec: 17.5 s of
/// capture and histograms once, then two in-graph runs of 1.5 s and 3.7 s, now one). `None` when
/// the runtime will not run the augmented copy (a tensor ReduceMin does not take). The ranked
/// values need ONNX Runtime (tract's TopK sorts the whole tensor: minilm_l6 took 224 s against
/// 17 s of capture) and opset 10; without them only the extremes are reduced here.
/// What `riding` holds rides on the first run.
fn reduced_in_graph(
    model: &Model,
    bound: &crate::data::Bound,
    rows: usize,
    tensors: &[String],
    options: &StaticOptions,
    riding: &mut Riding,
    progress: &dyn Progress,
) -> Result<Option<(Extremes, Option<Ranked>)>> {
    if tensors.is_empty() {
        return Ok(Some((Extremes::new(tensors), None)));
    }
    let opset = model.onnx_opset().unwrap_or(0);
    let fast_top_k = crate::runtime::default_backend()? == crate::runtime::Backend::Ort;
    let ranks = matches!(options.method, Method::Percentile | Method::Auto) && fast_top_k && opset >= 10;
    let share = 1.0 - options.percentile / 100.0;
    let rows_in = crate::measure::Rows::first(rows, options.batch_size);
    progress.start(rows as u64, "calibrate");
    let mut ranked = Ranked::new(tensors, share, rows, bound, opset).sized_by_rows(model, bound);
    let mut extremes = Extremes::beside(tensors, &ranked);
    if ranks {
        let mut ran = first_run(model, bound, rows_in, &mut [&mut ranked, &mut extremes], riding, progress);
        let failed = matches!(ran, Err(ref e) if !matches!(e, crate::Error::Interrupted));
        if ranked.shares_sizes() && (failed || !ranked.sizes_disagree.is_empty()) {
            // Tract's analysis and the runtime disagree on a tensor's size (a wrong size may also
            // fail a chunking reshape): ranked a tensor at a time.
            progress.start(rows as u64, "calibrate");
            ranked = Ranked::new(tensors, share, rows, bound, opset);
            extremes = Extremes::beside(tensors, &ranked);
            ran = collect(model, bound, rows_in, &mut [&mut ranked, &mut extremes], progress);
        }
        match ran {
            Ok(()) => {
                progress.finish();
                return Ok(Some((extremes, Some(ranked))));
            }
            Err(crate::Error::Interrupted) => return Err(crate::Error::Interrupted),
            // The ranked values would not build (a type TopK does not take): the extremes alone.
            Err(_) => progress.start(rows as u64, "calibrate"),
        }
    }
    let mut extremes = Extremes::new(tensors);
    let ran = first_run(model, bound, rows_in, &mut [&mut extremes], riding, progress);
    progress.finish();
    match ran {
        Ok(()) => Ok(Some((extremes, None))),
        Err(crate::Error::Interrupted) => Err(crate::Error::Interrupted),
        Err(_) => Ok(None),
    }
}

/// SmoothQuant's observations taken in calibration's first run, and whether they were (that run
/// went through with them; else they may hold part of the data, and no other run serves them).
pub(super) struct Riding<'a> {
    observed: Option<&'a mut crate::quant::smooth::Observed>,
    served: bool,
}

/// Calibration's first run of `stats`, with what `riding` holds beside them.
fn first_run(
    model: &Model,
    bound: &crate::data::Bound,
    rows: crate::measure::Rows,
    stats: &mut [&mut dyn crate::measure::Statistic],
    riding: &mut Riding,
    progress: &dyn Progress,
) -> Result<()> {
    let Some(observed) = riding.observed.take() else { return collect(model, bound, rows, stats, progress) };
    let mut captured = observed.capture(&bound.names);
    let mut all: Vec<&mut dyn crate::measure::Statistic> = vec![];
    for s in stats.iter_mut() {
        all.push(&mut **s);
    }
    all.push(&mut captured);
    let ran = collect(model, bound, rows, &mut all, progress);
    riding.served = ran.is_ok();
    ran
}

/// The tensors tract's type analysis types as anything but float (shape computations' integers):
/// only floats get ranges, and each tensor reduced in the graph costs its calibration copy a dozen
/// nodes (minilm_l6: 87 of the 308 tensors it calibrated, found not float only by the run; its
/// copy's sessions took 0.8 s to make, 0.5 s without them).
fn known_not_float(model: &Model) -> BTreeSet<String> {
    crate::analysis::element_types(model).into_iter().filter(|(_, dtype)| !dtype.is_float()).map(|(t, _)| t).collect()
}

/// Each finite float tensor's percentile range from its values ranked `(1 − p/100)·n` from either
/// end (see [`crate::quant::calibrate::percentile_range_of_ranked`]).
fn percentile_ranges(extremes: &Extremes, ranked: &Ranked, percentile: f64) -> BTreeMap<String, (f32, f32)> {
    let rank = |n: u64| ((1.0 - percentile / 100.0).max(0.0) * n as f64).floor() as usize;
    let mut ranges = BTreeMap::new();
    for (t, &(min, max)) in &extremes.ranges {
        let Some((hi, lo)) = extremes.counts.get(t).and_then(|&n| ranked.ranked(t, rank(n))) else { continue };
        ranges.insert(t.clone(), crate::quant::calibrate::percentile_range_of_ranked(min, max, lo, hi));
    }
    ranges
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
    Ok(calibrate_with(model, data, tensors, options, None, progress)?.0)
}

/// The rows calibration runs over.
pub(super) fn calibration_rows(model: &Model, data: &Dataset, options: &StaticOptions) -> Result<usize> {
    Ok(rows_of(&data.bind(&feed_inputs(model), None)?, options))
}

/// The rows of `bound` calibration runs over: all, or the first `max_samples`.
fn rows_of(bound: &crate::data::Bound, options: &StaticOptions) -> usize {
    options.max_samples.map_or(bound.rows, |m| m.min(bound.rows))
}

/// [`calibrate`], SmoothQuant's observations taken in the same run (`true` when they were: the
/// ranges measured, not recalled, and that run went through).
pub(super) fn calibrate_with(
    model: &Model,
    data: &Dataset,
    tensors: &BTreeSet<String>,
    options: &StaticOptions,
    observed: Option<&mut crate::quant::smooth::Observed>,
    progress: &dyn Progress,
) -> Result<(Calibrated, bool)> {
    let bound = data.bind(&feed_inputs(model), None)?;
    let rows = rows_of(&bound, options);
    // `optimize` calibrates one prepared model for several candidates (fallback targets):
    // the ranges depend only on what is keyed here, so they are measured once.
    let key = crate::measure::memo::key((
        crate::ir::fingerprint(model),
        crate::measure::memo::bound_fingerprint(&bound, options.batch_size, rows)?,
        tensors,
        format!("{:?} {} {:?} {}", options.method, options.percentile, options.activation_type, options.batch_size),
        format!("{:?}", crate::runtime::default_backend()?),
    ));
    let mut riding = Riding { observed, served: false };
    let calibrated = CALIBRATION
        .get_or_measure(key, || measure_ranges(model, &bound, rows, tensors, options, &mut riding, progress))?;
    Ok((calibrated, riding.served))
}

/// Ranges measured once per process (see `calibrate`).
static CALIBRATION: crate::measure::memo::Memo<Calibrated> = crate::measure::memo::Memo::new();

pub(super) fn measure_ranges(
    model: &Model,
    bound: &crate::data::Bound,
    rows: usize,
    tensors: &BTreeSet<String>,
    options: &StaticOptions,
    riding: &mut Riding,
    progress: &dyn Progress,
) -> Result<Calibrated> {
    let feeds: BTreeSet<&str> = bound.names.iter().map(String::as_str).collect();
    let mut captured: Vec<String> = tensors.iter().filter(|t| !feeds.contains(t.as_str())).cloned().collect();
    let not_float = known_not_float(model);
    captured.retain(|t| !not_float.contains(t));
    let ran_in_graph = !captured.is_empty();
    let mut cals: BTreeMap<String, Box<dyn Calibrator + Send>> =
        tensors.iter().map(|t| (t.clone(), calibrator(options.method, options.percentile))).collect();
    let mut float = BTreeSet::new();
    let mut non_finite = BTreeSet::new();
    // Each tensor's minimum and maximum computed inside the graph first: the
    // runtime hands back two numbers per tensor instead of the tensor
    // (gigabytes per batch on ppocr_rec). Min and max are exact, so for MinMax
    // these are the ranges of a full capture; the histogram methods capture
    // only the finite float tensors whole below.
    // The percentile (and `auto`'s) ranges come exact from the same in-graph run.
    let mut exact = BTreeMap::new();
    if let Some((mut extremes, ranked)) = reduced_in_graph(model, bound, rows, &captured, options, riding, progress)? {
        non_finite.extend(extremes.keep_finite());
        if let Some(ranked) = &ranked {
            exact = percentile_ranges(&extremes, ranked, options.percentile);
        }
        captured
            .retain(|t| extremes.ranges.contains_key(t) && options.method != Method::MinMax && !exact.contains_key(t));
        // The histogram methods still count every value, but need no pass to find the range.
        for (name, (lo, hi)) in extremes.ranges {
            if let Some(cal) = cals.get_mut(&name) {
                cal.know_range(lo, hi);
                float.insert(name);
            }
        }
    }
    // What is left is captured whole: the histogram methods' tensors and the graph inputs.
    let inputs = bound.names.iter().filter(|n| cals.contains_key(*n));
    let whole: Vec<String> = captured.iter().chain(inputs).cloned().collect();
    let passes = if cals.values().any(|c| c.needs_second_pass()) { 2 } else { 1 };
    // After the in-graph run, with nothing captured, only the graph inputs' ranges are read here
    // (a model whose only calibrated tensors are inputs calibrates here).
    let stage = if !captured.is_empty() || !ran_in_graph { "calibrate" } else { "input ranges" };
    progress.start((rows * passes) as u64, stage);
    for pass in 0..passes {
        // A second pass runs again only for the tensors that need it.
        let names: Vec<String> = whole
            .iter()
            .filter(|n| pass == 0 || cals.get(*n).is_some_and(|c| c.needs_second_pass()))
            .cloned()
            .collect();
        if names.is_empty() {
            continue;
        }
        // The calibrators see the batches in order, as in one sequential pass.
        let visit = |i: usize, value: Option<&ArrayD<f32>>| -> Result<()> {
            let (Some(a), Some(cal)) = (value, cals.get_mut(&names[i])) else { return Ok(()) };
            float.insert(names[i].clone());
            let a = a.as_standard_layout();
            let values = a.as_slice().expect("standard layout");
            if values.iter().any(|v| !v.is_finite()) {
                non_finite.insert(names[i].clone());
            }
            match pass {
                0 => cal.observe(values),
                _ => cal.observe_again(values),
            }
            Ok(())
        };
        let mut captured = crate::measure::Captured::new(&names, &bound.names, visit);
        let rows = crate::measure::Rows::first(rows, options.batch_size);
        collect(model, bound, rows, &mut [&mut captured], progress)?;
    }
    progress.finish();
    let levels = 1usize << options.activation_type.bits();
    let kept: Vec<_> = cals.into_iter().filter(|(n, _)| float.contains(n) && !non_finite.contains(n)).collect();
    let ranges =
        kept.iter().map(|(n, c)| (n.clone(), exact.get(n).copied().unwrap_or_else(|| c.range(levels)))).collect();
    let extremes = kept.iter().map(|(n, c)| (n.clone(), c.extremes())).collect();
    Ok(Calibrated { ranges, extremes, non_finite })
}
