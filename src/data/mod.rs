//! Data to run models on: `.npy`/`.npz` readers, image folders, text with a
//! tokenizer, WAV audio; binding them to model inputs by name, batching, labels.

mod array;
mod audio;
mod batch_axis;
mod dataset;
mod images;
pub mod npy;
pub mod npz;
mod preprocess;
mod text;

pub use array::Array;
pub use batch_axis::{parse_batch_axis, set_batch_axes};
pub use dataset::{show_dims, Bound, DataOptions, Dataset, DEFAULT_LABEL_NAMES};
pub use preprocess::{Filter, Layout, Preprocess, Resize};
