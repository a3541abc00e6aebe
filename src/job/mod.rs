//! One job per command that writes a model — `quantize`, `prune`, `apply`, `optimize` — each the
//! pass followed by the same tail, so every front end (the CLI, a library caller) gets the same
//! guarantees: the result is run beside the original and refused when its outputs turn non-finite
//! (nothing is written then), saved atomically (external data when asked), compared on data, timed
//! where it will run, and reported. What a job has to tell the user goes through
//! [`Progress::say`]; the same facts land in the typed report it returns.

mod apply;
mod convert;
mod demo;
mod optimize;
mod prune;
mod quantize;
mod report;
mod specialise;

pub use apply::ApplyReport;
pub use convert::{in_litert, ConvertReport, ConvertedModel};
pub use demo::demo;
pub use optimize::{default_budget, default_metric, Announce, Optimized};
pub use prune::PruneOutcome;

use crate::data::Dataset;
use crate::eval::{CompareReport, LatencyCheck, OutputCheck};
use crate::ir::Model;
use crate::measure::Progress;
use crate::runtime::RuntimeInfo;
use crate::Result;
use std::path::{Path, PathBuf};

/// The checks and outputs every job shares; `Default` is what the CLI does without flags.
#[derive(Clone, Debug)]
pub struct Checks {
    /// Time the output against the input where it runs (batch 1, one thread). Static quantization
    /// also keeps int8 only for the op groups that measure faster when this is on.
    pub latency: bool,
    /// Write weights to an external data file beside the model (done anyway past 2 GB).
    pub external_data: bool,
    /// Write the job's report here: JSON, or a self-contained HTML page when the name ends in `.html`.
    pub report: Option<PathBuf>,
    /// Refuse to write a result whose quality on the validation data is past this budget.
    pub budget: Option<QualityBudget>,
    /// Inputs frozen to a value before the pass (`--fix-input`): the `If`s they decide become the
    /// branch they take, and the job works from — and judges against — that specialised original.
    pub fix_inputs: Vec<crate::transform::FixedInput>,
}

impl Default for Checks {
    fn default() -> Self {
        Checks { latency: true, external_data: false, report: None, budget: None, fix_inputs: vec![] }
    }
}

/// The least quality a written result must keep, judged on the validation data as `optimize`
/// judges its candidates.
#[derive(Clone, Debug)]
pub struct QualityBudget {
    /// How quality is scored (default: accuracy when the data has labels, exact lines with
    /// texts, else top-1 agreement with the original).
    pub metric: Option<crate::optimize::Metric>,
    /// How much may be lost, or how good the result must be.
    pub budget: crate::optimize::Budget,
    /// Expected texts of the validation samples (exact lines, CER).
    pub texts: Option<Vec<String>>,
}

/// A job's model, files and data.
pub struct Job<'a> {
    /// The model as read (never changed).
    pub original: &'a Model,
    /// The file it was read from (its size is reported; the output may not be it).
    pub input: Option<&'a Path>,
    /// Where the result goes; without it the result is only returned.
    pub output: Option<&'a Path>,
    /// Calibration data for the passes that need it.
    pub calib: Option<&'a Dataset>,
    /// Validation data: the result is compared with the original on it (and checked and timed on
    /// it, else on `calib`).
    pub val: Option<&'a Dataset>,
    /// What is checked and written besides the model.
    pub checks: Checks,
    /// A `.tflite` output's LiteRT form of the input and of the result, converted once and
    /// shared by the save, the comparison and the timing.
    litert: std::sync::OnceLock<(Vec<u8>, Vec<u8>)>,
    /// The output SQNR a `.tflite` output's dynamic-range layers must keep (a quantize job's
    /// fallback target), else they compute in float.
    litert_floor_db: std::cell::Cell<Option<f64>>,
    /// The original specialised to `checks.fix_inputs`, made by the job's first step.
    specialised: std::sync::OnceLock<Model>,
    /// The calibration data split into the rows the pass fits to and those the check holds out
    /// (see [`HOLD_OUT_FROM_ROWS`]), when it is split.
    held_out: std::sync::OnceLock<Option<HeldOut>>,
    /// What the job does with the calibration data.
    calib_use: std::cell::Cell<CalibUse>,
}

/// What a job does with its calibration data.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CalibUse {
    /// A pass fits to it, less the rows a large set lends to the check (`quantize`, `prune`).
    Fit,
    /// A pass fits to every row: a recipe replays what `optimize` fitted (`apply`).
    FitEveryRow,
    /// Nothing is fitted; the result only runs on it (`convert`).
    Run,
}

/// Calibration data of at least this many rows lends [`crate::eval::CHECK_ROWS`] of them, spread
/// over it, to the check of the result when there is no validation data: the pass fits to the
/// rest, and the quality line is measured on rows it did not fit to. A smaller set stays whole
/// for the pass — 32 of 64 rows would cost the fit more than the check gains — and the line says
/// it was measured on rows the pass fitted to.
pub const HOLD_OUT_FROM_ROWS: usize = 512;

/// Calibration data split for a check on rows the pass did not fit to.
struct HeldOut {
    /// What the pass fits to.
    fit: Dataset,
    /// What the result is checked and timed on.
    check: Dataset,
    /// The rows of `fit`.
    fit_rows: usize,
}

/// A job's result: the model (as written, when an output was given) and its report.
pub struct Done<R> {
    /// The result.
    pub model: Model,
    /// What was done and measured.
    pub report: R,
}

impl<'a> Job<'a> {
    /// A job on `original` that writes nothing and runs the default checks.
    pub fn new(original: &'a Model) -> Self {
        Job {
            original,
            input: None,
            output: None,
            calib: None,
            val: None,
            checks: Checks::default(),
            litert: Default::default(),
            litert_floor_db: Default::default(),
            specialised: Default::default(),
            held_out: Default::default(),
            calib_use: std::cell::Cell::new(CalibUse::Fit),
        }
    }

    /// Fails before any work when the output would overwrite the input.
    fn ensure_output_is_not_input(&self) -> Result<()> {
        match (self.input, self.output) {
            (Some(input), Some(output)) => crate::onnx::ensure_not_input(input, output),
            _ => Ok(()),
        }
    }

    /// The data a result is checked and timed on: the validation data, else the calibration rows
    /// the pass did not fit to, else the calibration data.
    fn check_data(&self) -> Option<&Dataset> {
        self.val.or(self.held_out().map(|h| &h.check)).or(self.calib)
    }

    /// The data the pass fits to: the calibration data, less the rows the check holds out.
    fn fit_data(&self) -> Option<&Dataset> {
        self.held_out().map(|h| &h.fit).or(self.calib)
    }

    /// The calibration data split when there is no validation data and it has at least
    /// [`HOLD_OUT_FROM_ROWS`] rows for the model's inputs. Data that does not bind stays whole:
    /// the pass then says what is wrong with it.
    fn held_out(&self) -> Option<&HeldOut> {
        let split = || {
            let calib = self.calib.filter(|_| self.val.is_none() && self.calib_use.get() == CalibUse::Fit)?;
            let rows = calib.bind(&crate::runtime::feed_inputs(self.original()), None).ok()?.rows;
            (rows >= HOLD_OUT_FROM_ROWS).then(|| {
                let n = crate::eval::CHECK_ROWS;
                let check: Vec<usize> = (0..n).map(|i| i * rows / n).collect();
                let fit: Vec<usize> = (0..rows).filter(|r| check.binary_search(r).is_err()).collect();
                HeldOut { fit: calib.rows(&fit), check: calib.rows(&check), fit_rows: fit.len() }
            })
        };
        self.held_out.get_or_init(split).as_ref()
    }

    /// The input's size in bytes: its file's, else the encoded model's.
    fn input_size(&self) -> Result<u64> {
        match self.input {
            Some(path) => Ok(std::fs::metadata(path).map_err(|e| crate::Error::io(path, e))?.len()),
            None => crate::onnx::file_size(self.original()),
        }
    }

    /// [`Job::check_before_write`], and — for a job that times its result, on data, in the runtime
    /// prunq measures in — the latency check from the same pair of sessions (see
    /// [`crate::eval::check_outputs_timed`]), for [`Job::latency`] to say.
    fn check_and_time_before_write(
        &self,
        model: &Model,
        progress: &dyn Progress,
    ) -> Result<(OutputCheck, Option<LatencyCheck>)> {
        if let Some(data) = self.check_data().filter(|_| self.checks.latency && self.times_in_process()) {
            match crate::eval::check_outputs_timed(self.original(), model, data, progress) {
                Ok((check, latency)) => {
                    self.judge_check(&check, model, progress)?;
                    return Ok((check, Some(latency)));
                }
                Err(crate::Error::Interrupted) => return Err(crate::Error::Interrupted),
                // The check on its own says what fails: a runtime that cannot run the original is
                // skipped, one that runs the original but not the result is an error; the latency
                // check then says why the speed was not measured.
                Err(_) => {}
            }
        }
        Ok((self.check_before_write(model, progress)?, None))
    }

    /// Whether the result is timed in the process's runtime (not LiteRT's) with both models held
    /// at once (see [`LATENCY_CHECK_MAX_WEIGHTS`]).
    fn times_in_process(&self) -> bool {
        !self.writes_litert() && self.input_weight_bytes() <= LATENCY_CHECK_MAX_WEIGHTS
    }

    /// The bytes of the input's weights.
    fn input_weight_bytes(&self) -> usize {
        self.original().graph.initializers.iter().map(|t| t.byte_size()).sum()
    }

    /// Runs the result beside the original (see [`crate::eval::check_outputs`]) in the runtime
    /// prunq measures in; refuses it when its outputs turned non-finite, says so when one diverges.
    fn check_before_write(&self, model: &Model, progress: &dyn Progress) -> Result<OutputCheck> {
        let backends = vec![crate::runtime::default_backend()?];
        progress.start(1, "quality check");
        let check = crate::eval::check_outputs(self.original(), model, self.check_data(), &backends)?;
        progress.finish();
        self.judge_check(&check, model, progress)?;
        Ok(check)
    }

    /// Refuses the result when the check found outputs turned non-finite (or, with a budget, its
    /// quality past it); says its quality line and any divergence.
    fn judge_check(&self, check: &OutputCheck, model: &Model, progress: &dyn Progress) -> Result<()> {
        if let Some(refusal) = check.refusal() {
            return Err(refusal);
        }
        self.say_quality(check, progress);
        if let Some(budget) = &self.checks.budget {
            self.keep_budget(model, budget, progress)?;
        }
        Ok(())
    }

    /// Says the check's quality line per output, and a warning for each output (or slice of one)
    /// that diverges from the original's.
    fn say_quality(&self, check: &OutputCheck, progress: &dyn Progress) {
        let rows = check.rows.map(|n| format!("{n} rows of ")).unwrap_or_default();
        let on = match (self.val, self.calib, self.held_out()) {
            (Some(_), ..) => format!("on {rows}the validation data"),
            (None, Some(_), Some(held_out)) => format!(
                "on {rows}the calibration data held out from the pass (it fitted to the other {})",
                held_out.fit_rows
            ),
            (None, Some(_), None) if self.calib_use.get() == CalibUse::Run => format!("on {rows}the calibration data"),
            (None, Some(_), None) if self.calib_use.get() == CalibUse::FitEveryRow => {
                format!("on {rows}the calibration data (what the recipe fitted to: pass --val for held-out data)")
            }
            (None, Some(_), None) => format!(
                "on {rows}the calibration data (what the pass fitted to: pass --val, or {HOLD_OUT_FROM_ROWS} rows or \
                 more, for held-out data)"
            ),
            (None, None, _) => match check.made_up_size {
                Some(n) => format!("on made-up inputs, open dims at {n} (pass --val to judge on data)"),
                None => "on made-up inputs (pass --val to judge on data)".into(),
            },
        };
        for o in &check.outputs {
            progress.say(&format!("quality {on} in {}: {}", o.runtime, o.quality()));
        }
        let hint = if check.synthetic { " (on made-up inputs: pass --val to judge on data)" } else { "" };
        for o in &check.outputs {
            if let Some(w) = o.slice_diverges() {
                progress.say(&format!(
                    "warning: entry {} of output '{}' diverges from the original's in {}: SQNR {:.1} dB \
                     while the whole output has {:.1} dB{hint}",
                    w.place(),
                    o.name,
                    o.runtime,
                    w.sqnr_db,
                    o.sqnr_db
                ));
            }
        }
        for o in check.outputs.iter().filter(|o| o.diverges()) {
            progress.say(&format!(
                "warning: output '{}' diverges from the original's in {}: SQNR {:.1} dB, worst cosine {:.3}{}",
                o.name, o.runtime, o.sqnr_db, o.cosine_min, hint
            ));
        }
    }

    /// Refuses the result when its quality on the validation data is past `budget`.
    fn keep_budget(&self, model: &Model, budget: &QualityBudget, progress: &dyn Progress) -> Result<()> {
        let Some(val) = self.val else {
            return Err(crate::Error::Usage(
                "a quality budget (--min-quality or --max-drop) needs validation data (--val)".into(),
            ));
        };
        let metric = match budget.metric {
            Some(m) => m,
            None => optimize::default_metric(self.original(), val, budget.texts.is_some())?,
        };
        let judge = crate::optimize::Judge { metric, original: self.original(), val, texts: budget.texts.clone() };
        let (original, result) =
            (judge.measure(self.original(), progress)?.value, judge.measure(model, progress)?.value);
        let bound = budget.budget.bound(metric, original);
        let kept = if metric.higher_is_better() { result >= bound - 1e-9 } else { result <= bound + 1e-9 };
        let said = format!(
            "{} (the original {}, at worst {})",
            metric.show(result),
            metric.show(original),
            metric.show(bound)
        );
        if !kept {
            return Err(crate::Error::Model(format!("the result is past the quality budget, not written: {said}")));
        }
        progress.say(&format!("quality budget kept: {said}"));
        Ok(())
    }

    /// Writes the result where asked (atomically; external data when asked); its size in bytes
    /// (the encoded model's when nothing is written).
    fn save(&self, model: &Model, progress: &dyn Progress) -> Result<u64> {
        progress.check_stop()?;
        let Some(output) = self.output else { return crate::onnx::file_size(model) };
        if self.writes_litert() {
            let bytes = self.litert_of(model, progress)?;
            progress.check_stop()?;
            crate::onnx::write_atomically(output, &bytes)?;
            return Ok(bytes.len() as u64);
        }
        let external = if self.checks.external_data { crate::onnx::ExternalMode::Always } else { Default::default() };
        crate::onnx::save(model, output, &crate::onnx::SaveOptions { external })?;
        Ok(std::fs::metadata(output).map_err(|e| crate::Error::io(output, e))?.len())
    }

    /// Compares the result with the original on `data` (when given) and says the table.
    fn compare(&self, model: &Model, data: Option<&Dataset>, progress: &dyn Progress) -> Result<Option<CompareReport>> {
        let Some(data) = data else { return Ok(None) };
        let c = match self.writes_litert() {
            false => crate::eval::compare(self.original(), model, data, &Default::default(), progress)?,
            true => {
                let (_, written) = self.litert_pair(model)?;
                let written = crate::runtime::Runnable::LiteRt(&written);
                crate::eval::compare(self.original(), written, data, &Default::default(), progress)?
            }
        };
        say_block(progress, &crate::report::text::compare(&c));
        Ok(Some(c))
    }

    /// The runtime that ran models for the job (`ran` says whether any did), said and returned
    /// for its report.
    fn runtime_used(&self, ran: bool, progress: &dyn Progress) -> Result<Option<RuntimeInfo>> {
        if !ran {
            return Ok(None);
        }
        let info = RuntimeInfo::current()?;
        progress.say(&format!("measured in {info}"));
        Ok(Some(info))
    }

    /// Times the result against the original where it will run (see
    /// [`crate::eval::latency_check`]) unless `measured` already did (with the check before
    /// writing), says the speed-up, and says so plainly when the output is slower. `None` when
    /// the checks leave it out or the model is too large to time twice.
    fn latency(
        &self,
        model: &Model,
        measured: Option<LatencyCheck>,
        progress: &dyn Progress,
    ) -> Result<Option<LatencyCheck>> {
        if !self.checks.latency {
            return Ok(None);
        }
        // Timing side by side holds both models in the runtime at once, each unpacked to float.
        let weights = self.input_weight_bytes();
        if weights > LATENCY_CHECK_MAX_WEIGHTS {
            progress.say(&format!(
                "note: the output's speed was not measured: the input has {} of weights, and timing both models \
                 side by side would hold about {} in memory; `prunq bench` times them when that fits",
                crate::report::table::bytes(weights as u64),
                crate::report::table::bytes(3 * weights as u64)
            ));
            return Ok(None);
        }
        // A LiteRT output is timed in LiteRT against the input converted as it is (float32).
        let timed = match (measured, self.writes_litert()) {
            (Some(measured), _) => Ok(measured),
            (None, false) => crate::eval::latency_check(self.original(), model, self.check_data(), progress),
            (None, true) => self.litert_pair(model).and_then(|(input, output)| {
                crate::eval::latency_check(
                    crate::runtime::Runnable::LiteRt(&input),
                    crate::runtime::Runnable::LiteRt(&output),
                    self.check_data(),
                    progress,
                )
            }),
        };
        // A model the runtime cannot run (a custom op) is still written: its speed is then
        // unknown, which is said, not an error.
        let c = match timed {
            Ok(c) => c,
            Err(e) => {
                progress.say(&format!("note: the output's speed was not measured: {e}"));
                return Ok(None);
            }
        };
        let times = format!("{:.3} → {:.3} ms per run", c.input_ms, c.output_ms);
        let setting = format!("{}, batch 1, 1 thread, {}, {} runs each taking turns", c.runtime, c.inputs, c.runs);
        if c.slower() {
            progress.say(&format!(
                "warning: the output runs SLOWER than the input: {:.2}× the speed ({times}; {setting})",
                c.speedup
            ));
        } else {
            progress.say(&format!("speed: {:.2}× the input's ({times}; {setting})", c.speedup));
        }
        Ok(Some(c))
    }
}

/// Above this many bytes of input weights the latency check is left out (said in a note): both
/// models in memory at once would be several times the weights.
const LATENCY_CHECK_MAX_WEIGHTS: usize = 512 << 20;

/// Says a block of text (a table) line by line.
fn say_block(progress: &dyn Progress, text: &str) {
    for line in text.strip_suffix('\n').unwrap_or(text).split('\n') {
        progress.say(line);
    }
}

/// Says what the clean-up before a pass changed (or why it was not done).
fn say_simplified(s: &Option<crate::transform::Simplification>, progress: &dyn Progress) {
    let Some(s) = s else { return };
    if let Some(why) = &s.skipped {
        progress.say(&format!("note: the graph was not simplified: {why}"));
    } else if s.nodes_after < s.nodes_before || s.folded + s.reshapes > 0 {
        progress.say(&format!(
            "simplified: {} → {} nodes ({} shape computations folded, {} reshape targets made constant; same outputs checked)",
            s.nodes_before, s.nodes_after, s.folded, s.reshapes
        ));
    }
}

/// Says loudly that weights inside If/Loop/Scan bodies were left as they are (by a pass that needs
/// a plain graph: static quantization, structured pruning), naming the inputs `--fix-input` would
/// fix to specialise the model; an error when the pass did nothing and most of the model's
/// weights are there.
fn untouched_subgraphs(
    model: &Model,
    what: &str,
    nothing_done: bool,
    progress: &dyn Progress,
) -> Result<Option<String>> {
    let inside = model.weights_in_subgraphs();
    if inside.is_empty() {
        return Ok(None);
    }
    let total: usize = inside.iter().map(|(_, n)| n).sum();
    let nodes: Vec<&str> = inside.iter().map(|(n, _)| n.as_str()).collect();
    let deciding = crate::transform::deciding_inputs(model);
    let hint = match deciding.is_empty() {
        true => String::new(),
        false => {
            let fixes: Vec<String> = deciding.iter().map(|i| format!("--fix-input {i}=VALUE")).collect();
            format!(" ({} specialises the model to the branch that value takes)", fixes.join(" "))
        }
    };
    let said = format!(
        "{total} weight values inside the subgraphs of {} were not {what}: this pass needs a plain graph{hint}",
        nodes.join(", ")
    );
    let outside: usize = model.graph.initializers.iter().map(|t| t.dims.iter().product::<i64>().max(0) as usize).sum();
    if nothing_done && total > outside {
        return Err(crate::Error::Model(format!("nothing outside control flow to work on: {said}")));
    }
    progress.say(&format!("warning: {said}"));
    Ok(Some(said))
}

#[cfg(test)]
mod tests;
