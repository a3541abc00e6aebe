//! Progress bars on stderr; silent with `--quiet` or when stderr is not a terminal.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::cell::RefCell;
use std::io::IsTerminal;

pub struct Bar {
    enabled: bool,
    bar: RefCell<Option<ProgressBar>>,
}

impl Bar {
    pub fn new(quiet: bool) -> Bar {
        Bar { enabled: !quiet && std::io::stderr().is_terminal(), bar: RefCell::new(None) }
    }
}

impl prunq::eval::Progress for Bar {
    fn start(&self, total: u64, what: &str) {
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
    }
}
