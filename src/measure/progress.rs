//! How long work tells its caller what it is doing: stages with a count of units (progress bars in
//! the CLI) and the lines a command prints (`say`). Library callers
//! that pass [`Silent`] get neither; everything said also lands in the job's report.

use crate::{Error, Result};

/// Progress of a long run and what it has to say, shown by the front end and ignored by `Silent`.
pub trait Progress {
    /// A stage of `total` units called `what` starts.
    fn start(&self, _total: u64, _what: &str) {}
    /// `n` more units done.
    fn advance(&self, _n: u64) {}
    /// The stage is over.
    fn finish(&self) {}
    /// One line for the user (a result, a note, a warning), as the CLI prints it on stdout.
    fn say(&self, _line: &str) {}
    /// Whether the user asked the work to stop (Ctrl-C in Python, where the signal cannot end
    /// the process): long loops and every job before it writes end with [`Error::Interrupted`].
    fn stopped(&self) -> bool {
        false
    }
    /// [`Error::Interrupted`] when [`Progress::stopped`].
    fn check_stop(&self) -> Result<()> {
        match self.stopped() {
            true => Err(Error::Interrupted),
            false => Ok(()),
        }
    }
}

/// Reports nothing.
pub struct Silent;
impl Progress for Silent {}
