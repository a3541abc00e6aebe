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

/// How long one stage of a job took (a report's `stages`: where the tool's time goes).
#[derive(Clone, Debug, serde::Serialize)]
pub struct StageTime {
    /// The stage, as the progress bar names it (`calibrate`, `sensitivity`, `speed trials` …).
    pub stage: String,
    /// Its units (rows, trials, layers).
    pub units: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Passes everything to `inner` and notes how long each stage took.
pub struct Timed<'a> {
    inner: &'a dyn Progress,
    running: std::cell::RefCell<Option<(String, u64, std::time::Instant)>>,
    done: std::cell::RefCell<Vec<StageTime>>,
}

impl<'a> Timed<'a> {
    /// Timing the stages reported to `inner`.
    pub fn new(inner: &'a dyn Progress) -> Timed<'a> {
        Timed { inner, running: Default::default(), done: Default::default() }
    }

    /// The stages finished so far, in order.
    pub fn stages(&self) -> Vec<StageTime> {
        self.done.borrow().clone()
    }
}

impl Progress for Timed<'_> {
    fn start(&self, total: u64, what: &str) {
        *self.running.borrow_mut() = Some((what.to_string(), total, std::time::Instant::now()));
        self.inner.start(total, what)
    }
    fn advance(&self, n: u64) {
        self.inner.advance(n)
    }
    fn finish(&self) {
        if let Some((stage, units, began)) = self.running.borrow_mut().take() {
            self.done.borrow_mut().push(StageTime { stage, units, seconds: began.elapsed().as_secs_f64() });
        }
        self.inner.finish()
    }
    fn say(&self, line: &str) {
        self.inner.say(line)
    }
    fn stopped(&self) -> bool {
        self.inner.stopped()
    }
}

#[cfg(test)]
mod tests {
    use super::{Progress, Silent, Timed};

    #[test]
    fn timed_notes_each_finished_stage_in_order() {
        let timed = Timed::new(&Silent);
        timed.start(3, "calibrate");
        timed.advance(3);
        timed.finish();
        timed.start(7, "sensitivity");
        timed.finish();
        timed.finish(); // a finish without a stage is ignored
        let stages: Vec<(String, u64)> = timed.stages().into_iter().map(|s| (s.stage, s.units)).collect();
        assert_eq!(stages, [("calibrate".to_string(), 3), ("sensitivity".to_string(), 7)]);
        assert!(timed.stages().iter().all(|s| s.seconds >= 0.0));
    }
}
