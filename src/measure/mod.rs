//! What every pass and judge shares to run data through a model: progress and the lines a job says
//! (`progress.rs`); the one collector — every statistic a pass declares (reduced inside the graph,
//! a few numbers per tensor and batch, or whole tensors for a visitor) served by one run over the
//! data (`collect.rs`; the statistics in `statistics.rs`) within one memory budget for every caller
//! (`capture.rs`, with `visit_tensors`); made-up inputs for checks and timings without data
//! (`samples.rs`); one judge of a candidate against its reference — whole output, worst slice,
//! non-finite values (`judge.rs`); measurements kept once per process under the models' and data's
//! fingerprints (`memo.rs`).

mod capture;
mod collect;
mod judge;
pub mod memo;
mod progress;
mod samples;
mod statistics;

pub use capture::{batch_plan, measured_batch_plan, visit_tensors, Rows, CAPTURE_BYTES, RUN_BYTES};
pub use collect::{collect, collect_in, node, Reduction, Statistic};
pub use judge::{rows_per_run, slices_of, sqnr_db, Noise, Reference, Slicing, MAX_SLICES};
pub use progress::{Progress, Silent, StageTime, Timed};
pub use samples::{has_open_dims, made_up_inputs, sizes_that_run, Fill, TRIED_SIZES};
pub use statistics::{Captured, Extremes, Ranked};
