//! Data to run models on: `.npy`/`.npz` readers, binding arrays to model
//! inputs by name, batching, labels.

mod array;
mod batch_axis;
mod dataset;
pub mod npy;
pub mod npz;

pub use array::Array;
pub use batch_axis::set_batch_axes;
pub use dataset::{show_dims, Bound, Dataset, DEFAULT_LABEL_NAMES};
