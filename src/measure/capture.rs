//! The memory every run of [`super::collect`] gets: the tensors a batch hands back, times the
//! batches in flight, stay within [`CAPTURE_BYTES`] whatever `--threads` (down to one row at a
//! time when a single row is larger), and runs handing back whole tensors keep their sessions'
//! weights and arenas (a few times their live tensors' peak) within [`RUN_BYTES`]. And
//! [`visit_tensors`]: whole tensors handed to a visitor, batch by batch — how SmoothQuant's and
//! bias correction's statistics, codebook feature energy, structured importance, the layers' Gram
//! matrices and the histogram calibrations collect.

use super::statistics::Captured;
use crate::data::{Array, Bound, Dataset};
use crate::ir::Model;
use crate::measure::Progress;
use crate::runtime::{feed_inputs, Session};
use crate::Result;
use ndarray::ArrayD;
use std::collections::{BTreeMap, BTreeSet};

/// Bytes of captured tensors the batches in flight may hold together.
pub const CAPTURE_BYTES: usize = 256 << 20;

/// Bytes the batches in flight may hold together: each batch in flight is a runtime session with
/// its own weights and an arena that holds its live activations while it runs, captured or not
/// (SmoothQuant's statistics on ppocr_rec capture a few MatMul inputs, yet 8 batches of 8 rows in
/// flight held 1.1 GB).
pub const RUN_BYTES: usize = 512 << 20;

/// Which rows of the data a sweep runs, in batches of how many.
#[derive(Clone, Copy, Debug)]
pub struct Rows {
    /// Rows per batch (fewer when a batch's captures would pass the budget).
    pub batch: usize,
    /// At most this many rows.
    pub limit: usize,
}

impl Rows {
    /// Every row, `batch` at a time.
    pub fn all(batch: usize) -> Rows {
        Rows { batch, limit: usize::MAX }
    }

    /// The first `limit` rows, `batch` at a time.
    pub fn first(limit: usize, batch: usize) -> Rows {
        Rows { batch, limit }
    }
}

/// Rows per batch and batches in flight for captures of `bytes_per_row`: the batch asked for when
/// it fits the budget (so statistics accumulate over the same batches as asked), else as many
/// rows as fit (at least one); then as many batches in flight as fit, one a thread at most.
pub fn batch_plan(bytes_per_row: usize, wanted: usize, threads: usize) -> (usize, usize) {
    let per_row = bytes_per_row.max(1);
    let rows = wanted.clamp(1, (CAPTURE_BYTES / per_row).max(1));
    let in_flight = (CAPTURE_BYTES / (per_row * rows)).clamp(1, threads.max(1));
    (rows, in_flight)
}

/// [`batch_plan`] for what `session` returns on one row of `bound` (measured by running it).
pub fn measured_batch_plan(session: &Session, bound: &Bound, wanted: usize) -> Result<(usize, usize)> {
    let threads = crate::parallel::threads();
    let Some(first) = bound.batches_upto(1, 1).next() else { return Ok((wanted.max(1), threads)) };
    let (_, batch) = first?;
    Ok(batch_plan(bytes_of(&session.run(&batch)?), wanted, threads))
}

/// Batches in flight for a sweep of `model` at `rows` rows a batch that hands back the whole
/// tensors `held`: as many as [`RUN_BYTES`] holds of one run's weights and arena (its live
/// tensors' peak measured on one row), one a thread at most.
pub(super) fn runs_in_flight(
    model: &Model,
    held: &[String],
    bound: &Bound,
    rows: usize,
    at_most: usize,
) -> Result<usize> {
    if at_most <= 1 {
        return Ok(1);
    }
    let g = &model.graph;
    let every: Vec<String> = g
        .nodes
        .iter()
        .flat_map(|n| n.outputs.iter())
        .filter(|t| !t.is_empty() && g.constant_site(t).is_none())
        .cloned()
        .collect();
    let sizes = match typed_row_sizes(model, bound) {
        Some(sizes) => sizes,
        None => {
            let Some(first) = bound.batches_upto(1, 1).next() else { return Ok(at_most) };
            let (_, batch) = first?;
            // The estimate only bounds memory: a model whose every tensor cannot be exposed keeps
            // the threads' count rather than failing the pass that asked.
            let measured = Session::capturing(model, &every).and_then(|s| s.map(|s| s.run(&batch)).transpose());
            let Ok(Some(outputs)) = measured else { return Ok(at_most) };
            every.iter().cloned().zip(outputs.iter().map(|a| bytes_of(std::slice::from_ref(a)))).collect()
        }
    };
    let sizes: BTreeMap<&str, usize> = sizes.iter().map(|(t, &b)| (t.as_str(), b)).collect();
    // Each run in flight is a session: its own copy of the weights, and an arena a few times the
    // live tensors' peak (measured in ONNX Runtime at 8 rows: minilm_l6 38 MB against a 32 MB
    // peak, ppocr_rec_v4 42 MB against 16 MB).
    let weights: usize = g.initializers.iter().map(|t| t.byte_size()).sum();
    let per_run = weights + ARENA_PER_PEAK * peak_bytes(model, &sizes, held)? * rows.max(1);
    Ok((RUN_BYTES / per_run.max(1)).clamp(1, at_most))
}

/// Each computed tensor's bytes for one row of `bound`, from tract's type analysis — no session
/// and no run (minilm_l6: 0.02 s, against 0.24 s to expose and run every tensor). A tensor the
/// analysis does not name (it fused its producer) counts as its producer's largest computed
/// input; `None` when the analysis fails, or cannot size some producer's inputs.
fn typed_row_sizes(model: &Model, bound: &Bound) -> Option<BTreeMap<String, usize>> {
    let types = crate::analysis::infer_types(model, &bound.shapes_for_rows(1)).ok()?;
    let g = &model.graph;
    let mut sizes: BTreeMap<String, usize> = BTreeMap::new();
    let bytes = |t: &str| types.get(t).and_then(|(dtype, dims)| dtype.byte_len(dims.iter().product()));
    for &n in &g.topo_order().ok()? {
        let node = &g.nodes[n];
        for t in node.outputs.iter().filter(|t| !t.is_empty() && g.constant_site(t).is_none()) {
            let size = match bytes(t) {
                Some(b) => b,
                None => node
                    .inputs
                    .iter()
                    .filter(|i| !i.is_empty() && g.constant_site(i).is_none())
                    .map(|i| sizes.get(i).copied().or_else(|| bytes(i)))
                    .collect::<Option<Vec<usize>>>()?
                    .into_iter()
                    .max()?,
            };
            sizes.insert(t.clone(), size);
        }
    }
    Some(sizes)
}

/// A session's arena over the peak of its live tensors (see `runs_in_flight`).
const ARENA_PER_PEAK: usize = 3;

/// The most bytes of intermediate tensors alive at once when `model`'s nodes run in topological
/// order, each tensor freed after its last reader, the graph's outputs and `held` kept to the end:
/// what a runtime's arena holds (the sum of every intermediate, which this estimate replaced, is
/// several times that: SmoothQuant's statistics ran one batch at a time on two cores).
fn peak_bytes(model: &Model, sizes: &BTreeMap<&str, usize>, held: &[String]) -> Result<usize> {
    let g = &model.graph;
    let order = g.topo_order()?;
    let kept: BTreeSet<&str> =
        held.iter().map(String::as_str).chain(g.outputs.iter().map(|o| o.name.as_str())).collect();
    let mut last_read: BTreeMap<&str, usize> = BTreeMap::new();
    for (at, &n) in order.iter().enumerate() {
        for t in &g.nodes[n].inputs {
            last_read.insert(t.as_str(), at);
        }
    }
    let (mut live, mut peak) = (0usize, 0usize);
    for (at, &n) in order.iter().enumerate() {
        let node = &g.nodes[n];
        live += node.outputs.iter().filter_map(|t| sizes.get(t.as_str())).sum::<usize>();
        peak = peak.max(live);
        let read: BTreeSet<&str> = node.inputs.iter().map(String::as_str).collect();
        let last_readers = read.into_iter().filter(|t| last_read.get(t) == Some(&at));
        let unread = node.outputs.iter().map(String::as_str).filter(|t| !last_read.contains_key(t));
        for t in last_readers.chain(unread).filter(|t| !kept.contains(t)) {
            live -= sizes.get(t).copied().unwrap_or(0).min(live);
        }
    }
    Ok(peak)
}

fn bytes_of(arrays: &[Array]) -> usize {
    arrays.iter().map(|a| a.dtype().byte_len(a.len()).unwrap_or(a.len())).sum()
}

/// Runs `data` through `model` (batches in parallel within the capture budget, visited in order)
/// and shows `visit` each named tensor of each batch — a graph input or an intermediate — as
/// `visit(index in names, value if float32)`: [`super::collect`] serving one [`Captured`].
pub fn visit_tensors(
    model: &Model,
    names: &[String],
    data: &Dataset,
    rows: Rows,
    progress: &dyn Progress,
    what: &str,
    visit: impl FnMut(usize, Option<&ArrayD<f32>>) -> Result<()>,
) -> Result<()> {
    let bound = data.bind(&feed_inputs(model), None)?;
    let mut captured = Captured::new(names, &bound.names, visit);
    progress.start(bound.rows.min(rows.limit) as u64, what);
    super::collect(model, &bound, rows, &mut [&mut captured], progress)?;
    progress.finish();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_captures_keep_the_batch_asked_for_and_every_thread() {
        assert_eq!(batch_plan(32 << 10, 32, 8), (32, 8), "digits-sized activations");
        assert_eq!(batch_plan(0, 8, 2), (8, 2), "nothing captured");
    }

    #[test]
    fn large_captures_shrink_the_batches_in_flight_first_then_the_batch() {
        // 20 MB a row: a batch of 8 fits (160 MB), a second one in flight does not.
        assert_eq!(batch_plan(20 << 20, 8, 8), (8, 1));
        // 178 MB a row (ppocr_rec's every activation): one row at a time, whatever the threads.
        assert_eq!(batch_plan(178 << 20, 8, 16), (1, 1));
        // A single row over the budget still runs, alone.
        assert_eq!(batch_plan(1 << 30, 8, 4), (1, 1));
    }

    #[test]
    fn the_plan_never_holds_more_than_the_budget_unless_one_row_does() {
        for bytes in [1usize, 1 << 10, 3 << 20, 40 << 20, 255 << 20, 300 << 20] {
            for (wanted, threads) in [(1, 1), (8, 2), (32, 8), (256, 16)] {
                let (rows, in_flight) = batch_plan(bytes, wanted, threads);
                assert!(rows >= 1 && rows <= wanted && in_flight >= 1 && in_flight <= threads);
                assert!(bytes * rows * in_flight <= CAPTURE_BYTES || rows == 1 && in_flight == 1, "{bytes} {wanted}");
            }
        }
    }

    #[test]
    fn a_run_holds_its_live_tensors_and_what_it_hands_back_not_every_tensor_it_made() {
        use crate::ir::testing::{model, node};
        // x → a → b → c (the output), and a side branch a → d read at the end with c: e = c + d.
        let nodes = vec![
            node("Relu", &["x"], "a", &[]),
            node("Relu", &["a"], "b", &[]),
            node("Relu", &["b"], "c", &[]),
            node("Relu", &["a"], "d", &[]),
            node("Add", &["c", "d"], "e", &[]),
        ];
        let m = model(nodes, vec![], &[1, 4], &["e"], 17);
        let sizes: BTreeMap<&str, usize> = [("a", 100), ("b", 10), ("c", 1000), ("d", 5), ("e", 7)].into();
        // In node order: a, b and c are alive when c is made (b goes then, a after d): 1110 at
        // the peak, where the sum of every tensor is 1122.
        assert_eq!(m.graph.topo_order().unwrap(), [0, 1, 2, 3, 4]);
        assert_eq!(peak_bytes(&m, &sizes, &[]).unwrap(), 1110);
        // Handed back whole, `a` stays to the end of the run: a, c, d and e at the end.
        assert_eq!(peak_bytes(&m, &sizes, &["a".to_string()]).unwrap(), 1112);
    }

    /// `y = relu(x)` on 10 rows of `x`, in tract (the library's default runtime).
    #[test]
    fn every_named_tensor_of_every_batch_is_visited_in_order_within_the_rows_asked() {
        use crate::ir::testing::{model, node};
        use crate::ir::{DataType, Dim, ValueInfo};
        let mut m = model(vec![node("Relu", &["x"], "y", &[])], vec![], &[1, 2], &["y"], 17);
        m.graph.inputs[0] =
            ValueInfo::tensor("x", Some(DataType::FLOAT), Some(&[Dim::Symbolic("N".into()), Dim::Fixed(2)]));
        let x = ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[10, 2]), |i| i[0] as f32 - 4.5);
        let data = Dataset::from_arrays("rows", [("x".to_string(), Array::F32(x))].into());
        let mut seen: Vec<(usize, usize, f32)> = vec![];
        let names = ["y".to_string(), "x".to_string()];
        visit_tensors(&m, &names, &data, Rows::first(7, 3), &crate::measure::Silent, "", |i, v| {
            let v = v.expect("float");
            seen.push((i, v.shape()[0], v.iter().sum()));
            Ok(())
        })
        .unwrap();
        let rows: Vec<usize> = seen.iter().filter(|s| s.0 == 1).map(|s| s.1).collect();
        assert_eq!(rows, [3, 3, 1], "7 rows, 3 at a time");
        assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), [0, 1, 0, 1, 0, 1], "names in order each batch");
        // relu of rows 0..7 (values -4.5 … 1.5): only rows 5 and 6 are positive.
        let relu: f32 = seen.iter().filter(|s| s.0 == 0).map(|s| s.2).sum();
        assert_eq!(relu, 2.0 * (0.5 + 1.5));
    }

    /// One row's sizes without a run: what exposing every tensor and running a row measures.
    #[test]
    fn typed_sizes_are_what_a_run_of_one_row_measures() {
        use crate::ir::testing::{model, node};
        use crate::ir::{DataType, Dim, Tensor, ValueInfo};
        let w = ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[2, 3]), |i| (i[0] + i[1]) as f32);
        let nodes = vec![
            node("MatMul", &["x", "w"], "y", &[]),
            node("Relu", &["y"], "z", &[]),
            node("Concat", &["z", "y"], "c", &[("axis", crate::ir::testing::int(1))]),
            node("ReduceMax", &["c"], "m", &[("keepdims", crate::ir::testing::int(0))]),
        ];
        let mut m = model(nodes, vec![Tensor::from_array("w", &w)], &[1, 2], &["m"], 17);
        m.graph.inputs[0] =
            ValueInfo::tensor("x", Some(DataType::FLOAT), Some(&[Dim::Symbolic("N".into()), Dim::Fixed(2)]));
        let x = ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[5, 2]), |i| i[1] as f32 - 0.5);
        let data = Dataset::from_arrays("rows", [("x".to_string(), Array::F32(x))].into());
        let bound = data.bind(&feed_inputs(&m), None).unwrap();
        let sizes = typed_row_sizes(&m, &bound).expect("tract types this graph");
        let every = ["y", "z", "c", "m"].map(String::from);
        let (_, batch) = bound.batches_upto(1, 1).next().unwrap().unwrap();
        let outputs = Session::capturing(&m, &every).unwrap().expect("capturable").run(&batch).unwrap();
        let measured: BTreeMap<String, usize> =
            every.iter().cloned().zip(outputs.iter().map(|a| bytes_of(std::slice::from_ref(a)))).collect();
        assert_eq!(sizes, measured);
        assert_eq!(sizes["c"], 6 * 4, "one row of 3 + 3 floats");
    }
}
