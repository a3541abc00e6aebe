//! The ONNX Runtime backend: the model as ONNX Runtime runs it when users
//! deploy it (CPU, default optimization level), with intermediate tensors
//! captured by exposing them as extra graph outputs of an in-memory copy.

use super::profile::{Profile, Recorder};
use super::{feed_inputs, SessionOptions};
use crate::data::Array;
use crate::ir::{Model, ValueInfo};
use crate::{Error, Result};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session as Inner, SessionInputValue};
use ort::value::{DynValue, TensorElementType, TensorRef, ValueType};
use std::collections::BTreeSet;
use std::sync::Mutex;

/// A model in ONNX Runtime: a pool of sessions, so batches run in parallel.
pub struct OrtSession {
    /// The encoded copy every pooled session is made from.
    bytes: Vec<u8>,
    intra_threads: usize,
    /// ONNX Runtime's pre-planned memory, as deployed; off for sessions that
    /// capture intermediates (measured on ppocr_rec's calibration: 6.0 → 3.1 GB
    /// peak, 27 → 14 s).
    memory_pattern: bool,
    profile: Option<tempfile::TempDir>,
    /// Idle sessions: `run` takes one (making one when all are busy), so
    /// batches run in parallel without sharing ONNX Runtime's run state.
    pool: Mutex<Vec<Inner>>,
    inputs: Vec<ValueInfo>,
    /// Returned tensors in order: a graph output of the copy, or a fed input.
    returned: Vec<Returned>,
    recorder: Recorder,
}

enum Returned {
    Output(String),
    Input(usize),
}

impl OrtSession {
    /// Loads `model` returning `outputs`.
    pub fn new(model: &Model, outputs: Vec<String>, options: &SessionOptions) -> Result<OrtSession> {
        let inputs = feed_inputs(model);
        let mut copy = model.clone();
        let mut exposed = BTreeSet::new();
        let returned = outputs
            .iter()
            .map(|name| {
                if let Some(ix) = inputs.iter().position(|i| &i.name == name) {
                    return Ok(Returned::Input(ix));
                }
                if model.graph.constant(name).is_some() {
                    return Err(Error::Runtime(format!("cannot capture '{name}': it is a constant, not computed")));
                }
                exposed.insert(name.clone());
                Ok(Returned::Output(name.clone()))
            })
            .collect::<Result<Vec<_>>>()?;
        // Graph outputs are never fused away, so each exposed tensor is the
        // value the original graph computes there. Types come from ONNX
        // Runtime's own inference: an output may be declared without one.
        copy.graph.outputs.retain(|o| exposed.contains(&o.name));
        for name in &exposed {
            if copy.graph.outputs.iter().all(|o| &o.name != name) {
                copy.graph.outputs.push(ValueInfo { name: name.clone(), ..Default::default() });
            }
        }
        let bytes = crate::onnx::encode(&copy)?;
        let profile = match options.profile {
            true => Some(tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?),
            false => None,
        };
        let session = OrtSession {
            bytes,
            intra_threads: options.intra_threads.unwrap_or(1).max(1),
            memory_pattern: options.capture.is_empty(),
            profile,
            pool: Mutex::new(vec![]),
            inputs,
            returned,
            recorder: Recorder::default(),
        };
        // Load now, so that a model ONNX Runtime refuses fails here: as many sessions as asked for,
        // each optimized on its own thread (ONNX Runtime optimizes a graph on one).
        let made: Vec<Result<Inner>> = match options.sessions {
            0 | 1 => vec![session.make()],
            n => crate::parallel::map(&vec![(); n], |_| session.make()),
        };
        let made = made.into_iter().collect::<Result<Vec<_>>>()?;
        session.pool.lock().unwrap_or_else(|e| e.into_inner()).extend(made);
        Ok(session)
    }

    fn make(&self) -> Result<Inner> {
        let env = super::ort_library::environment()?;
        let fail = |e: &dyn std::fmt::Display| Error::Runtime(format!("ONNX Runtime cannot load the model: {e}"));
        let mut builder = Inner::builder(env)
            .map_err(|e| fail(&e))?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(|e| fail(&e))?
            .with_intra_threads(self.intra_threads)
            .map_err(|e| fail(&e))?
            .with_inter_threads(1)
            .map_err(|e| fail(&e))?
            .with_memory_pattern(self.memory_pattern)
            .map_err(|e| fail(&e))?
            // Every failure ONNX Runtime logs also comes back as the error prunq reports (naming
            // what it tried); its own red log lines on stderr only repeat it out of context.
            .with_log_level(ort::logging::LogLevel::Fatal)
            .map_err(|e| fail(&e))?;
        if !self.memory_pattern {
            // A capturing copy (calibration: ppocr_rec_v4's 6 800 nodes, minilm_l6's 9 300) spends
            // a third of its optimization hashing every node for common subexpressions; the values
            // are the same without that pass (it only merges identical nodes), and so was the time
            // per run (ppocr_rec_v4's calibration copy: 0.70 → 0.49 s to load, 244 ms a batch).
            builder = builder.with_disabled_optimizers("CommonSubexpressionElimination").map_err(|e| fail(&e))?;
        }
        if let Some(dir) = &self.profile {
            builder = builder.with_profiling(dir.path().join("ort")).map_err(|e| fail(&e))?;
        }
        builder.commit_from_memory(&self.bytes).map_err(|e| fail(&e))
    }

    /// Runs one batch.
    pub fn run(&self, inputs: &[Array]) -> Result<Vec<Array>> {
        if inputs.len() != self.inputs.len() {
            return Err(Error::Runtime(format!("the model takes {} inputs, got {}", self.inputs.len(), inputs.len())));
        }
        let idle = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut session = match idle {
            Some(s) => s,
            None => self.make()?,
        };
        let result = self.run_on(&mut session, inputs);
        self.pool.lock().unwrap_or_else(|e| e.into_inner()).push(session);
        result
    }

    fn run_on(&self, session: &mut Inner, inputs: &[Array]) -> Result<Vec<Array>> {
        let fail = |e: ort::Error| Error::Runtime(format!("ONNX Runtime failed to run the model: {e}"));
        let standard: Vec<Array> = inputs.iter().map(standard_layout).collect();
        let values = self
            .inputs
            .iter()
            .zip(&standard)
            .map(|(info, a)| Ok((info.name.clone(), to_value(a).map_err(fail)?)))
            .collect::<Result<Vec<_>>>()?;
        let outputs = session.run(values).map_err(fail)?;
        self.returned
            .iter()
            .map(|r| match r {
                Returned::Input(ix) => Ok(inputs[*ix].clone()),
                Returned::Output(name) => {
                    let v = outputs
                        .get(name.as_str())
                        .ok_or_else(|| Error::Runtime(format!("ONNX Runtime returned no tensor '{name}'")))?;
                    from_value(v, name)
                }
            })
            .collect()
    }

    /// Time per op type, from ONNX Runtime's profiler (every pooled session's file).
    pub fn profile(&self) -> Result<Profile> {
        if self.profile.is_none() {
            return Ok(Profile::default());
        }
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        for mut s in pool.drain(..) {
            let file = s.end_profiling().map_err(|e| Error::Runtime(format!("ONNX Runtime's profiler: {e}")))?;
            let text = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
            self.recorder.add_ort_trace(&text).map_err(|e| Error::Runtime(format!("{file}: {e}")))?;
        }
        Ok(self.recorder.profile())
    }
}

fn standard_layout(a: &Array) -> Array {
    macro_rules! std {
        ($($v:ident),*) => {
            match a { $(Array::$v(x) => Array::$v(x.as_standard_layout().into_owned()),)* }
        };
    }
    std!(F32, F64, I64, I32, I8, U8, Bool)
}

fn to_value(a: &Array) -> ort::Result<SessionInputValue<'_>> {
    Ok(match a {
        Array::F32(x) => TensorRef::from_array_view(x.view())?.into(),
        Array::F64(x) => TensorRef::from_array_view(x.view())?.into(),
        Array::I64(x) => TensorRef::from_array_view(x.view())?.into(),
        Array::I32(x) => TensorRef::from_array_view(x.view())?.into(),
        Array::I8(x) => TensorRef::from_array_view(x.view())?.into(),
        Array::U8(x) => TensorRef::from_array_view(x.view())?.into(),
        Array::Bool(x) => TensorRef::from_array_view(x.view())?.into(),
    })
}

fn from_value(v: &DynValue, name: &str) -> Result<Array> {
    let bad = |e: ort::Error| Error::Runtime(format!("output '{name}': {e}"));
    let ty = match v.dtype() {
        ValueType::Tensor { ty, .. } => *ty,
        other => return Err(Error::Runtime(format!("output '{name}' is a {other}, not a tensor"))),
    };
    macro_rules! owned {
        ($t:ty) => {
            v.try_extract_array::<$t>().map_err(bad)?.to_owned()
        };
    }
    Ok(match ty {
        TensorElementType::Float32 => Array::F32(owned!(f32)),
        TensorElementType::Float64 => Array::F64(owned!(f64)),
        TensorElementType::Int64 => Array::I64(owned!(i64)),
        TensorElementType::Int32 => Array::I32(owned!(i32)),
        TensorElementType::Int8 => Array::I8(owned!(i8)),
        TensorElementType::Uint8 => Array::U8(owned!(u8)),
        TensorElementType::Bool => Array::Bool(owned!(bool)),
        TensorElementType::Float16 => Array::F32(owned!(half::f16).mapv(f32::from)),
        TensorElementType::Bfloat16 => Array::F32(owned!(half::bf16).mapv(f32::from)),
        TensorElementType::Int16 => Array::I64(owned!(i16).mapv(i64::from)),
        TensorElementType::Uint16 => Array::I64(owned!(u16).mapv(i64::from)),
        TensorElementType::Uint32 => Array::I64(owned!(u32).mapv(i64::from)),
        TensorElementType::Uint64 => Array::I64(owned!(u64).mapv(|x| x as i64)),
        other => return Err(Error::Runtime(format!("output '{name}' has type {other}, which prunq does not read"))),
    })
}
