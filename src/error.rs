//! The library's error type. Every message names the file, node or tensor at fault.

use std::path::PathBuf;

/// What went wrong, with the file, node, tensor or option at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing `path` failed.
    // The cause is in the message, and not a `source` (which would print it twice in a chain).
    #[error("{}: {cause}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The system's error.
        cause: std::io::Error,
    },
    /// `path` is not an ONNX protobuf.
    #[error("{}: not a valid ONNX model ({cause})", path.display())]
    Decode {
        /// The file.
        path: PathBuf,
        /// What the protobuf decoder said.
        cause: prost::DecodeError,
    },
    /// The model is malformed or unsupported; the message names the node or tensor.
    #[error("{0}")]
    Model(String),
    /// Input data does not fit (file, array, shape or dtype named).
    #[error("{0}")]
    Data(String),
    /// The runtime (tract) failed to load or run a model.
    #[error("{0}")]
    Runtime(String),
    /// Bad options given to a pass or command.
    #[error("{0}")]
    Usage(String),
    /// The front end asked the work to stop (see `measure::Progress::stopped`); nothing was written.
    #[error("stopped by the user before anything was written")]
    Interrupted,
}

/// `Result` with prunq's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io { path: path.into(), cause: source }
    }
}
