//! Running models: one [`Session`] over two backends — tract (built in) and
//! ONNX Runtime (loaded at run time from its shared library) — with capture
//! of named intermediate tensors in both; and LiteRT (loaded at run time from
//! `libLiteRt.so`) for the `.tflite` models prunq writes ([`Session::litert`]).
//!
//! Which backend runs is chosen once per process ([`set_runtime`], the CLI's
//! `--runtime auto|ort|tract`, default `auto`) or per session
//! ([`SessionOptions::backend`]). `auto` means ONNX Runtime when its library
//! loads, else tract. A library user who chooses nothing gets tract: built
//! in, the same on every machine.

mod cpu;
mod guard;
mod library_search;
mod litert;
mod litert_library;
mod lower;
mod onnxruntime;
mod ort_library;
mod profile;
mod runnable;
mod symbolic;
mod tract;

pub use cpu::int8_pairs_saturate;
pub use guard::{guarded, inside_guard, last_panic, remember_panics};
pub use litert::LiteRtSession;
pub use litert_library::{litert_info, set_litert_library, LiteRtInfo};
pub use onnxruntime::OrtSession;
pub use ort_library::{ort_info, ort_load_error, set_ort_library, OrtInfo};
pub use profile::{OpTime, Profile};
pub use runnable::{ModelFile, Runnable};
pub use symbolic::{symbolic_facts, SymDim, SymValue, SymbolicFact};
pub use tract::{data_type_of, inference_ranks, inference_types, typed_model, TractSession};

use crate::data::Array;
use crate::ir::{Model, ValueInfo};
use crate::{Error, Result};
use serde::Serialize;
use std::sync::Mutex;

/// An engine that runs models.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// tract, built in.
    Tract,
    /// ONNX Runtime through the `ort` crate, loaded at run time.
    #[serde(rename = "onnxruntime")]
    Ort,
    /// LiteRT's CPU path (XNNPACK) through its C API, loaded at run time: `.tflite` models.
    #[serde(rename = "litert")]
    LiteRt,
}

impl Backend {
    /// `tract` or `onnxruntime`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Tract => "tract",
            Backend::Ort => "onnxruntime",
            Backend::LiteRt => "litert",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the user asked for: a backend, or whichever is best available.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeChoice {
    /// ONNX Runtime when its library loads, else tract.
    Auto,
    /// ONNX Runtime (an error when its library does not load).
    Ort,
    /// tract.
    Tract,
}

static CHOICE: Mutex<RuntimeChoice> = Mutex::new(RuntimeChoice::Tract);

/// Whether ONNX Runtime's library loads (loading it on first use).
pub fn ort_loads() -> bool {
    ort_library::environment().is_ok()
}

/// The backend sessions use from now on unless their options name one.
pub fn set_runtime(choice: RuntimeChoice) {
    *CHOICE.lock().unwrap_or_else(|e| e.into_inner()) = choice;
}

/// The backend the current choice resolves to. `Ort` when ONNX Runtime was
/// asked for and cannot be loaded is an error saying where prunq looked.
pub fn default_backend() -> Result<Backend> {
    match *CHOICE.lock().unwrap_or_else(|e| e.into_inner()) {
        RuntimeChoice::Tract => Ok(Backend::Tract),
        RuntimeChoice::Ort => ort_library::environment().map(|_| Backend::Ort),
        RuntimeChoice::Auto => Ok(if ort_library::environment().is_ok() { Backend::Ort } else { Backend::Tract }),
    }
}

/// What ran a model, for reports: the backend and, for ONNX Runtime, its
/// version and library.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RuntimeInfo {
    /// The backend.
    pub backend: Backend,
    /// ONNX Runtime's version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The ONNX Runtime library file loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub library: Option<String>,
}

impl RuntimeInfo {
    /// What `backend` is in this process.
    pub fn of(backend: Backend) -> RuntimeInfo {
        match (backend, ort_info(), litert_info()) {
            (Backend::Ort, Some(i), _) => {
                RuntimeInfo { backend, version: Some(i.version), library: Some(i.library.display().to_string()) }
            }
            (Backend::LiteRt, _, Some(i)) => {
                RuntimeInfo { backend, version: i.version, library: Some(i.library.display().to_string()) }
            }
            _ => RuntimeInfo { backend, version: None, library: None },
        }
    }

    /// The current default backend's description.
    pub fn current() -> Result<RuntimeInfo> {
        default_backend().map(RuntimeInfo::of)
    }
}

impl std::fmt::Display for RuntimeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.version {
            Some(v) => write!(f, "{} {v}", self.backend),
            None => write!(f, "{}", self.backend),
        }
    }
}

/// How a session is made.
#[derive(Clone, Debug, Default)]
pub struct SessionOptions {
    /// Intermediate tensors to return after the graph outputs, by ONNX name.
    pub capture: Vec<String>,
    /// Only the captured tensors are returned (not the graph outputs).
    pub capture_only: bool,
    /// The engine; `None` takes the process default ([`set_runtime`]).
    pub backend: Option<Backend>,
    /// Threads inside one run (ONNX Runtime's intra-op pool); default 1, so
    /// that prunq's own parallel batches and trials share the cores and the
    /// results never depend on the thread count.
    pub intra_threads: Option<usize>,
    /// Record a per-node profile of every run (see [`Session::profile`]).
    pub profile: bool,
    /// ONNX Runtime sessions made at once, in parallel, for runs in parallel from the start
    /// (0 or 1: one; more are made as runs overlap). A calibration copy of minilm_l6, 9 300 nodes,
    /// takes ONNX Runtime 0.9 s to optimize: made one after the other, one core waits that long.
    pub sessions: usize,
}

/// A model ready to run on one backend.
pub struct Session {
    engine: Engine,
    /// Names of the returned tensors, in order.
    pub outputs: Vec<String>,
    /// Each returned tensor's dims as the model declares them (graph outputs; `None` for
    /// captured tensors and LiteRT models).
    pub declared: Vec<Option<Vec<crate::ir::Dim>>>,
    /// The engine that runs it.
    pub backend: Backend,
}

enum Engine {
    Tract(TractSession),
    Ort(OrtSession),
    /// The LiteRT session and, for each input `run` takes, its place in the signature.
    LiteRt(LiteRtSession, Vec<usize>),
}

/// The graph inputs a caller must feed: those that are not also initializers.
pub fn feed_inputs(model: &Model) -> Vec<ValueInfo> {
    let g = &model.graph;
    g.inputs.iter().filter(|i| g.initializers.iter().all(|t| t.name != i.name)).cloned().collect()
}

impl Session {
    /// Prepares `model` to run.
    pub fn new(model: &Model, options: &SessionOptions) -> Result<Session> {
        let backend = match options.backend {
            Some(b) => b,
            None => default_backend()?,
        };
        let mut outputs: Vec<String> =
            if options.capture_only { vec![] } else { model.graph.outputs.iter().map(|o| o.name.clone()).collect() };
        outputs.extend(options.capture.iter().cloned());
        let engine = match backend {
            Backend::Tract => Engine::Tract(TractSession::new(model, outputs.clone(), options.profile)?),
            Backend::Ort => Engine::Ort(OrtSession::new(model, outputs.clone(), options)?),
            Backend::LiteRt => {
                return Err(Error::Usage("LiteRT runs .tflite models; an ONNX model runs in ort or tract".into()))
            }
        };
        let declared =
            outputs.iter().map(|o| model.graph.outputs.iter().find(|v| &v.name == o).and_then(|v| v.shape())).collect();
        Ok(Session { engine, outputs, declared, backend })
    }

    /// A `.tflite` model in LiteRT. `inputs` are the names in the order `run` takes them (the
    /// ONNX model's, so the same batches feed both); `None` takes the model's signature order.
    pub fn litert(bytes: Vec<u8>, inputs: Option<&[String]>, options: &SessionOptions) -> Result<Session> {
        let session = LiteRtSession::new(bytes, options.intra_threads.unwrap_or(1))?;
        let names = session.input_names();
        let order = match inputs {
            None => (0..names.len()).collect(),
            Some(wanted) => {
                let mut order = vec![];
                for name in wanted {
                    let place = names.iter().position(|n| n == name).ok_or_else(|| {
                        Error::Usage(format!("the LiteRT model has no input {name} (it takes {})", names.join(", ")))
                    })?;
                    order.push(place);
                }
                if order.len() != names.len() {
                    return Err(Error::Usage(format!("the LiteRT model takes inputs {}", names.join(", "))));
                }
                order
            }
        };
        let outputs = session.output_names();
        let declared = vec![None; outputs.len()];
        Ok(Session { engine: Engine::LiteRt(session, order), outputs, declared, backend: Backend::LiteRt })
    }

    /// A session returning only `captured` (in the process's runtime), or `None`
    /// when there is nothing to capture: a runtime refuses a run without outputs.
    pub fn capturing(model: &Model, captured: &[String]) -> Result<Option<Session>> {
        if captured.is_empty() {
            return Ok(None);
        }
        let options = SessionOptions { capture: captured.to_vec(), capture_only: true, ..Default::default() };
        Session::new(model, &options).map(Some)
    }

    /// Runs one batch; `inputs` in the order of [`feed_inputs`]. May be
    /// called from several threads at once.
    pub fn run(&self, inputs: &[Array]) -> Result<Vec<Array>> {
        match &self.engine {
            Engine::Tract(s) => s.run(inputs),
            Engine::Ort(s) => s.run(inputs),
            Engine::LiteRt(s, order) => {
                let mut fed: Vec<Option<Array>> = vec![None; order.len()];
                for (array, &place) in inputs.iter().zip(order) {
                    fed[place] = Some(array.clone());
                }
                s.run(&fed.into_iter().flatten().collect::<Vec<_>>())
            }
        }
    }

    /// Time per op type over the runs since the session was made with
    /// `profile: true` (empty otherwise).
    pub fn profile(&self) -> Result<Profile> {
        match &self.engine {
            Engine::Tract(s) => Ok(s.profile()),
            Engine::Ort(s) => s.profile(),
            Engine::LiteRt(..) => Ok(Profile::default()),
        }
    }
}

/// An error for a runtime that cannot handle the model: tract's errors get
/// the hint that ONNX Runtime may run it.
fn tract_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Runtime(format!("{what}: {e} (ONNX Runtime may run it: runtime ort)"))
}
