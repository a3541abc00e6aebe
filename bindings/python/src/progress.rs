//! The library's progress and the lines it says, handed to a Python callable (the package turns
//! them into printed lines, tqdm bars or the user's callback), and the request to stop: Ctrl-C
//! (seen by the waiting main thread, see `detached`) or an exception from the callback — the work
//! stops at its next loop, and always before writing anything.

use pyo3::exceptions::PyKeyboardInterrupt;
use pyo3::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// A [`prunq::measure::Progress`] calling `report(event, text, count)`, with `event` one of
/// `start`, `advance`, `finish`, `say`.
pub struct Reporter {
    report: Py<PyAny>,
    stop: AtomicBool,
    /// What stopped the work: the signal's `KeyboardInterrupt`, or the callback's own exception.
    error: Mutex<Option<PyErr>>,
}

impl Reporter {
    pub fn new(report: Py<PyAny>) -> Reporter {
        Reporter { report, stop: AtomicBool::new(false), error: Mutex::new(None) }
    }

    fn call(&self, event: &str, text: &str, count: u64) {
        if self.stop.load(Ordering::Relaxed) {
            return;
        }
        Python::attach(|py| {
            if let Err(e) = self.report.call1(py, (event, text, count)) {
                self.stop_with(e);
            }
        })
    }

    /// Asks the work to stop, for `why` (raised when the call returns).
    pub fn stop_with(&self, why: PyErr) {
        self.stop.store(true, Ordering::Relaxed);
        self.error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(why);
    }

    /// The call's result, unless a signal or the callback stopped it: then that exception.
    pub fn outcome<T>(&self, result: PyResult<T>) -> PyResult<T> {
        match self.error.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(e) => Err(e),
            None if self.stop.load(Ordering::Relaxed) => Err(PyKeyboardInterrupt::new_err("stopped")),
            None => result,
        }
    }
}

impl prunq::measure::Progress for Reporter {
    fn start(&self, total: u64, what: &str) {
        self.call("start", what, total)
    }
    fn advance(&self, n: u64) {
        self.call("advance", "", n)
    }
    fn finish(&self) {
        self.call("finish", "", 0)
    }
    fn say(&self, line: &str) {
        self.call("say", line, 0)
    }
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Runs `work` on a thread of its own with the GIL released, a panic turned into an internal
/// error. Python handles signals only on its main thread, and only when it runs Python code: the
/// calling thread waits in short steps and looks for Ctrl-C between them, asking the work to stop
/// through `reporter` (it stops at its next loop, and always before writing).
pub fn detached<T: Send>(
    py: Python<'_>,
    reporter: Option<&Reporter>,
    work: impl FnOnce() -> Result<T, crate::errors::Failure> + Send,
) -> PyResult<T> {
    let outcome = std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("prunq".into())
            .stack_size(WORKER_STACK)
            .spawn_scoped(scope, || crate::errors::no_panic(work))
            .map_err(|e| crate::errors::Failure::internal(format!("cannot start a thread: {e}")))?;
        while !worker.is_finished() {
            py.detach(|| std::thread::sleep(std::time::Duration::from_millis(20)));
            if let (Some(reporter), Err(e)) = (reporter, py.check_signals()) {
                reporter.stop_with(e);
            }
        }
        worker.join().unwrap_or_else(|_| Err(crate::errors::Failure::internal("the worker thread panicked".into())))
    });
    outcome.map_err(crate::errors::to_py)
}

/// The work's thread's stack: a main thread's (decoding deep protobuf and graphs recurses).
const WORKER_STACK: usize = 8 << 20;
