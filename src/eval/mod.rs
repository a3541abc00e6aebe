//! Judging models: accuracy, agreement with a reference, latency.

mod bench;
mod ctc;
mod guard;
mod layers;
mod metrics;
mod run;

pub use bench::{
    bench, latency_check, median, op_times, speedup_of, BenchOptions, BenchReport, Contest, LatencyCheck, ModelLatency,
    OpTimes, MEASUREMENT_MS,
};
pub use ctc::{edit_distance, score_line, CtcDecoder};
pub use guard::{
    check_batches, check_converted, check_outputs, check_outputs_timed, checked_rows, CheckedOutput, OutputCheck,
    CHECK_ROWS, DIVERGED_SQNR_DB,
};
pub use layers::{compare_layers, LayerComparison, LayerMetrics};
pub use metrics::{argmax, cosine, OutputComparison, OutputMetrics, WorstSlice, MAX_SLICES};
pub use run::{compare, evaluate, CompareReport, EvalReport, RunOptions};
