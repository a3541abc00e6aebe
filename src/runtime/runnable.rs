//! A model to run: ONNX (in ONNX Runtime or tract) or a LiteRT `.tflite` file (in LiteRT), so
//! `eval`, `compare` and `bench` take either and the two formats can be judged one against the
//! other on the same data.

use super::{feed_inputs, LiteRtSession, Session, SessionOptions};
use crate::ir::{Model, ValueInfo};
use crate::Result;
use std::path::Path;

/// A model held in memory, of either format.
pub enum ModelFile {
    /// An ONNX model.
    Onnx(Box<Model>),
    /// A LiteRT flatbuffer's bytes.
    LiteRt(Vec<u8>),
}

impl ModelFile {
    /// Reads `path`: a LiteRT model when its bytes say so (the `TFL3` identifier), else ONNX.
    pub fn open(path: impl AsRef<Path>) -> Result<ModelFile> {
        let path = path.as_ref();
        let mut head = [0u8; 8];
        let is_litert = std::fs::File::open(path)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
            .is_ok_and(|_| &head[4..8] == b"TFL3");
        if is_litert {
            return Ok(ModelFile::LiteRt(std::fs::read(path).map_err(|e| crate::Error::io(path, e))?));
        }
        crate::onnx::load(path).map(|m| ModelFile::Onnx(Box::new(m)))
    }

    /// The model to run.
    pub fn runnable(&self) -> Runnable<'_> {
        match self {
            ModelFile::Onnx(m) => Runnable::Onnx(m),
            ModelFile::LiteRt(b) => Runnable::LiteRt(b),
        }
    }
}

/// A model to run, borrowed.
#[derive(Clone, Copy)]
pub enum Runnable<'a> {
    /// An ONNX model, run in the process's runtime (or the session options').
    Onnx(&'a Model),
    /// A `.tflite` model's bytes, run in LiteRT.
    LiteRt(&'a [u8]),
}

impl<'a> From<&'a Model> for Runnable<'a> {
    fn from(m: &'a Model) -> Self {
        Runnable::Onnx(m)
    }
}

impl<'a> From<&'a ModelFile> for Runnable<'a> {
    fn from(m: &'a ModelFile) -> Self {
        m.runnable()
    }
}

impl<'a> Runnable<'a> {
    /// The inputs a caller feeds, in the order a session made without `inputs` takes them.
    pub fn feeds(&self) -> Result<Vec<ValueInfo>> {
        match self {
            Runnable::Onnx(m) => Ok(feed_inputs(m)),
            Runnable::LiteRt(bytes) => Ok(LiteRtSession::new(bytes.to_vec(), 1)?.input_infos()),
        }
    }

    /// The model's metadata entry `key` (ONNX `metadata_props`; a `.tflite`'s metadata table,
    /// where prunq's converter carries the ONNX model's entries).
    pub fn metadata(&self, key: &str) -> Option<String> {
        match self {
            Runnable::Onnx(m) => m.metadata(key).map(str::to_string),
            Runnable::LiteRt(bytes) => {
                prunq_litert_schema::metadata(bytes, key).and_then(|b| String::from_utf8(b).ok())
            }
        }
    }

    /// The ONNX model, when it is one.
    pub fn onnx(&self) -> Option<&'a Model> {
        match self {
            Runnable::Onnx(m) => Some(m),
            Runnable::LiteRt(_) => None,
        }
    }

    /// A session; `inputs` names the order `run` takes them in (a LiteRT model fed batches
    /// bound to an ONNX model's inputs), `None` the model's own.
    pub fn session(&self, options: &SessionOptions, inputs: Option<&[String]>) -> Result<Session> {
        match self {
            Runnable::Onnx(m) => Session::new(m, options),
            Runnable::LiteRt(bytes) => Session::litert(bytes.to_vec(), inputs, options),
        }
    }
}
