//! The `optimize` job: the search, then the winner checked, written (with its recipe), and the
//! search reported.

use super::{Done, Job};
use crate::data::Dataset;
use crate::ir::Model;
use crate::measure::Progress;
use crate::optimize::{Budget, Candidate, Metric, Observer, OptimizeConfig, OptimizeReport, Recipe};
use crate::{Error, Result};
use std::path::Path;

/// What a search chose: its report and the winner's recipe (empty when none kept the budget and
/// the input was written as it was).
#[derive(serde::Serialize)]
pub struct Optimized {
    /// Every candidate, the Pareto front, the winner.
    pub search: OptimizeReport,
    /// The winner's steps, as `apply` replays them.
    pub recipe: Recipe,
}

/// The metric a search judges by when none is told: accuracy when the validation data has labels,
/// exact lines with expected texts, else top-1 agreement with the original.
pub fn default_metric(original: &Model, val: &Dataset, texts: bool) -> Result<Metric> {
    Ok(if texts {
        Metric::ExactLines
    } else if val.bind(&crate::runtime::feed_inputs(original), None)?.labels.is_some() {
        Metric::Accuracy
    } else {
        Metric::Agreement
    })
}

/// The budget when none is told: one point, or 0.01 for cosine.
pub fn default_budget(metric: Metric) -> Budget {
    Budget::MaxDrop(if metric == Metric::Cosine { 0.01 } else { 1.0 })
}

/// Says each candidate as it is measured, with the best so far.
pub struct Announce<'a>(pub &'a dyn Progress, pub Metric);

impl Observer for Announce<'_> {
    fn trying(&self, label: &str) {
        self.0.say(&format!("trying {label} …"));
    }

    fn stopped(&self) -> bool {
        self.0.stopped()
    }

    fn measured(&self, c: &Candidate, best: Option<&Candidate>) {
        match (&c.error, c.quality) {
            (Some(e), _) => self.0.say(&format!("  {}: not made: {e}", c.label)),
            (None, Some(q)) => self.0.say(&format!(
                "  {}: {}, {:.2}× size, {:.2}× speed{}",
                c.label,
                self.1.show(q.value),
                c.size_ratio,
                c.speedup,
                if c.meets_budget { "" } else { " (over the budget)" }
            )),
            _ => {}
        }
        if let Some(b) = best {
            self.0.say(&format!("  best so far: {} ({:.2}× speed, {:.2}× size)", b.label, b.speedup, b.size_ratio));
        }
    }
}

impl Job<'_> {
    /// Searches for the best model that keeps `config`'s budget (see [`crate::optimize::optimize`];
    /// `observer` hears of each candidate), then checks and writes the winner — the input as it
    /// was when none keeps the budget, said in a warning — and its recipe to `save_recipe`.
    pub fn optimize(
        &self,
        config: &OptimizeConfig,
        observer: &dyn Observer,
        save_recipe: Option<&Path>,
        progress: &dyn Progress,
    ) -> Result<Done<Optimized>> {
        let (Some(calib), Some(val)) = (self.calib, self.val) else {
            return Err(Error::Usage("optimize needs calibration data and validation data".into()));
        };
        self.ensure_output_is_not_input()?;
        self.specialise(progress)?;
        let metric = config.metric;
        // A .tflite output: every candidate judged and timed as the LiteRT file it would be.
        let config = &OptimizeConfig { litert: self.writes_litert(), ..config.clone() };
        let (search, model) = crate::optimize::optimize(self.original(), config, calib, val, observer)?;
        let (model, recipe) = match (model, search.chosen) {
            (Some(m), Some(i)) => (m, search.candidates[i].recipe.clone()),
            _ => {
                progress.say(&format!(
                    "warning: no candidate kept the budget ({} at worst {}): the output is the input as it was",
                    metric.show(search.original_quality),
                    metric.show(search.bound)
                ));
                (self.original().clone(), Recipe::default())
            }
        };
        self.check_before_write(&model, progress)?;
        self.save(&model, progress)?;
        if let Some(path) = save_recipe {
            let text = format!(
                "# prunq recipe: {}\n# made by `prunq optimize` on {} ({}, {}); replay with\n#   prunq apply {} MODEL -o OUT --calib {}\n\n{}",
                recipe.label(),
                self.input.map(|p| p.display().to_string()).unwrap_or_else(|| "a model".into()),
                metric.show(search.original_quality),
                match search.chosen {
                    Some(i) => format!(
                        "result: {}",
                        search.candidates[i].quality.map(|q| metric.show(q.value)).unwrap_or_default()
                    ),
                    None => "no candidate kept the budget".into(),
                },
                path.display(),
                calib.path.display(),
                recipe.to_toml()?
            );
            crate::onnx::write_atomically(path, text.as_bytes())?;
        }
        let front: Vec<&Candidate> = search.candidates.iter().filter(|c| c.pareto).collect();
        progress.say(&format!("\n{} candidates in {:.0} s; Pareto front:", search.candidates.len(), search.seconds));
        for c in front {
            let q = c.quality.map(|q| metric.show(q.value)).unwrap_or_default();
            progress.say(&format!("  {q}, {:.2}× size, {:.2}× speed: {}", c.size_ratio, c.speedup, c.label));
        }
        for note in &search.notes {
            progress.say(&format!("note: {note}"));
        }
        progress.say(&format!(
            "\nwrote {}: {} (original {}, at worst {}); measured in {}",
            self.output.map(|p| p.display().to_string()).unwrap_or_else(|| "the result".into()),
            recipe.label(),
            metric.show(search.original_quality),
            metric.show(search.bound),
            search.runtime
        ));
        self.write_report("optimize", &model, Some(val), &search)?;
        Ok(Done { model, report: Optimized { search, recipe } })
    }
}
