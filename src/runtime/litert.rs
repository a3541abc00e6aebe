//! A `.tflite` model run by LiteRT's CPU path (XNNPACK) through its `CompiledModel` C API.
//!
//! The model's first signature is what runs; inputs are fed by name. A model written with a batch
//! of 1 (as prunq writes them: phones run one sample at a time) runs a batch of N rows one row at
//! a time, and the outputs are stacked, so data prepared for the ONNX model feeds it unchanged.

use super::litert_library::{
    capturing_stderr, errors_in, litert, status_text, Handle, Loaded, RankedTensorType, Status,
};
use crate::data::Array;
use crate::ir::DataType;
use crate::{Error, Result};
use std::ffi::{c_void, CStr, CString};
use std::sync::Mutex;

/// One input or output of the signature.
#[derive(Clone)]
struct Port {
    name: String,
    dtype: DataType,
    ranked: RankedTensorType,
}

impl Port {
    fn dims(&self) -> Vec<usize> {
        self.ranked.dimensions[..self.ranked.rank()].iter().map(|&d| d.max(0) as usize).collect()
    }

    fn byte_len(&self) -> usize {
        self.dtype.byte_len(self.dims().iter().product()).unwrap_or(0)
    }
}

/// A compiled model with its buffers: one run at a time.
struct Instance {
    compiled: Handle,
    inputs: Vec<Handle>,
    outputs: Vec<Handle>,
}

/// A `.tflite` model ready to run; `run` may be called from several threads (each takes its own
/// compiled instance).
pub struct LiteRtSession {
    lib: &'static Loaded,
    model: Handle,
    inputs: Vec<Port>,
    outputs: Vec<Port>,
    threads: usize,
    pool: Mutex<Vec<Instance>>,
    // LiteRT reads the model from this buffer for the model's lifetime.
    _bytes: Box<[u8]>,
}

// The handles are only used under the pool's lock (instances) or read-only (the model).
unsafe impl Send for LiteRtSession {}
unsafe impl Sync for LiteRtSession {}

fn check(status: Status, what: &str) -> Result<()> {
    check_logged(status, what, "")
}

/// `check` for a call whose stderr was captured: its error lines join the message.
fn check_logged(status: Status, what: &str, log: &str) -> Result<()> {
    if status == 0 {
        Ok(())
    } else {
        Err(Error::Runtime(format!("LiteRT: {what} failed ({}){}", status_text(status), errors_in(log))))
    }
}

fn dtype_of(element_type: i32) -> Option<DataType> {
    Some(match element_type {
        1 => DataType::FLOAT,
        2 => DataType::INT32,
        3 => DataType::UINT8,
        4 => DataType::INT64,
        6 => DataType::BOOL,
        9 => DataType::INT8,
        11 => DataType::DOUBLE,
        _ => return None,
    })
}

impl LiteRtSession {
    /// Reads a `.tflite` model from `bytes`; `threads` is XNNPACK's thread count (1 in prunq's
    /// measurements, like ONNX Runtime's intra-op threads).
    pub fn new(bytes: Vec<u8>, threads: usize) -> Result<LiteRtSession> {
        let lib = litert()?;
        let api = &lib.api;
        let bytes = bytes.into_boxed_slice();
        let mut model: Handle = std::ptr::null_mut();
        // SAFETY: the buffer outlives the model (both live in the session; the model is
        // destroyed first, in Drop).
        let (status, log) = capturing_stderr(|| unsafe {
            (api.LiteRtCreateModelFromBuffer)(lib.env, bytes.as_ptr().cast(), bytes.len(), &mut model)
        });
        check_logged(status, "reading the model", &log)?;
        let mut session = LiteRtSession {
            lib,
            model,
            inputs: vec![],
            outputs: vec![],
            threads: threads.max(1),
            pool: Mutex::new(vec![]),
            _bytes: bytes,
        };
        session.read_signature()?;
        // Compiling once here reports a model LiteRT cannot run when the session is made.
        let first = session.instance()?;
        session.pool.lock().unwrap_or_else(|e| e.into_inner()).push(first);
        Ok(session)
    }

    fn read_signature(&mut self) -> Result<()> {
        let api = &self.lib.api;
        let mut count = 0usize;
        check(unsafe { (api.LiteRtGetNumModelSignatures)(self.model, &mut count) }, "reading the signatures")?;
        if count == 0 {
            return Err(Error::Runtime("LiteRT: the model has no signature to run".into()));
        }
        let mut signature: Handle = std::ptr::null_mut();
        check(unsafe { (api.LiteRtGetModelSignature)(self.model, 0, &mut signature) }, "reading the signature")?;
        for output in [false, true] {
            let mut n = 0usize;
            let counted = if output {
                unsafe { (api.LiteRtGetNumSignatureOutputs)(signature, &mut n) }
            } else {
                unsafe { (api.LiteRtGetNumSignatureInputs)(signature, &mut n) }
            };
            check(counted, "counting the signature's tensors")?;
            for i in 0..n {
                let mut name: *const std::ffi::c_char = std::ptr::null();
                let mut tensor: Handle = std::ptr::null_mut();
                let (named, found) = if output {
                    unsafe {
                        (
                            (api.LiteRtGetSignatureOutputName)(signature, i, &mut name),
                            (api.LiteRtGetSignatureOutputTensorByIndex)(signature, i, &mut tensor),
                        )
                    }
                } else {
                    unsafe {
                        (
                            (api.LiteRtGetSignatureInputName)(signature, i, &mut name),
                            (api.LiteRtGetSignatureInputTensorByIndex)(signature, i, &mut tensor),
                        )
                    }
                };
                check(named, "reading a tensor's name")?;
                check(found, "reading a tensor")?;
                let name = unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned();
                let mut ranked: RankedTensorType = unsafe { std::mem::zeroed() };
                check(unsafe { (api.LiteRtGetRankedTensorType)(tensor, &mut ranked) }, "reading a tensor's type")?;
                let dtype = dtype_of(ranked.element_type).ok_or_else(|| {
                    Error::Runtime(format!(
                        "LiteRT: tensor {name} has element type {}, which prunq cannot feed",
                        ranked.element_type
                    ))
                })?;
                let port = Port { name, dtype, ranked };
                if output {
                    self.outputs.push(port)
                } else {
                    self.inputs.push(port)
                }
            }
        }
        Ok(())
    }

    /// The signature's input names, in its order.
    pub fn input_names(&self) -> Vec<String> {
        self.inputs.iter().map(|p| p.name.clone()).collect()
    }

    /// The signature's inputs as declarations (name, element type, shape), in its order.
    pub fn input_infos(&self) -> Vec<crate::ir::ValueInfo> {
        self.inputs
            .iter()
            .map(|p| {
                let dims: Vec<crate::ir::Dim> = p.dims().iter().map(|&d| crate::ir::Dim::Fixed(d as i64)).collect();
                crate::ir::ValueInfo::tensor(&p.name, Some(p.dtype), Some(&dims))
            })
            .collect()
    }

    /// The signature's output names, in its order.
    pub fn output_names(&self) -> Vec<String> {
        self.outputs.iter().map(|p| p.name.clone()).collect()
    }

    fn instance(&self) -> Result<Instance> {
        let api = &self.lib.api;
        let mut options: Handle = std::ptr::null_mut();
        check(unsafe { (api.LiteRtCreateOptions)(&mut options) }, "making options")?;
        let compiled = (|| {
            check(unsafe { (api.LiteRtSetOptionsHardwareAccelerators)(options, 1) }, "choosing the CPU")?;
            // XNNPACK's settings travel as a TOML payload under the identifier "xnnpack"
            // (what LrtGetOpaqueCpuOptionsData writes; those helpers are not exported).
            let payload = CString::new(format!("num_threads = {}\n", self.threads)).expect("no NUL");
            let mut opaque: Handle = std::ptr::null_mut();
            check(
                unsafe {
                    (api.LiteRtCreateOpaqueOptions)(
                        c"xnnpack".as_ptr(),
                        payload.into_raw().cast(),
                        Some(free_payload),
                        &mut opaque,
                    )
                },
                "setting the thread count",
            )?;
            check(unsafe { (api.LiteRtAddOpaqueOptions)(options, opaque) }, "setting the thread count")?;
            let mut compiled: Handle = std::ptr::null_mut();
            let (status, log) = capturing_stderr(|| unsafe {
                (api.LiteRtCreateCompiledModel)(self.lib.env, self.model, options, &mut compiled)
            });
            check_logged(status, "compiling the model", &log)?;
            Ok(compiled)
        })();
        unsafe { (api.LiteRtDestroyOptions)(options) };
        let mut instance = Instance { compiled: compiled?, inputs: vec![], outputs: vec![] };
        for (ports, buffers) in [(&self.inputs, &mut instance.inputs), (&self.outputs, &mut instance.outputs)] {
            for port in ports {
                let mut buffer: Handle = std::ptr::null_mut();
                check(
                    unsafe {
                        (api.LiteRtCreateManagedTensorBuffer)(
                            self.lib.env,
                            1,
                            &port.ranked,
                            port.byte_len(),
                            &mut buffer,
                        )
                    },
                    &format!("making a buffer for {}", port.name),
                )?;
                buffers.push(buffer);
            }
        }
        Ok(instance)
    }

    /// Runs one batch; `inputs` in the order of [`LiteRtSession::input_names`]. A batch of N
    /// rows where the model takes one runs row by row.
    pub fn run(&self, inputs: &[Array]) -> Result<Vec<Array>> {
        if inputs.len() != self.inputs.len() {
            return Err(Error::Runtime(format!(
                "LiteRT: the model takes {} inputs, {} given",
                self.inputs.len(),
                inputs.len()
            )));
        }
        let rows = self.rows_of(inputs)?;
        let mut instance = match self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            Some(i) => i,
            None => self.instance()?,
        };
        let result = match rows {
            None => self.run_once(&mut instance, inputs),
            Some(n) => {
                let mut per_row: Vec<Vec<Array>> = vec![];
                for r in 0..n {
                    let row: Vec<Array> = inputs.iter().map(|a| a.rows(r, r + 1)).collect();
                    per_row.push(self.run_once(&mut instance, &row)?);
                }
                (0..self.outputs.len())
                    .map(|o| Array::concat(&per_row.iter().map(|r| r[o].clone()).collect::<Vec<_>>()))
                    .collect()
            }
        };
        self.pool.lock().unwrap_or_else(|e| e.into_inner()).push(instance);
        result
    }

    /// `None` when the inputs have the model's shapes; `Some(n)` when each is n rows of them.
    fn rows_of(&self, inputs: &[Array]) -> Result<Option<usize>> {
        let exact = inputs.iter().zip(&self.inputs).all(|(a, p)| a.shape() == p.dims().as_slice());
        if exact {
            return Ok(None);
        }
        let n = inputs.first().map(|a| a.shape().first().copied().unwrap_or(0)).unwrap_or(0);
        for (a, p) in inputs.iter().zip(&self.inputs) {
            let dims = p.dims();
            let fits = dims.first() == Some(&1)
                && a.shape().len() == dims.len()
                && a.shape()[0] == n
                && a.shape()[1..] == dims[1..];
            if !fits {
                return Err(Error::Runtime(format!(
                    "LiteRT: input {} is {:?} but the model takes {:?}",
                    p.name,
                    a.shape(),
                    dims
                )));
            }
        }
        Ok(Some(n))
    }

    fn run_once(&self, instance: &mut Instance, inputs: &[Array]) -> Result<Vec<Array>> {
        let api = &self.lib.api;
        for ((array, port), &buffer) in inputs.iter().zip(&self.inputs).zip(&instance.inputs) {
            let array = array.cast(port.dtype).ok_or_else(|| {
                Error::Runtime(format!(
                    "LiteRT: input {} is {} but the model takes {}",
                    port.name,
                    array.dtype().name(),
                    port.dtype.name()
                ))
            })?;
            let bytes = array.to_le_bytes();
            let mut address: *mut c_void = std::ptr::null_mut();
            check(unsafe { (api.LiteRtLockTensorBuffer)(buffer, &mut address, 1) }, "writing an input")?;
            // SAFETY: the buffer was made for exactly this port's byte length, which `rows_of`
            // checked the array's shape against.
            unsafe {
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), address.cast::<u8>(), bytes.len().min(port.byte_len()))
            };
            check(unsafe { (api.LiteRtUnlockTensorBuffer)(buffer) }, "writing an input")?;
        }
        check(
            unsafe {
                (api.LiteRtRunCompiledModel)(
                    instance.compiled,
                    0,
                    instance.inputs.len(),
                    instance.inputs.as_mut_ptr(),
                    instance.outputs.len(),
                    instance.outputs.as_mut_ptr(),
                )
            },
            "running the model",
        )?;
        let mut outputs = vec![];
        for (port, &buffer) in self.outputs.iter().zip(&instance.outputs) {
            let mut address: *mut c_void = std::ptr::null_mut();
            check(unsafe { (api.LiteRtLockTensorBuffer)(buffer, &mut address, 0) }, "reading an output")?;
            let bytes = unsafe { std::slice::from_raw_parts(address.cast::<u8>(), port.byte_len()) }.to_vec();
            check(unsafe { (api.LiteRtUnlockTensorBuffer)(buffer) }, "reading an output")?;
            outputs.push(
                Array::from_le_bytes(port.dtype, &port.dims(), &bytes).ok_or_else(|| {
                    Error::Runtime(format!("LiteRT: output {} has a type prunq cannot read", port.name))
                })?,
            );
        }
        Ok(outputs)
    }
}

unsafe extern "C" fn free_payload(payload: *mut c_void) {
    if !payload.is_null() {
        drop(unsafe { CString::from_raw(payload.cast()) });
    }
}

impl Drop for LiteRtSession {
    fn drop(&mut self) {
        let api = &self.lib.api;
        for instance in self.pool.get_mut().unwrap_or_else(|e| e.into_inner()).drain(..) {
            unsafe {
                for b in instance.inputs.iter().chain(&instance.outputs) {
                    (api.LiteRtDestroyTensorBuffer)(*b);
                }
                (api.LiteRtDestroyCompiledModel)(instance.compiled);
            }
        }
        unsafe { (api.LiteRtDestroyModel)(self.model) };
    }
}
