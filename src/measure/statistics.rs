//! The statistics passes ask [`super::collect`] for: each tensor's extremes and count
//! ([`Extremes`]) and its largest and smallest values, as many as a rank from either end needs
//! ([`Ranked`], the exact percentile without a histogram) — both reduced inside the graph — and
//! whole tensors for a visitor ([`Captured`]: histograms, Gram matrices, per-channel sums).

use super::collect::{node, Reduction, Statistic};
use crate::data::{Array, Bound};
use crate::ir::{Attribute, Node, Tensor};
use crate::Result;
use ndarray::ArrayD;
use std::collections::{BTreeMap, BTreeSet};

/// Whole tensors handed to a visitor, batch by batch: `visit(index in names, value if float32)`.
pub struct Captured<'a> {
    names: Vec<String>,
    feeds: BTreeSet<String>,
    #[allow(clippy::type_complexity)]
    visit: Box<dyn FnMut(usize, Option<&ArrayD<f32>>) -> Result<()> + 'a>,
}

impl<'a> Captured<'a> {
    /// `names` (graph inputs among `feeds`, or intermediates) for `visit`.
    pub fn new(
        names: &[String],
        feeds: &[String],
        visit: impl FnMut(usize, Option<&ArrayD<f32>>) -> Result<()> + 'a,
    ) -> Self {
        Captured { names: names.to_vec(), feeds: feeds.iter().cloned().collect(), visit: Box::new(visit) }
    }
}

impl Statistic for Captured<'_> {
    fn tensors(&self) -> Vec<String> {
        let mut seen = BTreeSet::new();
        self.names.iter().filter(|n| seen.insert(*n)).cloned().collect()
    }

    fn reduce(&self, t: &str) -> Reduction {
        // A graph input is handed back as a copy: a runtime returns only what nodes make.
        match self.feeds.contains(t) {
            true => Reduction {
                nodes: vec![node("Identity", &[t], format!("{t}_prunq_fed"), vec![])],
                outputs: vec![format!("{t}_prunq_fed")],
            },
            false => Reduction { nodes: vec![], outputs: vec![t.to_string()] },
        }
    }

    fn visit(&mut self, t: &str, reduced: &[Array]) -> Result<()> {
        let value = match reduced.first() {
            Some(Array::F32(x)) => Some(x),
            _ => None,
        };
        for i in (0..self.names.len()).filter(|&i| self.names[i] == t) {
            (self.visit)(i, value)?;
        }
        Ok(())
    }

    fn whole_tensors(&self) -> bool {
        true
    }
}

/// Each tensor's smallest and largest value and its number of values over the rows, by
/// ReduceMin, ReduceMax and Size nodes.
#[derive(Default)]
pub struct Extremes {
    tensors: Vec<String>,
    /// Float tensors' smallest and largest value (NaN when any extreme was NaN).
    pub ranges: BTreeMap<String, (f32, f32)>,
    /// How many values each float tensor held over the rows.
    pub counts: BTreeMap<String, u64>,
    /// Tensors that turned out not to be float (shapes, indices).
    pub not_float: BTreeSet<String>,
}

impl Extremes {
    /// The statistic of `tensors`, nothing seen yet.
    pub fn new(tensors: &[String]) -> Self {
        Extremes { tensors: tensors.to_vec(), ..Default::default() }
    }

    /// Keeps only the float tensors whose extremes are finite in `ranges`; returns the float
    /// tensors dropped (they held an infinity or NaN).
    pub fn keep_finite(&mut self) -> BTreeSet<String> {
        let not_float = &self.not_float;
        let finite = |(lo, hi): &(f32, f32)| lo.is_finite() && hi.is_finite();
        let non_finite: BTreeSet<String> =
            self.ranges.iter().filter(|(t, r)| !finite(r) && !not_float.contains(*t)).map(|(t, _)| t.clone()).collect();
        self.ranges.retain(|t, r| finite(r) && !not_float.contains(t));
        non_finite
    }
}

impl Statistic for Extremes {
    fn tensors(&self) -> Vec<String> {
        self.tensors.clone()
    }

    fn reduce(&self, t: &str) -> Reduction {
        let nodes = [("ReduceMin", true), ("ReduceMax", true), ("Size", false)].map(|(op, attr)| {
            let keepdims = if attr { vec![Attribute::int("keepdims", 0)] } else { vec![] };
            node(op, &[t], format!("{t}_prunq_{op}"), keepdims)
        });
        let outputs = nodes.iter().map(|n| n.outputs[0].clone()).collect();
        Reduction { nodes: nodes.into(), outputs }
    }

    fn visit(&mut self, t: &str, reduced: &[Array]) -> Result<()> {
        let (Some(Array::F32(lo)), Some(Array::F32(hi)), Some(Array::I64(n))) =
            (reduced.first(), reduced.get(1), reduced.get(2))
        else {
            self.not_float.insert(t.to_string());
            return Ok(());
        };
        let (lo, hi) = (lo.iter().copied().fold(f32::NAN, f32::min), hi.iter().copied().fold(f32::NAN, f32::max));
        let r = self.ranges.entry(t.to_string()).or_insert((lo, hi));
        // NaN wins here on purpose: any non-finite extreme takes the tensor out of `ranges`.
        r.0 = if r.0.is_nan() || lo.is_nan() { f32::NAN } else { r.0.min(lo) };
        r.1 = if r.1.is_nan() || hi.is_nan() { f32::NAN } else { r.1.max(hi) };
        *self.counts.entry(t.to_string()).or_default() += n.iter().sum::<i64>().max(0) as u64;
        Ok(())
    }
}

/// Each tensor's largest and smallest finite values over the rows, at least as many as the
/// value ranked `share · n` from either end needs (n: the tensor's values over all the rows,
/// [`Extremes::counts`]). Each batch's TopK nodes keep k = ⌊2 · share · size · rows / rows in
/// the batch⌋ + 1 of the batch's `size` values, worked out inside the graph: exactly the rank
/// plus one for a tensor that grows with the batch, and still enough for one that does not
/// (a position table), whatever the last batch's rows — so the extremes, counts and ranked
/// values come from one run over the data.
pub struct Ranked {
    tensors: Vec<String>,
    share: f64,
    rows: usize,
    /// A fed input and its batch axis: its shape tells the rows in each batch.
    batch_input: Option<(String, usize)>,
    /// TopK takes `largest = 0` (opset 11); before, the smallest are the largest negated.
    smallest_by_top_k: bool,
    /// Per tensor: its largest values (descending) and its smallest values negated (descending).
    tails: BTreeMap<String, (Vec<f32>, Vec<f32>)>,
}

impl Ranked {
    /// The statistic of `tensors` in a model of ONNX opset `opset` (10 or later: TopK's `k` is
    /// a tensor) over the first `rows` rows of `bound`, for ranks up to `share` of the values.
    pub fn new(tensors: &[String], share: f64, rows: usize, bound: &Bound, opset: i64) -> Self {
        let batch_input = bound.names.iter().zip(&bound.axes).find_map(|(n, a)| Some((n.clone(), (*a)?)));
        Ranked {
            tensors: tensors.to_vec(),
            share: share.max(0.0),
            rows,
            batch_input,
            smallest_by_top_k: opset >= 11,
            tails: BTreeMap::new(),
        }
    }

    /// The values of `t` ranked `r` from the top and from the bottom (0: the extremes): the
    /// last kept when fewer were seen; `None` when none were.
    pub fn ranked(&self, t: &str, r: usize) -> Option<(f32, f32)> {
        let (high, low) = self.tails.get(t)?;
        let (&hi, &neg_lo) = (high.get(r).or(high.last())?, low.get(r).or(low.last())?);
        Some((hi, -neg_lo))
    }
}

impl Statistic for Ranked {
    fn tensors(&self) -> Vec<String> {
        self.tensors.clone()
    }

    fn shared(&self) -> (Vec<Tensor>, Vec<Node>) {
        let scalar = |name: &str, v: f32| Tensor::from_array(name, &ndarray::arr0(v).into_dyn());
        let ints = |name: &str, v: &[i64]| Tensor::from_array(name, &ndarray::arr1(v).into_dyn());
        let mut constants = vec![
            ints("prunq_flat", &[-1]),
            ints("prunq_one", &[1]),
            scalar("prunq_one_f", 1.0),
            scalar("prunq_twice_share_of_rows", (2.0 * self.share * self.rows as f64) as f32),
        ];
        let Some((input, axis)) = &self.batch_input else {
            constants.push(scalar("prunq_rows_in_batch", 1.0));
            return (constants, vec![]);
        };
        constants.push(Tensor::from_array("prunq_batch_axis", &ndarray::arr0(*axis as i64).into_dyn()));
        let nodes = vec![
            node("Shape", &[input], "prunq_fed_shape".into(), vec![]),
            node("Gather", &["prunq_fed_shape", "prunq_batch_axis"], "prunq_rows_i".into(), vec![]),
            node("Cast", &["prunq_rows_i"], "prunq_rows_in_batch".into(), vec![Attribute::int("to", 1)]),
        ];
        (constants, nodes)
    }

    fn reduce(&self, t: &str) -> Reduction {
        let n = |what: &str| format!("{t}_prunq_{what}");
        let cast = |to: i64| vec![Attribute::int("to", to)];
        let top_k = |input: &str, what: &str, largest: Option<i64>| Node {
            outputs: vec![n(what), n(&format!("{what}_at"))],
            ..node(
                "TopK",
                &[input, &n("k")],
                n(what),
                largest.map(|l| Attribute::int("largest", l)).into_iter().collect(),
            )
        };
        let mut nodes = vec![
            node("Reshape", &[t, "prunq_flat"], n("flat"), vec![]),
            node("Size", &[t], n("size"), vec![]),
            node("Cast", &[&n("size")], n("size_f"), cast(1)),
            node("Mul", &[&n("size_f"), "prunq_twice_share_of_rows"], n("wanted"), vec![]),
            node("Div", &[&n("wanted"), "prunq_rows_in_batch"], n("per_batch"), vec![]),
            node("Floor", &[&n("per_batch")], n("floor"), vec![]),
            node("Add", &[&n("floor"), "prunq_one_f"], n("k_f"), vec![]),
            // Float Min: an int64 Min needs opset 12.
            node("Min", &[&n("k_f"), &n("size_f")], n("k_at_most"), vec![]),
            node("Cast", &[&n("k_at_most")], n("k_i"), cast(7)),
            node("Reshape", &[&n("k_i"), "prunq_one"], n("k"), vec![]),
            top_k(&n("flat"), "high", None),
        ];
        if self.smallest_by_top_k {
            nodes.push(top_k(&n("flat"), "low", Some(0)));
        } else {
            nodes.push(node("Neg", &[&n("flat")], n("negated"), vec![]));
            nodes.push(top_k(&n("negated"), "low", None));
        }
        Reduction { nodes, outputs: vec![n("high"), n("low")] }
    }

    fn visit(&mut self, t: &str, reduced: &[Array]) -> Result<()> {
        let (Some(Array::F32(high)), Some(Array::F32(low))) = (reduced.first(), reduced.get(1)) else { return Ok(()) };
        let negate = if self.smallest_by_top_k { -1.0 } else { 1.0 };
        let (h, l) = self.tails.entry(t.to_string()).or_default();
        for (kept, new, sign) in [(h, high, 1.0), (l, low, negate)] {
            // Every batch keeps at least the rank plus one: the longest list is enough.
            let keep = kept.len().max(new.len());
            kept.extend(new.iter().map(|v| sign * v).filter(|v| v.is_finite()));
            kept.sort_unstable_by(|a, b| b.total_cmp(a));
            kept.truncate(keep);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Dataset;
    use crate::ir::testing::{ints, model, node as op, tensor, wavy};
    use crate::ir::{DataType, Dim, ValueInfo};
    use crate::runtime::feed_inputs;

    /// `y = x · k` (grows with the batch) and `m`, the column maxima of the batch (does not).
    fn two_kinds(opset: i64) -> crate::ir::Model {
        let nodes = vec![
            op("Mul", &["x", "k"], "y", &[]),
            op("ReduceMax", &["x"], "m", &[("axes", ints(&[0])), ("keepdims", crate::ir::testing::int(0))]),
        ];
        let mut m = model(nodes, vec![tensor("k", &[6], |i| 1.0 + i as f32)], &[1, 6], &["y", "m"], opset);
        m.graph.inputs[0] =
            ValueInfo::tensor("x", Some(DataType::FLOAT), Some(&[Dim::Symbolic("N".into()), Dim::Fixed(6)]));
        m
    }

    #[test]
    fn one_run_gives_extremes_counts_and_ranked_values_as_sorting_every_value_does() {
        // 11 rows in batches of 4, 4 and 3: the last batch is short.
        let x = ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[11, 6]), |i| wavy(i[0] * 6 + i[1]));
        let data = Dataset::from_arrays("x.npz", [("x".to_string(), Array::F32(x.clone()))].into());
        let k: Vec<f32> = (0..6).map(|i| 1.0 + i as f32).collect();
        let y: Vec<f32> =
            x.outer_iter().flat_map(|r| r.iter().zip(&k).map(|(a, b)| a * b).collect::<Vec<_>>()).collect();
        let m: Vec<f32> = [0..4, 4..8, 8..11]
            .into_iter()
            .flat_map(|rows| (0..6).map(move |c| rows.clone().map(|r| wavy(r * 6 + c)).fold(f32::MIN, f32::max)))
            .collect();
        for opset in [10, 13] {
            let model = two_kinds(opset);
            let bound = data.bind(&feed_inputs(&model), None).unwrap();
            let tensors = vec!["y".to_string(), "m".to_string()];
            let (mut extremes, mut ranked) = (Extremes::new(&tensors), Ranked::new(&tensors, 0.2, 11, &bound, opset));
            let stats: &mut [&mut dyn Statistic] = &mut [&mut extremes, &mut ranked];
            super::super::collect(&model, &bound, super::super::Rows::first(11, 4), stats, &super::super::Silent)
                .unwrap();
            for (t, values) in [("y", &y), ("m", &m)] {
                let mut sorted = values.clone();
                sorted.sort_by(|a, b| b.total_cmp(a));
                let n = sorted.len();
                assert_eq!(extremes.counts[t], n as u64, "{t} at opset {opset}");
                assert_eq!(extremes.ranges[t], (sorted[n - 1], sorted[0]), "{t}");
                let r = (0.2 * n as f64).floor() as usize;
                assert_eq!(ranked.ranked(t, r), Some((sorted[r], sorted[n - 1 - r])), "{t} at opset {opset}");
            }
        }
    }
}
