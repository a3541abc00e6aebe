//! The library's error type. Every message names the file, node or tensor at fault.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: not a valid ONNX model ({source})", path.display())]
    Decode { path: PathBuf, source: prost::DecodeError },
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
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io { path: path.into(), source }
    }
}
