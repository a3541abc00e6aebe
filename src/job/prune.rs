//! The `prune` job: the pass (unstructured or structured), then the shared tail.

use super::{say_block, say_simplified, untouched_subgraphs, Done, Job};
use crate::ir::Model;
use crate::measure::Progress;
use crate::prune::structured::{Amount, StructuredReport};
use crate::prune::{PruneConfig, PruneReport, Pruned};
use crate::Result;
use serde::Serialize;

/// What a prune job did: weights zeroed, or channels removed.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum PruneOutcome {
    /// Unstructured or N:M sparsity.
    Sparse(Box<PruneReport>),
    /// Whole channels removed.
    Structured(Box<StructuredReport>),
}

impl Job<'_> {
    /// Prunes the original as `config` says, then checks, writes, compares, times and reports the
    /// result.
    pub fn prune(&self, config: &PruneConfig, progress: &dyn Progress) -> Result<Done<PruneOutcome>> {
        self.ensure_output_is_not_input()?;
        self.specialise(progress)?;
        let mut model = self.original().clone();
        match crate::prune::prune(&mut model, config, self.fit_data(), progress)? {
            Pruned::Sparse(report) => self.sparse(config, model, *report, progress),
            Pruned::Structured(report, unrepaired) => {
                self.structured(config, model, *report, unrepaired.as_deref(), progress)
            }
        }
    }

    fn sparse(
        &self,
        config: &PruneConfig,
        model: Model,
        mut report: PruneReport,
        progress: &dyn Progress,
    ) -> Result<Done<PruneOutcome>> {
        say_simplified(&report.simplified, progress);
        let (check, measured) = self.check_and_time_before_write(&model, progress)?;
        report.output_check = Some(check);
        self.save(&model, progress)?;
        progress.say(&format!(
            "{} layers pruned to {:.1} % sparsity overall, {} left dense",
            report.layers.len(),
            report.sparsity * 100.0,
            report.skipped.len()
        ));
        for (node, why) in &report.skipped {
            progress.say(&format!("  dense: {node} ({why})"));
        }
        for note in &report.notes {
            progress.say(&format!("note: {note}"));
        }
        if config.sparse_storage {
            let (sparse, dense): (Vec<_>, Vec<_>) = report.storage.iter().partition(|r| r.sparse);
            let saved: usize = sparse.iter().map(|r| r.dense_bytes - r.sparse_bytes).sum();
            progress.say(&format!(
                "{} weights stored sparse ({} bytes saved; ONNX Runtime reads them, tract does not), {} kept dense",
                sparse.len(),
                saved,
                dense.len()
            ));
        }
        report.comparison = self.compare(&model, self.val, progress)?;
        report.runtime = self.runtime_used(self.calib.is_some() || self.val.is_some(), progress)?;
        report.latency = self.latency(&model, measured, progress)?;
        self.write_report("prune", &model, self.check_data(), &report)?;
        Ok(Done { model, report: PruneOutcome::Sparse(Box::new(report)) })
    }

    fn structured(
        &self,
        config: &PruneConfig,
        model: Model,
        mut report: StructuredReport,
        unrepaired: Option<&Model>,
        progress: &dyn Progress,
    ) -> Result<Done<PruneOutcome>> {
        say_simplified(&report.simplified, progress);
        let nothing_removed = report.groups.iter().all(|g| g.removed.is_empty());
        if let Some(said) = untouched_subgraphs(&model, "pruned", nothing_removed, progress)? {
            report.notes.push(said);
        }
        let (check, measured) = self.check_and_time_before_write(&model, progress)?;
        report.output_check = Some(check);
        self.save(&model, progress)?;
        say_block(progress, &crate::report::text::structured(&report));
        let prunable = report.groups.iter().filter(|g| g.blocked.is_empty()).count();
        if prunable > 0
            && report.groups.iter().all(|g| g.removed.is_empty())
            && matches!(config.amount()?, Amount::Ratio(_))
        {
            progress.say(&format!(
                "note: nothing removed: groups keep a multiple of {} channels (--round-to) and at least {} \
                 (--min-channels), and each prunable group rounds back to its size at this ratio",
                config.round_to.max(1),
                config.min_channels.unwrap_or(config.round_to)
            ));
        }
        if let (Some(before_repair), Some(_)) = (unrepaired, self.val) {
            say_block(progress, "\nwithout repair:");
            report.comparison_without_repair = self.compare(before_repair, self.val, progress)?;
            say_block(progress, "\nwith repair:");
        }
        report.comparison = self.compare(&model, self.val, progress)?;
        report.runtime = self.runtime_used(self.calib.is_some() || self.val.is_some(), progress)?;
        report.latency = self.latency(&model, measured, progress)?;
        self.write_report("prune --structured", &model, self.check_data(), &report)?;
        Ok(Done { model, report: PruneOutcome::Structured(Box::new(report)) })
    }
}
