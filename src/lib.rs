//! prunq: prune and quantize ONNX models, check they still work, write standard ONNX.
//!
//! See ARCHITECTURE.md for the codemap. In short: `onnx` reads and writes
//! files into the `ir`; `analysis` measures an IR model; `runtime` runs it with
//! tract; `data` feeds it; `eval` compares models; `report` prints.

pub mod analysis;
pub mod data;
mod error;
pub mod eval;
pub mod ir;
pub mod onnx;
pub mod parallel;
pub mod proto;
pub mod prune;
pub mod quant;
pub mod report;
pub mod runtime;
pub mod transform;

pub use error::{Error, Result};
