//! The library's errors as Python exceptions: `PrunqError` and one subclass per kind (model, data,
//! usage, runtime), file errors as Python's own `OSError` subclasses (`FileNotFoundError` …), a
//! stop asked with Ctrl-C as `KeyboardInterrupt`, and a panic as `PrunqError` saying it is a bug.
//! Every message is the library's, which names the file, node or tensor.

use pyo3::exceptions::{PyException, PyFileNotFoundError, PyKeyboardInterrupt, PyOSError, PyPermissionError};
use pyo3::prelude::*;

pyo3::create_exception!(prunq, PrunqError, PyException, "Anything prunq refuses or cannot do.");
pyo3::create_exception!(prunq, ModelError, PrunqError, "The model is malformed, unsupported or not ONNX.");
pyo3::create_exception!(prunq, DataError, PrunqError, "The data does not fit the model (name, dtype or shape).");
pyo3::create_exception!(prunq, UsageError, PrunqError, "Options that mean nothing together, or a bad value.");
pyo3::create_exception!(prunq, RuntimeFailure, PrunqError, "ONNX Runtime or tract failed to load or run a model.");

/// Why a call failed, before it becomes a Python exception.
pub enum Failure {
    /// The library's error.
    Prunq(prunq::Error),
    /// A bug: a panic, or a report that would not serialize.
    Internal(String),
}

impl Failure {
    pub fn internal(message: String) -> Failure {
        Failure::Internal(message)
    }
}

impl From<prunq::Error> for Failure {
    fn from(e: prunq::Error) -> Failure {
        Failure::Prunq(e)
    }
}

/// The exception for a failure.
pub fn to_py(failure: Failure) -> PyErr {
    use prunq::Error;
    let e = match failure {
        Failure::Internal(m) => {
            return PrunqError::new_err(format!("internal error: {m} (please report this with the model)"))
        }
        Failure::Prunq(e) => e,
    };
    let message = e.to_string();
    match &e {
        Error::Io { cause, .. } => match cause.kind() {
            std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(message),
            std::io::ErrorKind::PermissionDenied => PyPermissionError::new_err(message),
            _ => PyOSError::new_err(message),
        },
        Error::Decode { .. } | Error::Model(_) => ModelError::new_err(message),
        Error::Data(_) => DataError::new_err(message),
        Error::Usage(_) => UsageError::new_err(message),
        Error::Runtime(_) => RuntimeFailure::new_err(message),
        Error::Interrupted => PyKeyboardInterrupt::new_err(message),
    }
}

/// `work()`, with a panic caught and turned into an internal error (never an abort of Python).
pub fn no_panic<T>(work: impl FnOnce() -> Result<T, Failure>) -> Result<T, Failure> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
        .unwrap_or_else(|_| Err(Failure::Internal(prunq::runtime::last_panic().unwrap_or_else(|| "a panic".into()))))
}

/// Adds the exception types to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("PrunqError", py.get_type::<PrunqError>())?;
    m.add("ModelError", py.get_type::<ModelError>())?;
    m.add("DataError", py.get_type::<DataError>())?;
    m.add("UsageError", py.get_type::<UsageError>())?;
    m.add("RuntimeFailure", py.get_type::<RuntimeFailure>())?;
    Ok(())
}
