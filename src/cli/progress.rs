//! Progress bars on stderr; silent with `--quiet` or when stderr is not a terminal. What a job
//! says goes to stdout.
//! With `--verbose`, each stage's count and time are printed when it ends.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::cell::RefCell;
use std::io::IsTerminal;
use std::time::Instant;

pub struct Bar {
    enabled: bool,
    verbose: bool,
    bar: RefCell<Option<ProgressBar>>,
    /// The running stage: its name, total and start.
    stage: RefCell<Option<(String, u64, Instant)>>,
}

impl Bar {
    pub fn new(quiet: bool, verbose: bool) -> Bar {
        Bar {
            enabled: !quiet && std::io::stderr().is_terminal(),
            verbose,
            bar: RefCell::new(None),
            stage: RefCell::new(None),
        }
    }
}

impl crate::measure::Progress for Bar {
    fn start(&self, total: u64, what: &str) {
        *self.stage.borrow_mut() = Some((what.to_string(), total, Instant::now()));
        if !self.enabled {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template("{msg:>8} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .expect("valid template")
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(what.to_string());
        *self.bar.borrow_mut() = Some(bar);
    }

    fn advance(&self, n: u64) {
        if let Some(b) = &*self.bar.borrow() {
            b.inc(n);
        }
    }

    fn finish(&self) {
        if let Some(b) = self.bar.borrow_mut().take() {
            b.finish_and_clear();
        }
        if let Some((what, total, start)) = self.stage.borrow_mut().take().filter(|_| self.verbose) {
            eprintln!("{what}: {total} in {:.1} s", start.elapsed().as_secs_f64());
        }
    }

    fn say(&self, line: &str) {
        println!("{line}");
    }
}
