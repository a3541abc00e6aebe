//! `--fix-input NAME=VALUE` for every job: the original specialised to those values once, before
//! the pass, and from then on the model the job works from — checked, compared and timed against —
//! since the result no longer takes those inputs. The data the job checks on must carry the same
//! values where it holds those inputs (else the check would judge another branch).

use super::Job;
use crate::data::{Array, Dataset};
use crate::ir::Model;
use crate::measure::Progress;
use crate::transform::FixedInput;
use crate::{Error, Result};

impl Job<'_> {
    /// The model the job works from: the original, or — with `checks.fix_inputs` — the original
    /// specialised to those values.
    pub(super) fn original(&self) -> &Model {
        self.specialised.get().unwrap_or(self.original)
    }

    /// Specialises the original to `checks.fix_inputs` (once; nothing to do without them) and says
    /// what that did.
    pub(super) fn specialise(&self, progress: &dyn Progress) -> Result<()> {
        if self.checks.fix_inputs.is_empty() || self.specialised.get().is_some() {
            return Ok(());
        }
        let mut model = self.original.clone();
        let done = crate::transform::fix_inputs(&mut model, &self.checks.fix_inputs)?;
        for data in [self.calib, self.val].into_iter().flatten() {
            for fix in &self.checks.fix_inputs {
                data_agrees(self.original, data, fix)?;
            }
        }
        let branches = match done.branches.is_empty() {
            true => "no If decided by it".to_string(),
            false => done.branches.join(", "),
        };
        progress.say(&format!(
            "specialised: {}; {branches}; {} constant values no longer read dropped, the branches not taken with them ({} → {} before the pass)",
            done.fixed.join(", "),
            done.dropped_values,
            crate::report::table::bytes(crate::onnx::file_size(self.original)?),
            crate::report::table::bytes(crate::onnx::file_size(&model)?),
        ));
        let _ = self.specialised.set(model);
        Ok(())
    }
}

/// Fails when `data` holds input `fix.name` with a value other than the fixed one.
fn data_agrees(original: &Model, data: &Dataset, fix: &FixedInput) -> Result<()> {
    let inputs = crate::runtime::feed_inputs(original);
    // Data made for the specialised model (without that input) binds to the original no more.
    let Ok(bound) = data.bind(&inputs, None) else { return Ok(()) };
    let Some(at) = bound.names.iter().position(|n| *n == fix.name) else { return Ok(()) };
    let wanted = fix.constant(original)?;
    let wanted = Array::from_le_bytes(wanted.dtype, &wanted.shape(), wanted.bytes().map(|b| &b[..]).unwrap_or(&[]));
    let wanted: Vec<f32> = wanted.map(|a| a.to_f32().iter().copied().collect()).unwrap_or_default();
    for batch in bound.batches(64) {
        let (_, arrays) = batch?;
        let given = arrays[at].to_f32();
        if let Some(v) = given.iter().enumerate().find(|(i, v)| **v != wanted[i % wanted.len().max(1)]).map(|(_, v)| v)
        {
            return Err(Error::Usage(format!(
                "--fix-input {}={}: the data {} holds {} = {v}: judged on it, the result would be compared on \
                 another branch (give data with that value, or without that input)",
                fix.name,
                fix.value,
                data.path().display(),
                fix.name
            )));
        }
    }
    Ok(())
}
