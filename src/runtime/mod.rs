//! Running models with tract: a session over an IR model, batch runs, and
//! capture of named intermediate tensors.

mod session;

pub use session::{feed_inputs, inference_ranks, typed_model, Session, SessionOptions};
