//! What every pass and judge shares to run data through a model: progress and the lines a job says
//! (`progress.rs`); running data through a model and visiting the tensors each batch captures,
//! within one memory budget for every caller (`capture.rs`); made-up inputs for checks and timings
//! without data (`samples.rs`); statistics reduced inside the graph, a few numbers per tensor
//! and batch instead of the tensor (`in_graph.rs`); one judge of a candidate against its reference — whole output, worst slice,
//! non-finite values (`judge.rs`); measurements kept once per process under the models' and data's
//! fingerprints (`memo.rs`).

mod capture;
mod in_graph;
mod judge;
pub mod memo;
mod progress;
mod samples;

pub use capture::{batch_plan, measured_batch_plan, visit_tensors, Rows, CAPTURE_BYTES, RUN_BYTES};
pub use in_graph::{node, reduce_in_graph, Reduction};
pub use judge::{slices_of, sqnr_db, Noise, Reference, MAX_SLICES};
pub use progress::{Progress, Silent, StageTime, Timed};
pub use samples::{made_up_inputs, sizes_that_run, Fill, TRIED_SIZES};
