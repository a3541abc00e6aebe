//! What every pass and judge shares to run data through a model: progress and the lines a job says
//! (`progress.rs`).

mod progress;

pub use progress::{Progress, Silent};
