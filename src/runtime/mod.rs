//! Running models with tract: a session over an IR model, batch runs, and
//! capture of named intermediate tensors.

mod guard;
mod lower;
mod session;

pub use guard::{guarded, inside_guard, last_panic, remember_panics};

pub use session::{feed_inputs, inference_ranks, typed_model, Session, SessionOptions};
