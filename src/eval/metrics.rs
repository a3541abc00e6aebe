//! Streaming comparison metrics between a reference output and a candidate's:
//! top-1 agreement, cosine similarity per sample, SQNR, max absolute error,
//! and nearest-neighbour agreement for embeddings.

use ndarray::{ArrayD, ArrayView2, Axis, Ix2};
use serde::Serialize;

/// Embeddings kept for nearest-neighbour agreement stay under this many floats.
const NN_MAX_FLOATS: usize = 16 << 20;

/// One output of two models compared over the data.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct OutputMetrics {
    /// The output's name.
    pub name: String,
    /// Fraction of rows (or positions, for [N, T, C]) whose arg-max agrees.
    pub top1_agreement: f64,
    /// Mean per-row cosine.
    pub cosine_mean: f64,
    /// Lowest per-row cosine.
    pub cosine_min: f64,
    /// 10·log10(Σref² / Σ(ref−cand)²); infinite when identical.
    #[serde(serialize_with = "finite_or_string")]
    pub sqnr_db: f64,
    /// Largest absolute difference.
    pub max_abs_error: f64,
    /// For 2-D outputs (embeddings): fraction of rows whose nearest other row
    /// (by cosine) is the same in both models.
    pub nn_agreement: Option<f64>,
    /// Rows compared.
    pub samples: usize,
    /// The worst quantity (a box coordinate, a class score) along the axis that carries them
    /// ([`crate::measure::slices_of`]: the last axis of 2 to `MAX_SLICES` (256) entries, or a
    /// detector head's fixed axis 1): one output-wide SQNR can hide a collapsed slice when
    /// quantities of different scales share an output.
    pub worst_slice: Option<WorstSlice>,
}

pub use crate::measure::MAX_SLICES;

/// The lowest-SQNR entry of the axis an output is judged in slices along.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct WorstSlice {
    /// Index along the axis.
    pub index: usize,
    /// The axis, when it is not the last one (a detector head's axis 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub axis: Option<usize>,
    /// Its SQNR.
    #[serde(serialize_with = "finite_or_string")]
    pub sqnr_db: f64,
}

impl WorstSlice {
    /// Where it is: `[4]` on the last axis, `[axis 1: 4]` on another.
    pub fn place(&self) -> String {
        match self.axis {
            None => format!("[{}]", self.index),
            Some(axis) => format!("[axis {axis}: {}]", self.index),
        }
    }
}

pub(super) fn finite_or_string<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_finite() {
        s.serialize_f64(*v)
    } else {
        s.serialize_str(if *v > 0.0 { "inf" } else { "-inf" })
    }
}

/// Streaming accumulator of [`OutputMetrics`]: batches added one at a time.
#[derive(Default)]
pub struct OutputComparison {
    agree: usize,
    positions: usize,
    cos_sum: f64,
    cos_min: f64,
    samples: usize,
    signal: f64,
    noise: f64,
    max_abs: f64,
    keep_rows: Option<(Vec<f32>, Vec<f32>, usize)>,
    /// (signal, noise) per entry of the sliced axis.
    slices: Vec<(f64, f64)>,
    /// The output's dims as its model declares them (they decide the sliced axis).
    declared: Option<Vec<crate::ir::Dim>>,
    /// The sliced axis, when it is not the last.
    sliced_axis: Option<usize>,
}

impl OutputComparison {
    /// An empty accumulator.
    pub fn new() -> Self {
        OutputComparison { cos_min: f64::INFINITY, keep_rows: Some((vec![], vec![], 0)), ..Default::default() }
    }

    /// An empty accumulator for an output whose model declares it `declared` (see
    /// [`crate::measure::slices_of`]).
    pub fn declared(declared: Option<Vec<crate::ir::Dim>>) -> Self {
        OutputComparison { declared, ..Self::new() }
    }

    /// Adds one batch: arrays of the same shape, batch on axis 0. Where both hold
    /// the same infinity (an attention mask's −inf) there is no error and no signal.
    pub fn update(&mut self, reference: &ArrayD<f32>, candidate: &ArrayD<f32>) {
        assert_eq!(reference.shape(), candidate.shape(), "compared outputs differ in shape");
        if reference.iter().any(|v| v.is_infinite()) {
            let same_infinity = |r: f32, c: f32| r.is_infinite() && r == c;
            let mut r = reference.clone();
            let mut c = candidate.clone();
            ndarray::Zip::from(&mut r).and(&mut c).for_each(|r, c| {
                if same_infinity(*r, *c) {
                    (*r, *c) = (0.0, 0.0);
                }
            });
            if r.iter().all(|v| !v.is_infinite()) {
                return self.update(&r, &c);
            }
        }
        let shape = reference.shape();
        let sliced = crate::measure::slices_of(shape, self.declared.as_deref());
        if let Some(slicing) = sliced {
            if self.slices.len() != slicing.n {
                self.slices = vec![(0.0, 0.0); slicing.n];
            }
            self.sliced_axis = (slicing.axis + 1 != shape.len()).then_some(slicing.axis);
        }
        for (i, (r, c)) in reference.iter().zip(candidate).enumerate() {
            let (r, c) = (*r as f64, *c as f64);
            self.signal += r * r;
            self.noise += (r - c) * (r - c);
            self.max_abs = self.max_abs.max((r - c).abs());
            if let Some(slicing) = sliced {
                let s = &mut self.slices[slicing.of(i, shape)];
                s.0 += r * r;
                s.1 += (r - c) * (r - c);
            }
        }
        let n = reference.shape().first().copied().unwrap_or(1);
        let r2 = as_rows(reference, n);
        let c2 = as_rows(candidate, n);
        for (r, c) in r2.outer_iter().zip(c2.outer_iter()) {
            let cos = cosine(r.as_slice().expect("contiguous"), c.as_slice().expect("contiguous"));
            self.cos_sum += cos;
            self.cos_min = self.cos_min.min(cos);
            self.samples += 1;
        }
        // Top-1 along the last axis, for every leading position.
        let classes = reference.shape().last().copied().unwrap_or(1).max(1);
        let r_pos = reference.view().into_shape_with_order((reference.len() / classes, classes));
        let c_pos = candidate.view().into_shape_with_order((candidate.len() / classes, classes));
        if let (Ok(r_pos), Ok(c_pos)) = (r_pos, c_pos) {
            for (r, c) in r_pos.outer_iter().zip(c_pos.outer_iter()) {
                self.positions += 1;
                self.agree += (argmax(r.iter()) == argmax(c.iter())) as usize;
            }
        }
        if reference.ndim() == 2 {
            if let Some((rs, cs, width)) = &mut self.keep_rows {
                *width = reference.shape()[1];
                rs.extend(reference.iter());
                cs.extend(candidate.iter());
                if rs.len() > NN_MAX_FLOATS {
                    self.keep_rows = None;
                }
            }
        } else {
            self.keep_rows = None;
        }
    }

    /// The metrics of everything added, for output `name`.
    pub fn finish(self, name: &str) -> OutputMetrics {
        let nn_agreement = self.keep_rows.and_then(|(r, c, width)| {
            let n = r.len() / width.max(1);
            (n >= 2 && width >= 2).then(|| {
                let r = ArrayView2::from_shape((n, width), &r).expect("rows");
                let c = ArrayView2::from_shape((n, width), &c).expect("rows");
                let (nr, nc) = (nearest(r), nearest(c));
                nr.iter().zip(&nc).filter(|(a, b)| a == b).count() as f64 / n as f64
            })
        });
        let db = crate::measure::sqnr_db;
        let sqnr_db = db(self.signal, self.noise);
        let worst_slice = self
            .slices
            .iter()
            .enumerate()
            .filter(|(_, (s, _))| *s > 0.0)
            .map(|(index, (s, n))| WorstSlice { index, axis: self.sliced_axis, sqnr_db: db(*s, *n) })
            .min_by(|a, b| a.sqnr_db.total_cmp(&b.sqnr_db));
        OutputMetrics {
            name: name.to_string(),
            top1_agreement: if self.positions == 0 { 1.0 } else { self.agree as f64 / self.positions as f64 },
            cosine_mean: if self.samples == 0 { 1.0 } else { self.cos_sum / self.samples as f64 },
            cosine_min: if self.samples == 0 { 1.0 } else { self.cos_min },
            sqnr_db,
            max_abs_error: self.max_abs,
            nn_agreement,
            samples: self.samples,
            worst_slice,
        }
    }
}

fn as_rows(a: &ArrayD<f32>, n: usize) -> ndarray::Array2<f32> {
    let width = a.len().checked_div(n).unwrap_or(0);
    a.as_standard_layout()
        .into_owned()
        .into_shape_with_order((n, width))
        .expect("rows")
        .into_dimensionality::<Ix2>()
        .expect("2-d")
}

/// Index of the largest value (first on ties; NaN never wins).
pub fn argmax<'a>(v: impl Iterator<Item = &'a f32>) -> usize {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, &x) in v.enumerate() {
        if x > best.1 {
            best = (i, x);
        }
    }
    best.0
}

/// Cosine similarity in f64; 1 when both are zero, 0 when only one is.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64, y as f64);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    match (aa == 0.0, bb == 0.0) {
        (true, true) => 1.0,
        (true, false) | (false, true) => 0.0,
        _ => ab / (aa.sqrt() * bb.sqrt()),
    }
}

/// For each row, the index of its most cosine-similar other row.
fn nearest(rows: ArrayView2<f32>) -> Vec<usize> {
    let norms: Vec<f32> = rows.outer_iter().map(|r| r.dot(&r).sqrt().max(1e-12)).collect();
    let sims = rows.dot(&rows.t());
    sims.axis_iter(Axis(0))
        .enumerate()
        .map(|(i, row)| {
            let scored = row.iter().enumerate().filter(|(j, _)| *j != i).map(|(j, &s)| (j, s / (norms[i] * norms[j])));
            scored.fold((usize::MAX, f32::NEG_INFINITY), |best, (j, s)| if s > best.1 { (j, s) } else { best }).0
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::IxDyn;

    fn arr(shape: &[usize], v: Vec<f32>) -> ArrayD<f32> {
        ArrayD::from_shape_vec(IxDyn(shape), v).unwrap()
    }

    #[test]
    fn identical_outputs_agree_fully_with_infinite_sqnr() {
        let a = arr(&[2, 3], vec![1., 2., 3., 3., 2., 1.]);
        let mut c = OutputComparison::new();
        c.update(&a, &a);
        let m = c.finish("y");
        assert_eq!((m.top1_agreement, m.max_abs_error), (1.0, 0.0));
        assert!(m.sqnr_db.is_infinite() && (m.cosine_min - 1.0).abs() < 1e-12);
    }

    #[test]
    fn hand_computed_metrics() {
        // Row 0 keeps its arg-max, row 1 flips it.
        let r = arr(&[2, 2], vec![3., 4., 1., 0.]);
        let c = arr(&[2, 2], vec![3., 5., 0., 1.]);
        let mut cmp = OutputComparison::new();
        cmp.update(&r, &c);
        let m = cmp.finish("y");
        assert_eq!(m.top1_agreement, 0.5);
        // signal 9+16+1 = 26, noise 0+1+1+1 = 3
        assert!((m.sqnr_db - 10.0 * (26.0f64 / 3.0).log10()).abs() < 1e-9);
        let cos0 = (9.0 + 20.0) / (5.0 * 34f64.sqrt());
        assert!((m.cosine_mean - (cos0 + 0.0) / 2.0).abs() < 1e-9);
        assert_eq!(m.cosine_min, 0.0);
        assert_eq!(m.max_abs_error, 1.0);
    }

    #[test]
    fn nearest_neighbours_found_by_cosine() {
        let rows = ndarray::array![[1.0f32, 0.0], [0.9, 0.1], [0.0, 1.0]];
        assert_eq!(nearest(rows.view()), vec![1, 0, 1]);
    }

    #[test]
    fn a_collapsed_slice_shows_though_the_whole_output_looks_fine() {
        // Boxes in pixels beside 0-1 scores; the candidate loses the scores entirely.
        let reference = ndarray::array![[300.0f32, 420.0, 0.9], [250.0, 380.0, 0.2]].into_dyn();
        let candidate = ndarray::array![[300.5f32, 419.5, 0.0], [250.5, 380.5, 0.0]].into_dyn();
        let mut c = OutputComparison::new();
        c.update(&reference, &candidate);
        let m = c.finish("detections");
        assert!(m.sqnr_db > 40.0, "{}", m.sqnr_db);
        let worst = m.worst_slice.expect("three quantities");
        assert_eq!(worst.index, 2);
        assert!(worst.sqnr_db.abs() < 1e-9, "{}", worst.sqnr_db);
    }

    #[test]
    fn shared_infinities_are_exact_and_only_they() {
        // An attention mask's −inf in both: no error there.
        let r = arr(&[1, 3], vec![f32::NEG_INFINITY, 1.0, 2.0]);
        let mut c = OutputComparison::new();
        c.update(&r, &r.clone());
        assert!(c.finish("scores").sqnr_db.is_infinite());
    }

    #[test]
    fn slices_are_judged_only_on_short_last_axes_with_signal() {
        // 300 entries on the last axis: a sequence, not quantities side by side.
        let long = arr(&[1, 300], (0..300).map(|i| i as f32).collect());
        let mut c = OutputComparison::new();
        c.update(&long, &long);
        assert!(c.finish("seq").worst_slice.is_none());
        // A slice that is zero in the reference has no SQNR to report.
        let r = arr(&[2, 2], vec![0.0, 1.0, 0.0, 2.0]);
        let d = arr(&[2, 2], vec![0.5, 1.0, 0.5, 2.0]);
        let mut c = OutputComparison::new();
        c.update(&r, &d);
        let w = c.finish("y").worst_slice.expect("one slice with signal");
        assert_eq!(w.index, 1);
    }

    #[test]
    fn argmax_takes_the_first_of_ties_and_never_nan() {
        assert_eq!(argmax([1.0f32, 3.0, 3.0].iter()), 1);
        assert_eq!(argmax([f32::NAN, 0.5, f32::NAN].iter()), 1);
        assert_eq!(argmax([].iter()), 0);
    }

    #[test]
    fn batches_stream_to_the_figures_of_one_pass() {
        let r = arr(&[4, 3], (0..12).map(|i| (i as f32 * 0.7).sin()).collect());
        let c = arr(&[4, 3], (0..12).map(|i| (i as f32 * 0.7).sin() + 0.01 * (i % 3) as f32).collect());
        let mut whole = OutputComparison::new();
        whole.update(&r, &c);
        let mut halves = OutputComparison::new();
        for rows in [0..2, 2..4] {
            let slice = |a: &ArrayD<f32>| a.slice(ndarray::s![rows.clone(), ..]).to_owned().into_dyn();
            halves.update(&slice(&r), &slice(&c));
        }
        let (a, b) = (whole.finish("y"), halves.finish("y"));
        assert!((a.sqnr_db - b.sqnr_db).abs() < 1e-9 && (a.cosine_mean - b.cosine_mean).abs() < 1e-12);
        assert_eq!((a.samples, a.top1_agreement, a.nn_agreement), (b.samples, b.top1_agreement, b.nn_agreement));
    }

    #[test]
    fn cosine_of_silence_is_one_and_of_silence_against_a_signal_zero() {
        assert_eq!(cosine(&[0.0, 0.0], &[0.0, 0.0]), 1.0);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
        assert!((cosine(&[1.0, 1.0], &[2.0, 2.0]) - 1.0).abs() < 1e-12);
        assert!((cosine(&[1.0, 0.0], &[-1.0, 0.0]) + 1.0).abs() < 1e-12);
    }
}
