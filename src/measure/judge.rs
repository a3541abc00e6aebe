//! One judge of a candidate model against the reference it was made from, on the same batches:
//! the noise power relative to the signal over every output value, and in the worst slice of the
//! axis that carries an output's quantities ([`slices_of`]: box coordinates beside class scores,
//! class probabilities — one output-wide figure can hide a collapsed slice). A candidate that turns a
//! finite reference value non-finite is infinitely noisy; values the reference itself holds
//! non-finite (an attention mask's −inf) are left out. The float fallback, fp16's weight check,
//! bias correction and static's speed trials all judge with it.

use crate::data::Array;
use crate::ir::{Dim, Model};
use crate::runtime::Session;
use crate::Result;

/// Entries of an output's axis judged apart (the same bound as `compare`'s worst slice).
pub const MAX_SLICES: usize = 256;

/// How an output is judged in slices: its `n` entries along `axis`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slicing {
    /// The axis whose entries are judged apart.
    pub axis: usize,
    /// Its length.
    pub n: usize,
}

impl Slicing {
    /// The slice holding the value at row-major position `flat` of an array of `shape`.
    pub fn of(&self, flat: usize, shape: &[usize]) -> usize {
        let stride: usize = shape.get(self.axis + 1..).map_or(1, |after| after.iter().product());
        (flat / stride.max(1)) % self.n.max(1)
    }
}

/// How an output of this shape is judged in slices — the one rule the fallback's judge and
/// `compare`'s worst slice share: its last axis when that has 2 to [`MAX_SLICES`] entries
/// (quantities side by side: class scores, boxes beside scores per anchor); past a longer last
/// axis, its axis 1 when `declared` (the model's declared dims) fixes it at 2 to [`MAX_SLICES`]
/// entries — a detector head `[N, 4 + classes, anchors]`, box coordinates in pixels beside class
/// scores in 0–1 (a symbolic axis 1 is a sequence, as a recogniser's time steps, judged whole);
/// else `None` (one whole).
pub fn slices_of(shape: &[usize], declared: Option<&[Dim]>) -> Option<Slicing> {
    let last = *shape.last()?;
    let fits = |n: usize| (2..=MAX_SLICES).contains(&n);
    if shape.len() >= 2 && fits(last) {
        return Some(Slicing { axis: shape.len() - 1, n: last });
    }
    let fixed_axis_1 = match declared?.get(1)? {
        Dim::Fixed(d) => usize::try_from(*d).ok().filter(|&d| fits(d) && shape.get(1) == Some(&d)),
        _ => None,
    };
    (shape.len() >= 3 && last > MAX_SLICES).then_some(fixed_axis_1).flatten().map(|n| Slicing { axis: 1, n })
}

/// Signal over noise in dB (infinite without noise).
pub fn sqnr_db(signal: f64, noise: f64) -> f64 {
    if noise == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (signal / noise).log10()
    }
}

/// A value in no slice (its output is judged whole).
const NO_SLICE: usize = usize::MAX;

/// Rows per run when a judge runs `model`: one at a time where convs outnumber MatMuls and Gemms,
/// `asked` otherwise. A conv computes image by image whatever the batch, and one image's
/// activations stay in the cache: ppocr_rec_v4 ran 17 ms a line one at a time, 23 ms in runs of 2
/// or 8, its outputs bit-identical; a transformer's MatMuls gain from rows run together
/// (minilm_l6: 10.6 ms a row one at a time, 10.0 in runs of 8).
pub fn rows_per_run(model: &Model, asked: usize) -> usize {
    let count = |ops: &[&str]| model.graph.nodes.iter().filter(|n| ops.contains(&n.op_type.as_str())).count();
    match count(&["Conv", "ConvTranspose"]) > count(&["MatMul", "Gemm"]) {
        true => 1,
        false => asked,
    }
}

/// The reference model's outputs on some batches, against which candidates are judged.
pub struct Reference {
    batches: Vec<Vec<Array>>,
    values: Vec<f64>,
    /// Each value's slice: entry i of output k's sliced axis is slice k·MAX_SLICES + i.
    slice_of: Vec<usize>,
    /// Signal power over the finite values.
    signal: f64,
    slice_signal: Vec<f64>,
}

/// A candidate's output noise power relative to the signal's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Noise {
    /// Over every output value (infinite when a finite value turned non-finite).
    pub whole: f64,
    /// In the noisiest slice (0 when no output is sliced).
    pub worst_slice: f64,
}

impl Noise {
    /// The whole output's SQNR in dB.
    pub fn sqnr_db(&self) -> f64 {
        -10.0 * self.whole.log10()
    }
}

impl Reference {
    /// The reference's outputs (run by `session`) on `batches`.
    pub fn new(session: &Session, batches: Vec<Vec<Array>>) -> Result<Reference> {
        let (values, slice_of) = outputs(session, &batches, None)?;
        Ok(Reference::of_outputs(batches, values, slice_of))
    }

    /// The reference's outputs (run by `session`) on `batches` and `candidate`'s noise against
    /// them, the two models run at once.
    pub fn with_candidate(
        session: &Session,
        candidate: &Session,
        batches: Vec<Vec<Array>>,
    ) -> Result<(Reference, Noise)> {
        let (mine, theirs) =
            crate::parallel::join(|| outputs(session, &batches, None), || outputs(candidate, &batches, None));
        let ((values, slice_of), (out, _)) = (mine?, theirs?);
        let reference = Reference::of_outputs(batches, values, slice_of);
        let noise = reference.noise_of(&out);
        Ok((reference, noise))
    }

    /// The reference made of its outputs on `batches`, flattened, and each value's slice.
    fn of_outputs(batches: Vec<Vec<Array>>, values: Vec<f64>, slice_of: Vec<usize>) -> Reference {
        let finite = |v: &&f64| v.is_finite();
        let signal = values.iter().filter(finite).map(|v| v * v).sum::<f64>();
        let slices = slice_of.iter().filter(|&&id| id != NO_SLICE).max().map_or(0, |&m| m + 1);
        let mut slice_signal = vec![0.0; slices];
        for (v, &id) in values.iter().zip(&slice_of) {
            if id != NO_SLICE && v.is_finite() {
                slice_signal[id] += v * v;
            }
        }
        Reference { batches, values, slice_of, signal, slice_signal }
    }

    /// The reference's outputs on `rows` rows spread over `bound` ([`Bound::spread_batches`]),
    /// in batches of `batch_size`.
    ///
    /// [`Bound::spread_batches`]: crate::data::Bound::spread_batches
    pub fn on_rows(session: &Session, bound: &crate::data::Bound, batch_size: usize, rows: usize) -> Result<Reference> {
        Reference::new(session, bound.spread_batches(batch_size, rows).collect::<Result<_>>()?)
    }

    /// On rows spread over `bound` that give `values` output values ([`Reference::rows_for_values`]);
    /// the reference and its row count.
    pub fn for_values(
        session: &Session,
        bound: &crate::data::Bound,
        batch_size: usize,
        values: usize,
        within: (usize, usize),
    ) -> Result<(Reference, usize)> {
        let rows = Reference::rows_for_values(session, bound, values, within)?;
        Ok((Reference::on_rows(session, bound, batch_size, rows)?, rows))
    }

    /// How many rows of `bound` give `values` output values of `session` (one row run to count
    /// them), within `min_rows..=max_rows` and the rows there are.
    pub fn rows_for_values(
        session: &Session,
        bound: &crate::data::Bound,
        values: usize,
        (min_rows, max_rows): (usize, usize),
    ) -> Result<usize> {
        let per_row = Reference::on_rows(session, bound, 1, 1)?.len().max(1);
        Ok(values.div_ceil(per_row).clamp(min_rows, max_rows).min(bound.rows))
    }

    /// The batches judged on.
    pub fn batches(&self) -> &[Vec<Array>] {
        &self.batches
    }

    /// Output values judged (every output of every batch).
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there is nothing to judge.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The candidate's (run by `session`) noise; `extra` is fed after each batch's inputs (a
    /// switched model's switches).
    pub fn noise(&self, session: &Session, extra: Option<Array>) -> Result<Noise> {
        let (out, _) = outputs(session, &self.batches, extra)?;
        Ok(self.noise_of(&out))
    }

    /// [`Reference::noise`] with the batches run in parallel, for a candidate judged alone (not
    /// one of several trials already filling the cores): its session is best made with
    /// [`Reference::sessions_in_parallel`] sessions ([`crate::runtime::SessionOptions::sessions`]).
    pub fn noise_in_parallel(&self, session: &Session) -> Result<Noise> {
        let (out, _) = outputs_in_parallel(session, &self.batches)?;
        Ok(self.noise_of(&out))
    }

    /// How many batches [`Reference::noise_in_parallel`] runs at once, each on a session of its
    /// own (a copy of the candidate's weights): one a thread, within
    /// [`crate::parallel::MODEL_RUNS_IN_FLIGHT`] and the batches there are.
    pub fn sessions_in_parallel(&self) -> usize {
        crate::parallel::threads().min(crate::parallel::MODEL_RUNS_IN_FLIGHT).min(self.batches.len()).max(1)
    }

    /// The noise of candidate values laid out as the reference's.
    fn noise_of(&self, out: &[f64]) -> Noise {
        let mut slice_noise = vec![0.0; self.slice_signal.len()];
        let mut whole = 0.0;
        for ((a, b), &id) in out.iter().zip(&self.values).zip(&self.slice_of) {
            if !b.is_finite() {
                continue;
            }
            let d = (a - b) * (a - b);
            whole += d;
            if id != NO_SLICE {
                slice_noise[id] += d;
            }
        }
        let worst_slice = slice_noise
            .iter()
            .zip(&self.slice_signal)
            .filter(|(_, s)| **s > 0.0)
            .map(|(n, s)| n / s)
            .fold(0.0, f64::max);
        // A finite value turned non-finite makes `whole` infinite or NaN: infinitely noisy.
        let whole = whole / self.signal.max(f64::MIN_POSITIVE);
        Noise { whole: if whole.is_nan() { f64::INFINITY } else { whole }, worst_slice }
    }
}

/// Every output value, flattened, over all batches (f64 for the sums), and each value's slice;
/// `extra`, when given, fed after each batch's inputs.
fn outputs(session: &Session, batches: &[Vec<Array>], extra: Option<Array>) -> Result<(Vec<f64>, Vec<usize>)> {
    joined(batches.iter().map(|b| batch_outputs(session, b, extra.as_ref())).collect())
}

/// [`outputs`] with the batches run in parallel, each on a session of `session`'s pool.
fn outputs_in_parallel(session: &Session, batches: &[Vec<Array>]) -> Result<(Vec<f64>, Vec<usize>)> {
    let in_flight = crate::parallel::MODEL_RUNS_IN_FLIGHT;
    joined(crate::parallel::map_upto(in_flight, batches, |b| batch_outputs(session, b, None)))
}

/// Each batch's values and slices, one after the other in batch order.
fn joined(per_batch: Vec<Result<(Vec<f64>, Vec<usize>)>>) -> Result<(Vec<f64>, Vec<usize>)> {
    let (mut all, mut slice_of) = (vec![], vec![]);
    for b in per_batch {
        let (values, slices) = b?;
        all.extend(values);
        slice_of.extend(slices);
    }
    Ok((all, slice_of))
}

/// One batch's output values, flattened, and each value's slice.
fn batch_outputs(session: &Session, batch: &[Array], extra: Option<&Array>) -> Result<(Vec<f64>, Vec<usize>)> {
    let (mut all, mut slice_of) = (vec![], vec![]);
    let mut feed = batch.to_vec();
    feed.extend(extra.cloned());
    for (k, o) in session.run(&feed)?.into_iter().enumerate() {
        let slicing = slices_of(o.shape(), session.declared.get(k).and_then(|d| d.as_deref()));
        let values = o.to_f32();
        let shape = o.shape();
        slice_of.extend((0..values.len()).map(|i| slicing.map_or(NO_SLICE, |s| k * MAX_SLICES + s.of(i, shape))));
        all.extend(values.iter().map(|&v| v as f64));
    }
    Ok((all, slice_of))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv_models_are_judged_a_row_a_run_transformers_in_the_runs_asked() {
        use crate::ir::testing::{model, node};
        // Three layers x → a → b → y of the given ops.
        let layers = |ops: [&str; 3]| {
            let names = ["x", "a", "b", "y"];
            let nodes = (0..3).map(|k| node(ops[k], &[names[k], "w"], names[k + 1], &[])).collect();
            model(nodes, vec![], &[1, 3, 8, 8], &["y"], 17)
        };
        let (convs, attention) = (layers(["Conv", "Conv", "MatMul"]), layers(["Conv", "MatMul", "MatMul"]));
        assert_eq!(rows_per_run(&convs, 8), 1);
        assert_eq!(rows_per_run(&attention, 8), 8);
        assert_eq!(rows_per_run(&model(vec![], vec![], &[1, 4], &["x"], 17), 8), 8);
    }

    fn reference(values: Vec<f64>, slice_of: Vec<usize>) -> Reference {
        let signal = values.iter().filter(|v| v.is_finite()).map(|v| v * v).sum();
        let mut slice_signal = vec![0.0; slice_of.iter().filter(|&&i| i != NO_SLICE).max().map_or(0, |m| m + 1)];
        for (v, &i) in values.iter().zip(&slice_of) {
            if i != NO_SLICE && v.is_finite() {
                slice_signal[i] += v * v;
            }
        }
        Reference { batches: vec![], values, slice_of, signal, slice_signal }
    }

    #[test]
    fn noise_is_relative_to_the_signal_whole_and_per_slice() {
        // Boxes (×100) beside a score; the candidate loses the score entirely.
        let r = reference(vec![300.0, 400.0, 0.9, 250.0, 380.0, 0.2], vec![0, 1, 2, 0, 1, 2]);
        let n = r.noise_of(&[300.0, 400.0, 0.0, 250.0, 380.0, 0.0]);
        assert!(n.whole < 1e-5 && n.sqnr_db() > 50.0, "{n:?}");
        assert!((n.worst_slice - 1.0).abs() < 1e-12, "the score slice lost all its signal: {n:?}");
    }

    #[test]
    fn quantities_side_by_side_are_sliced_and_sequences_are_not() {
        let last = |n| Some(Slicing { axis: 1, n });
        assert_eq!(slices_of(&[8, 84], None), last(84), "class scores");
        assert_eq!(slices_of(&[1, 100, 6], None), Some(Slicing { axis: 2, n: 6 }), "boxes and scores per anchor");
        assert_eq!(slices_of(&[8, 6625], None), None, "a vocabulary is judged whole");
        assert_eq!((slices_of(&[8], None), slices_of(&[8, 1], None)), (None, None));
        // A detector head [N, 4 + classes, anchors]: the quantities are on its fixed axis 1.
        let head = [Dim::Symbolic("N".into()), Dim::Fixed(84), Dim::Fixed(8400)];
        assert_eq!(slices_of(&[1, 84, 8400], Some(&head)), last(84));
        // A recogniser's [N, T, vocabulary]: T is symbolic, a sequence judged whole.
        let rec = [Dim::Symbolic("N".into()), Dim::Symbolic("T".into()), Dim::Fixed(6625)];
        assert_eq!(slices_of(&[1, 40, 6625], Some(&rec)), None);
        assert_eq!(slices_of(&[1, 84, 8400], None), None, "nothing declared: judged whole");
        // Entry 3 of axis 1 of a [2, 5, 7] array: every value whose middle index is 3.
        let s = Slicing { axis: 1, n: 5 };
        assert_eq!((s.of(3 * 7, &[2, 5, 7]), s.of(35 + 3 * 7 + 6, &[2, 5, 7]), s.of(4 * 7 - 1, &[2, 5, 7])), (3, 3, 3));
        assert_eq!(sqnr_db(100.0, 1.0), 20.0);
        assert_eq!(sqnr_db(1.0, 0.0), f64::INFINITY);
    }

    #[test]
    fn a_value_turned_non_finite_is_infinitely_noisy_and_a_shared_mask_is_exact() {
        let r = reference(vec![f64::NEG_INFINITY, 1.0, 2.0], vec![NO_SLICE; 3]);
        assert_eq!(r.noise_of(&[f64::NEG_INFINITY, 1.0, 2.0]).whole, 0.0, "the mask's −inf is left out");
        assert_eq!(r.noise_of(&[f64::NEG_INFINITY, f64::NAN, 2.0]).whole, f64::INFINITY);
        assert_eq!(r.noise_of(&[f64::NEG_INFINITY, 1.0, f64::INFINITY]).whole, f64::INFINITY);
    }
}
