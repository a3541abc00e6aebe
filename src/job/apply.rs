//! The `apply` job: a recipe's steps replayed, then the shared tail.

use super::{Done, Job};
use crate::measure::Progress;
use crate::optimize::{Recipe, StepReport};
use crate::{Error, Result};
use serde::Serialize;

/// What replaying a recipe did, step by step, and how the result measured.
#[derive(Clone, Debug, Serialize)]
pub struct ApplyReport {
    /// The recipe's one-line label.
    pub recipe: String,
    /// Each step's own report.
    pub steps: Vec<StepReport>,
    /// The result compared with the original on the validation data.
    pub comparison: Option<crate::eval::CompareReport>,
    /// The output timed against the input where it runs.
    pub latency: Option<crate::eval::LatencyCheck>,
    /// The check the output passed before it was written.
    pub output_check: Option<crate::eval::OutputCheck>,
}

impl Job<'_> {
    /// Replays `recipe` on the original, then checks, writes, compares, times and reports the result.
    pub fn apply(&self, recipe: &Recipe, progress: &dyn Progress) -> Result<Done<ApplyReport>> {
        if recipe.needs_data() && self.calib.is_none() {
            return Err(Error::Usage("a step of the recipe needs calibration data: give --calib DATA".into()));
        }
        self.ensure_output_is_not_input()?;
        // `optimize` fitted its steps to every calibration row: the replay does too, to write its model.
        self.calib_use.set(super::CalibUse::FitEveryRow);
        self.specialise(progress)?;
        let mut model = self.original().clone();
        // A `.tflite` output's steps as `optimize` ran them for one: a recipe then replays to the
        // file its search wrote.
        let for_litert;
        let recipe = match self.writes_litert() {
            true => {
                let steps = recipe.steps.iter().cloned().map(crate::optimize::for_litert).collect();
                for_litert = crate::optimize::Recipe { steps };
                &for_litert
            }
            false => recipe,
        };
        let steps = crate::optimize::apply(&mut model, recipe, self.fit_data(), progress)?;
        let (check, measured) = self.check_and_time_before_write(&model, progress)?;
        self.save(&model, progress)?;
        progress.say(&format!("applied {} step(s): {}", recipe.steps.len(), recipe.label()));
        let comparison = self.compare(&model, self.val, progress)?;
        let latency = self.latency(&model, measured, progress)?;
        let report = ApplyReport { recipe: recipe.label(), steps, comparison, latency, output_check: Some(check) };
        self.write_report("apply", &model, self.check_data(), &report)?;
        Ok(Done { model, report })
    }
}
