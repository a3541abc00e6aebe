//! tract is a large engine fed models from anywhere: a panic inside it must
//! become an error naming what was being done, not a crash of prunq.

use crate::{Error, Result};
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};

thread_local! {
    /// The message of the last panic on this thread, kept by [`remember_panics`]'s hook.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
    /// How many [`guarded`] calls this thread is inside.
    static GUARDS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Whether a panic now would be caught by [`guarded`].
pub fn inside_guard() -> bool {
    GUARDS.with(|g| g.get() > 0)
}

/// Installs a panic hook that records the message instead of printing it;
/// callers report it (as an error, or as an internal error at the top).
pub fn remember_panics() {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{msg}{at}")));
    }));
}

/// The last panic message recorded on this thread.
pub fn last_panic() -> Option<String> {
    LAST_PANIC.with(|p| p.borrow_mut().take())
}

/// Runs `f`, turning a panic into `Error::Runtime` ("`what`: …").
pub fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    GUARDS.with(|g| g.set(g.get() + 1));
    let outcome = catch_unwind(AssertUnwindSafe(f));
    GUARDS.with(|g| g.set(g.get() - 1));
    match outcome {
        Ok(r) => r,
        Err(payload) => {
            let msg = last_panic()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(Error::Runtime(format!("{what}: tract failed internally ({msg})")))
        }
    }
}
