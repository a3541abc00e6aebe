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

    fn fed_as_is(&self, t: &str) -> bool {
        self.feeds.contains(t)
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
    /// Reduce over [`Ranked`]'s per-chunk extremes instead of the whole tensor (the two run in
    /// one collection, `Ranked` first): the same minimum and maximum for two passes fewer over
    /// every activation (minilm_l6's calibration run: 23.5 % of its time in ReduceMin/ReduceMax).
    over_chunks: bool,
}

impl Extremes {
    /// The statistic of `tensors`, nothing seen yet.
    pub fn new(tensors: &[String]) -> Self {
        Extremes { tensors: tensors.to_vec(), ..Default::default() }
    }

    /// The statistic of `tensors`, collected beside `ranked` (placed after it in the
    /// collection), from its per-chunk extremes where it reduces chunks.
    pub fn beside(tensors: &[String], ranked: &Ranked) -> Self {
        Extremes { over_chunks: ranked.smallest_by_top_k, ..Extremes::new(tensors) }
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
        let (low, high) = match self.over_chunks {
            true => (Ranked::per_chunk(t, "low"), Ranked::per_chunk(t, "high")),
            false => (t.to_string(), t.to_string()),
        };
        let mut nodes: Vec<Node> = [("ReduceMin", low.as_str()), ("ReduceMax", high.as_str())]
            .map(|(op, input)| node(op, &[input], format!("{t}_prunq_{op}"), vec![Attribute::int("keepdims", 0)]))
            .into();
        // Beside the ranking, its own Size of the tensor is the count (one node fewer a tensor).
        let size = match self.over_chunks {
            true => Ranked::size(t),
            false => {
                nodes.push(node("Size", &[t], format!("{t}_prunq_Size"), vec![]));
                format!("{t}_prunq_Size")
            }
        };
        let outputs = nodes[..2].iter().map(|n| n.outputs[0].clone()).chain([size]).collect();
        Reduction { nodes, outputs }
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

/// Values per chunk at most when ranking (see `Ranked::reduce`): about √(values / k) for
/// minilm's and ppocr_rec's activations in batches of 8, where the chunks' extremes and the
/// gathered chunks take about as long to rank.
const CHUNK: i64 = 32;

/// The greatest common divisor (`gcd(a, 0) = a`).
fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// `n("k")` (with `n("k_at_most")` as a float) from `n("size")`, the values in a batch: the rank
/// plus one, and one for float rounding, at most every value.
fn k_of_size(n: &dyn Fn(&str) -> String) -> Vec<Node> {
    let cast = |to: i64| vec![Attribute::int("to", to)];
    vec![
        node("Cast", &[&n("size")], n("size_f"), cast(1)),
        node("Mul", &[&n("size_f"), "prunq_share_of_batches"], n("wanted"), vec![]),
        node("Floor", &[&n("wanted")], n("floor"), vec![]),
        node("Add", &[&n("floor"), "prunq_two_f"], n("k_f"), vec![]),
        // Float Min: an int64 Min needs opset 12.
        node("Min", &[&n("k_f"), &n("size_f")], n("k_at_most"), vec![]),
        node("Cast", &[&n("k_at_most")], n("k"), cast(7)),
    ]
}

/// [`k_of_size`], then `n("chunk")` — the values a chunk holds, gcd(size, CHUNK) — and
/// `n("chunk_shape")`, the shape that cuts the tensor into chunks.
fn rank_and_chunks(n: &dyn Fn(&str) -> String) -> Vec<Node> {
    let mut nodes = k_of_size(n);
    nodes.extend([
        node("Mod", &[&n("size"), "prunq_chunk"], n("tail"), vec![]),
        node("Gather", &["prunq_chunk_gcd", &n("tail")], n("chunk"), vec![Attribute::int("axis", 0)]),
        Node {
            attributes: vec![Attribute::int("axis", 0)],
            ..node("Concat", &["prunq_flat", &n("chunk")], n("chunk_shape"), vec![])
        },
    ]);
    nodes
}

/// `n("chunk_k")`: as many chunks as values wanted, or every chunk (`n("chunk_count")`).
fn chunks_wanted(n: &dyn Fn(&str) -> String) -> Vec<Node> {
    let cast = |to: i64| vec![Attribute::int("to", to)];
    vec![
        node("Cast", &[&n("chunk_count")], n("chunk_count_f"), cast(1)),
        node("Min", &[&n("k_at_most"), &n("chunk_count_f")], n("chunk_k_f"), vec![]),
        node("Cast", &[&n("chunk_k_f")], n("chunk_k"), cast(7)),
    ]
}

/// Each tensor's largest and smallest finite values over the rows, at least as many as the
/// value ranked `share · n` from either end needs (n: the tensor's values over all the rows,
/// [`Extremes::counts`]). Each batch's TopK nodes keep k = ⌊share · size · ⌈rows / rows in the
/// batch⌉⌋ + 2 of the batch's `size` values, worked out inside the graph: the rank plus one
/// (and one for float rounding) whether the tensor grows with the batch or not (a position
/// table), whatever the last batch's rows — so the extremes, counts and ranked values come from
/// one run over the data.
pub struct Ranked {
    tensors: Vec<String>,
    share: f64,
    rows: usize,
    /// A fed input and its batch axis: its shape tells the rows in each batch.
    batch_input: Option<(String, usize)>,
    /// TopK takes `largest = 0` (opset 11): the values are then ranked within the chunks that
    /// hold the extremes (see `reduce`); before, over the whole tensor, the smallest as the
    /// largest negated.
    smallest_by_top_k: bool,
    /// ReduceMax takes its axes as an input (opset 18) rather than an attribute.
    axes_as_input: bool,
    /// Per tensor: its largest values (descending) and its smallest values negated (descending).
    tails: BTreeMap<String, (Vec<f32>, Vec<f32>)>,
    /// Tensors whose size is `a · rows + b` for every batch (see [`Ranked::sized_by_rows`]), each
    /// with the index of its `(a, b)` in `sizes`: their rank and chunking are worked out once per
    /// size, beside the batch's rows, rather than a tensor at a time.
    by_size: BTreeMap<String, usize>,
    sizes: Vec<(i64, i64)>,
    /// Tensors whose size in a batch was not the one `by_size` gave: the statistic is wrong for
    /// them, and the collection is redone without `by_size`.
    pub sizes_disagree: BTreeSet<String>,
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
            axes_as_input: opset >= 18,
            tails: BTreeMap::new(),
            by_size: BTreeMap::new(),
            sizes: vec![],
            sizes_disagree: BTreeSet::new(),
        }
    }

    /// The same statistic, with the tensors whose size tract's type analysis gives as one line
    /// `a · rows + b` (at 1, 2 and 3 rows) ranked and chunked from one computation per size: the
    /// dozen scalar nodes a tensor needs for its `k` and its chunks otherwise (minilm_l6's
    /// calibration copy: 9 000 nodes, 1 s for ONNX Runtime to load). Each batch checks the size
    /// against the tensor's own `Size` (see [`Ranked::sizes_disagree`]).
    pub fn sized_by_rows(mut self, model: &crate::ir::Model, bound: &Bound) -> Self {
        if self.batch_input.is_none() || !self.smallest_by_top_k {
            return self;
        }
        let elements_at = |rows: usize| crate::analysis::infer_types(model, &bound.shapes_for_rows(rows)).ok();
        let (Some(one), Some(two), Some(three)) = (elements_at(1), elements_at(2), elements_at(3)) else { return self };
        let count = |types: &BTreeMap<String, (crate::ir::DataType, Vec<usize>)>, t: &str| {
            types.get(t).map(|(_, dims)| dims.iter().product::<usize>() as i64)
        };
        for t in &self.tensors {
            let (Some(n1), Some(n2), Some(n3)) = (count(&one, t), count(&two, t), count(&three, t)) else { continue };
            let (a, b) = (n2 - n1, n1 - (n2 - n1));
            if n3 != 3 * a + b {
                continue;
            }
            let at = match self.sizes.iter().position(|&s| s == (a, b)) {
                Some(at) => at,
                None => {
                    self.sizes.push((a, b));
                    self.sizes.len() - 1
                }
            };
            self.by_size.insert(t.clone(), at);
        }
        self
    }

    /// Whether some tensors share their rank's and chunks' computation (see [`Ranked::sized_by_rows`]).
    pub fn shares_sizes(&self) -> bool {
        !self.by_size.is_empty()
    }

    /// The names of size `at`'s tensors (see [`Ranked::sized_by_rows`]).
    fn of_size(at: usize, what: &str) -> String {
        format!("prunq_size{at}_{what}")
    }

    /// The tensor holding each chunk's largest (`side` "high") or smallest ("low") value of `t`.
    fn per_chunk(t: &str, side: &str) -> String {
        format!("{t}_prunq_{side}_per_chunk")
    }

    /// The tensor holding the number of values of `t` in a batch.
    fn size(t: &str) -> String {
        format!("{t}_prunq_size")
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
            ints("prunq_chunk", &[CHUNK]),
            ints("prunq_chunk_gcd", &(0..CHUNK).map(|m| gcd(CHUNK, m)).collect::<Vec<_>>()),
            ints("prunq_chunk_axis", &[1]),
            scalar("prunq_two_f", 2.0),
        ];
        let share = |n: f64| (self.share * n) as f32;
        let Some((input, axis)) = &self.batch_input else {
            // Each row is a batch.
            constants.push(Tensor::from_array(
                "prunq_share_of_batches",
                &ndarray::arr1(&[share(self.rows as f64)]).into_dyn(),
            ));
            return (constants, vec![]);
        };
        constants.extend([
            Tensor::from_array("prunq_batch_axis", &ndarray::arr0(*axis as i64).into_dyn()),
            Tensor::from_array("prunq_rows_f", &ndarray::arr1(&[self.rows as f32]).into_dyn()),
            Tensor::from_array("prunq_share", &ndarray::arr1(&[share(1.0)]).into_dyn()),
        ]);
        let mut nodes = vec![
            node("Shape", &[input], "prunq_fed_shape".into(), vec![]),
            node("Gather", &["prunq_fed_shape", "prunq_batch_axis"], "prunq_rows_i".into(), vec![]),
            node("Cast", &["prunq_rows_i"], "prunq_rows_in_batch".into(), vec![Attribute::int("to", 1)]),
            node("Div", &["prunq_rows_f", "prunq_rows_in_batch"], "prunq_batches_f".into(), vec![]),
            node("Ceil", &["prunq_batches_f"], "prunq_batches".into(), vec![]),
            node("Mul", &["prunq_batches", "prunq_share"], "prunq_share_of_batches".into(), vec![]),
        ];
        // Each size shared by tensors: a · rows + b values, its k and its chunking.
        for (at, &(a, b)) in self.sizes.iter().enumerate() {
            let n = |what: &str| Ranked::of_size(at, what);
            constants.push(Tensor::from_array(n("a"), &ndarray::arr0(a).into_dyn()));
            constants.push(Tensor::from_array(n("b"), &ndarray::arr0(b).into_dyn()));
            nodes.push(node("Mul", &["prunq_rows_i", &n("a")], n("by_rows"), vec![]));
            nodes.push(node("Add", &[&n("by_rows"), &n("b")], n("size"), vec![]));
            nodes.extend(rank_and_chunks(&n));
            // As many chunks as values wanted, or every chunk: size / chunk of them.
            nodes.push(node("Div", &[&n("size"), &n("chunk")], n("chunk_count"), vec![]));
            nodes.extend(chunks_wanted(&n));
        }
        (constants, nodes)
    }

    fn reduce(&self, t: &str) -> Reduction {
        let n = |what: &str| format!("{t}_prunq_{what}");
        // TopK(input, k) → `what` and its indices `what_at`.
        let top_k = |input: &str, k: &str, what: &str, largest: Option<i64>| Node {
            outputs: vec![n(what), n(&format!("{what}_at"))],
            ..node("TopK", &[input, k], n(what), largest.map(|l| Attribute::int("largest", l)).into_iter().collect())
        };
        let mut nodes = vec![node("Size", &[t], Ranked::size(t), vec![])];
        if !self.smallest_by_top_k {
            nodes.extend(k_of_size(&n));
            nodes.push(node("Reshape", &[t, "prunq_flat"], n("flat"), vec![]));
            nodes.push(top_k(&n("flat"), &n("k"), "high", None));
            nodes.push(node("Neg", &[&n("flat")], n("negated"), vec![]));
            nodes.push(top_k(&n("negated"), &n("k"), "low", None));
            return Reduction { nodes, outputs: vec![n("high"), n("low")] };
        }
        // One TopK over millions of values is most of a calibration run (ppocr_rec: 4.4 of
        // 6.1 s). The k largest values lie in the k chunks with the largest maxima — a chunk
        // holding one of them has a maximum at least as large, and k chunks that beat it hold
        // k values as large — so each side ranks the chunks' extremes, gathers those chunks and
        // ranks their values: the same values for a fraction of the work. A chunk is as many
        // values as divide the tensor's, up to CHUNK (gcd(size, CHUNK), looked up by size mod
        // CHUNK), so that it is a reshape, never a copy.
        let sized = self.by_size.get(t).map(|&at| move |what: &str| Ranked::of_size(at, what));
        let shared = |what: &str| match &sized {
            Some(of_size) => of_size(what),
            None => n(what),
        };
        if sized.is_none() {
            nodes.extend(rank_and_chunks(&n));
        }
        nodes.push(node("Reshape", &[t, &shared("chunk_shape")], n("chunks"), vec![]));
        let sides = [("high", "ReduceMax", 1), ("low", "ReduceMin", 0)];
        for (side, reduce, _) in sides {
            let mut per_chunk =
                node(reduce, &[&n("chunks")], Ranked::per_chunk(t, side), vec![Attribute::int("keepdims", 0)]);
            match self.axes_as_input {
                true => per_chunk.inputs.push("prunq_chunk_axis".into()),
                false => per_chunk.attributes.push(Attribute::new("axes", crate::ir::AttrValue::Ints(vec![1]))),
            }
            nodes.push(per_chunk);
        }
        if sized.is_none() {
            nodes.push(node("Shape", &[&n("high_per_chunk")], n("chunk_count"), vec![]));
            nodes.extend(chunks_wanted(&n));
        }
        for (side, _, largest) in sides {
            let at = |what: &str| n(&format!("{side}_{what}"));
            nodes.extend([
                top_k(&at("per_chunk"), &shared("chunk_k"), &format!("{side}_picked"), Some(largest)),
                node("Gather", &[&n("chunks"), &at("picked_at")], at("gathered"), vec![Attribute::int("axis", 0)]),
                node("Reshape", &[&at("gathered"), "prunq_flat"], at("flat"), vec![]),
                top_k(&at("flat"), &shared("k"), side, Some(largest)),
            ]);
        }
        let mut outputs = vec![n("high"), n("low")];
        if sized.is_some() {
            // The size shared with others, beside the tensor's own (see `sizes_disagree`).
            outputs.extend([Ranked::size(t), shared("size")]);
        }
        Reduction { nodes, outputs }
    }

    fn visit(&mut self, t: &str, reduced: &[Array]) -> Result<()> {
        if let (Some(Array::I64(own)), Some(Array::I64(shared))) = (reduced.get(2), reduced.get(3)) {
            if own != shared {
                self.sizes_disagree.insert(t.to_string());
            }
        }
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

    /// `y = x · k` (grows with the batch), `m`, the maxima over the batch (does not), and `s`,
    /// the batch's maximum (a scalar), for `x` of `[N, 4, 16]`.
    fn three_kinds(opset: i64) -> crate::ir::Model {
        let over_batch = match opset >= 18 {
            true => op("ReduceMax", &["x", "batch_axis"], "m", &[("keepdims", crate::ir::testing::int(0))]),
            false => op("ReduceMax", &["x"], "m", &[("axes", ints(&[0])), ("keepdims", crate::ir::testing::int(0))]),
        };
        let nodes = vec![
            op("Mul", &["x", "k"], "y", &[]),
            over_batch,
            op("ReduceMax", &["x"], "s", &[("keepdims", crate::ir::testing::int(0))]),
        ];
        let constants = vec![
            tensor("k", &[16], |i| 1.0 + i as f32),
            Tensor::from_array("batch_axis", &ndarray::arr1(&[0i64]).into_dyn()),
        ];
        let mut m = model(nodes, constants, &[1, 4, 16], &["y", "m", "s"], opset);
        let dims = [Dim::Symbolic("N".into()), Dim::Fixed(4), Dim::Fixed(16)];
        m.graph.inputs[0] = ValueInfo::tensor("x", Some(DataType::FLOAT), Some(&dims));
        m
    }

    #[test]
    fn one_run_gives_extremes_counts_and_ranked_values_as_sorting_every_value_does() {
        // 11 rows in batches of 4, 4 and 3: the last batch is short.
        let x = ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[11, 4, 16]), |i| wavy(i[0] * 64 + i[1] * 16 + i[2]));
        let data = Dataset::from_arrays("x.npz", [("x".to_string(), Array::F32(x.clone()))].into());
        let y: Vec<f32> = x.indexed_iter().map(|(i, v)| v * (1.0 + i[2] as f32)).collect();
        let batches = [0..4, 4..8, 8..11];
        let m: Vec<f32> = batches
            .iter()
            .flat_map(|rows| {
                let x = &x;
                (0..64).map(move |j| rows.clone().map(|r| x[[r, j / 16, j % 16]]).fold(f32::MIN, f32::max))
            })
            .collect();
        let s: Vec<f32> = batches
            .iter()
            .map(|rows| {
                rows.clone().flat_map(|r| x.index_axis(ndarray::Axis(0), r).to_owned()).fold(f32::MIN, f32::max)
            })
            .collect();
        // A share of 0.2 keeps most values; 0.005 keeps 5 of a batch's 256 rows of 16: the
        // rows holding the extremes are then picked before the values are ranked.
        // In ONNX Runtime, where calibration ranks values (tract sorts them: the stage
        // captures them whole there), when its library loads; tract runs the opset-10 form.
        let ort = crate::runtime::ort_loads();
        let backend = if ort { crate::runtime::Backend::Ort } else { crate::runtime::Backend::Tract };
        let cases = [(10, 0.2), (10, 0.005), (13, 0.2), (13, 0.005), (18, 0.005)];
        for (opset, share) in cases.into_iter().filter(|&(opset, _)| ort || opset < 11) {
            let model = three_kinds(opset);
            let bound = data.bind(&feed_inputs(&model), None).unwrap();
            let tensors = vec!["y".to_string(), "m".to_string(), "s".to_string()];
            // The extremes as calibration takes them: from the ranking's chunks where it has some.
            // Each tensor's rank and chunks worked out on its own, and once per size.
            for sized in [false, true] {
                let mut ranked = Ranked::new(&tensors, share, 11, &bound, opset);
                if sized {
                    ranked = ranked.sized_by_rows(&model, &bound);
                    if opset >= 11 {
                        assert_eq!(ranked.sizes, [(64, 0), (0, 64), (0, 1)], "y grows with the rows, m and s do not");
                    }
                }
                let mut extremes = Extremes::beside(&tensors, &ranked);
                let stats: &mut [&mut dyn Statistic] = &mut [&mut ranked, &mut extremes];
                let rows = super::super::Rows::first(11, 4);
                super::super::collect_in(Some(backend), &model, &bound, rows, stats, &super::super::Silent).unwrap();
                assert!(ranked.sizes_disagree.is_empty());
                for (t, values) in [("y", &y), ("m", &m), ("s", &s)] {
                    let mut sorted = values.clone();
                    sorted.sort_by(|a, b| b.total_cmp(a));
                    let n = sorted.len();
                    assert_eq!(extremes.counts[t], n as u64, "{t} at opset {opset}");
                    assert_eq!(extremes.ranges[t], (sorted[n - 1], sorted[0]), "{t}");
                    for r in [0, (share * n as f64).floor() as usize] {
                        assert_eq!(
                            ranked.ranked(t, r),
                            Some((sorted[r], sorted[n - 1 - r])),
                            "{t} ranked {r} at opset {opset}, share {share}, sized {sized}"
                        );
                    }
                }
            }
        }
    }

    /// A size the analysis got wrong is caught by the tensor's own `Size`, batch by batch.
    #[test]
    fn a_shared_size_that_is_not_the_tensors_own_is_caught() {
        if !crate::runtime::ort_loads() {
            return;
        }
        let x = ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[5, 4, 16]), |i| wavy(i[0] * 64 + i[1] * 16 + i[2]));
        let data = Dataset::from_arrays("x.npz", [("x".to_string(), Array::F32(x))].into());
        let model = three_kinds(13);
        let bound = data.bind(&feed_inputs(&model), None).unwrap();
        let tensors = vec!["y".to_string(), "m".to_string(), "s".to_string()];
        let mut ranked = Ranked::new(&tensors, 0.2, 5, &bound, 13).sized_by_rows(&model, &bound);
        ranked.sizes[0] = (63, 0);
        let rows = super::super::Rows::first(5, 4);
        let backend = Some(crate::runtime::Backend::Ort);
        super::super::collect_in(backend, &model, &bound, rows, &mut [&mut ranked], &super::super::Silent).unwrap();
        assert_eq!(ranked.sizes_disagree, BTreeSet::from(["y".to_string()]));
    }
}
