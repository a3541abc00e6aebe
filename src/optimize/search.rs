//! The search: quantization alone (each mode with its measured per-layer
//! fallback, more layers float when the default loses too much), then
//! structured pruning up a ladder of MAC targets while the budget holds, then
//! the largest pruning that holds combined with the best quantizations. Every
//! candidate is built, judged and timed; each recipe is measured once.

use super::recipe::{apply, apply_step, replayable};
use super::{mark_pareto, Candidate, Judge, Objective, OptimizeConfig, OptimizeReport, Recipe, Step};
use crate::data::Dataset;
use crate::ir::Model;
use crate::measure::Silent;
use crate::prune::PruneConfig;
use crate::quant::{Activations, QuantConfig, QuantMode};
use crate::runtime::Runnable;
use crate::transform::{FuseConfig, Fused};
use crate::Result;
use std::collections::BTreeMap;
use std::time::Instant;

/// MAC reductions tried in turn while the pruned model keeps the budget.
const MAC_TARGETS: [f64; 7] = [0.15, 0.3, 0.45, 0.6, 0.75, 0.85, 0.9];

/// Told about the search as it goes (the CLI prints it).
pub trait Observer {
    /// A candidate is about to be built and measured.
    fn trying(&self, _label: &str) {}
    /// A candidate was measured; `best` is the best so far that keeps the budget.
    fn measured(&self, _candidate: &Candidate, _best: Option<&Candidate>) {}
    /// Whether the user asked the search to stop (see `measure::Progress::stopped`): no new
    /// candidate starts, and the search ends with `Error::Interrupted`.
    fn stopped(&self) -> bool {
        false
    }
}

impl Observer for Silent {}

struct Search<'a> {
    config: &'a OptimizeConfig,
    judge: Judge<'a>,
    calib: &'a Dataset,
    bound: f64,
    original_size: u64,
    started: Instant,
    /// Requested recipe (TOML) → its candidate.
    tried: BTreeMap<String, usize>,
    /// Leading fuse and prune steps (TOML) → the model after them.
    pruned: BTreeMap<String, Model>,
    /// Steps every later candidate starts with (the fusion, when it paid).
    prefix: Vec<Step>,
    candidates: Vec<Candidate>,
    best: Option<(usize, Model)>,
    stopped_by_time: bool,
    observer: &'a dyn Observer,
    /// The original as LiteRT runs it, when candidates are judged there.
    original_litert: Option<Vec<u8>>,
}

impl Search<'_> {
    fn meets(&self, i: usize) -> bool {
        self.candidates[i].meets_budget
    }

    /// [`Self::try_recipe`] on the prefix and `steps`.
    fn try_steps(&mut self, steps: Vec<Step>) -> Result<Option<usize>> {
        let steps = self.prefix.iter().cloned().chain(steps).collect();
        self.try_recipe(steps)
    }

    /// Builds, judges and times the recipe (once); `None` once time is up.
    fn try_recipe(&mut self, steps: Vec<Step>) -> Result<Option<usize>> {
        let requested = Recipe { steps: self.for_target(steps) };
        let key = requested.to_toml()?;
        if let Some(&i) = self.tried.get(&key) {
            return Ok(Some(i));
        }
        if self.started.elapsed() >= self.config.time_budget {
            self.stopped_by_time = true;
            return Ok(None);
        }
        if self.observer.stopped() {
            return Err(crate::Error::Interrupted);
        }
        self.observer.trying(&requested.label());
        let t = Instant::now();
        let mut candidate = Candidate {
            label: requested.label(),
            recipe: requested.clone(),
            quality: None,
            size_bytes: 0,
            size_ratio: f64::NAN,
            speedup: f64::NAN,
            meets_budget: false,
            pareto: false,
            seconds: 0.0,
            error: None,
        };
        let mut model = None;
        match self.build(&requested).and_then(|(m, recipe)| self.measure(&m, recipe, &mut candidate).map(|_| m)) {
            Ok(m) => model = Some(m),
            // A candidate that cannot be made (nothing prunable, a pass refusing
            // the model) is recorded, not fatal: the search goes on.
            Err(e) => candidate.error = Some(e.to_string()),
        }
        candidate.seconds = t.elapsed().as_secs_f64();
        let i = self.candidates.len();
        let better = candidate.meets_budget
            && self.best.as_ref().is_none_or(|(b, _)| candidate.beats(&self.candidates[*b], self.config.objective));
        self.candidates.push(candidate);
        if better {
            self.best = model.map(|m| (i, m));
        }
        self.tried.insert(key, i);
        self.observer.measured(&self.candidates[i], self.best.as_ref().map(|(b, _)| &self.candidates[*b]));
        Ok(Some(i))
    }

    /// The model a recipe makes and the recipe as it replays. Models after
    /// leading fuse and prune steps are kept for the candidates that share them.
    fn build(&mut self, recipe: &Recipe) -> Result<(Model, Recipe)> {
        let steps = &recipe.steps;
        let kept = |k: usize| Recipe { steps: steps[..k].to_vec() }.to_toml();
        let leading = steps.iter().take_while(|s| !matches!(s, Step::Quantize(_))).count();
        let mut start = 0;
        let mut model = self.judge.original.clone();
        for k in (1..=leading).rev() {
            if let Some(m) = self.pruned.get(&kept(k)?) {
                (start, model) = (k, m.clone());
                break;
            }
        }
        let mut replay = steps[..start].to_vec();
        for (k, step) in steps.iter().enumerate().skip(start) {
            let report = apply_step(&mut model, step, Some(self.calib), &Silent)?;
            replay.push(replayable(step, &report));
            if k < leading {
                self.pruned.insert(kept(k + 1)?, model.clone());
            }
        }
        Ok((model, Recipe { steps: replay }))
    }

    /// `steps` as the target runtime takes them: for LiteRT, static quantization timed there with
    /// int8 weights (LiteRT's int8 kernels take no other).
    fn for_target(&self, steps: Vec<Step>) -> Vec<Step> {
        if !self.config.litert {
            return steps;
        }
        steps.into_iter().map(super::recipe::for_litert).collect()
    }

    fn measure(&self, model: &Model, recipe: Recipe, c: &mut Candidate) -> Result<()> {
        c.recipe = recipe;
        let val = Some(self.judge.val);
        let quality = match &self.original_litert {
            None => {
                c.size_bytes = crate::onnx::file_size(model)?;
                c.speedup = crate::eval::latency_check(self.judge.original, model, val, &Silent)?.speedup;
                self.judge.measure(model, &Silent)?
            }
            // Judged, sized and timed as the .tflite it would be written as.
            Some(original) => {
                let options = crate::litert::sizes_from_data(model, val, &Default::default())?;
                let bytes = crate::litert::convert(model, &options)?.bytes;
                let (input, output) = (Runnable::LiteRt(original), Runnable::LiteRt(&bytes));
                c.size_bytes = bytes.len() as u64;
                c.speedup = crate::eval::latency_check(input, output, val, &Silent)?.speedup;
                self.judge.measure(output, &Silent)?
            }
        };
        c.size_ratio = c.size_bytes as f64 / self.original_size.max(1) as f64;
        c.meets_budget = if self.judge.metric.higher_is_better() {
            quality.value >= self.bound
        } else {
            quality.value <= self.bound
        };
        c.quality = Some(quality);
        Ok(())
    }

    /// The quantizations that kept the budget alone, best first.
    fn good_quantizations(&self, n: usize) -> Vec<QuantConfig> {
        let mut good: Vec<(usize, QuantConfig)> = self
            .tried
            .iter()
            .filter_map(|(key, &i)| {
                let r: Recipe = toml::from_str(key).ok()?;
                match r.steps.split_last() {
                    Some((Step::Quantize(q), before)) if before == self.prefix.as_slice() && self.meets(i) => {
                        Some((i, q.clone()))
                    }
                    _ => None,
                }
            })
            .collect();
        // Best first by the objective's own rule, ties within its band going
        // to the other measure (a sort by score alone let dynamic int8 at 0.91×
        // the size lead ppocr_cls_v2's search for being 2 % faster than static's
        // 0.34×: timing noise, not speed).
        let objective = self.config.objective;
        let mut best_first = vec![];
        while best_first.len() < n && !good.is_empty() {
            let mut best = 0;
            for k in 1..good.len() {
                if self.candidates[good[k].0].beats(&self.candidates[good[best].0], objective) {
                    best = k;
                }
            }
            best_first.push(good.remove(best).1);
        }
        best_first
    }
}

/// The quantizations tried alone, most promising first for the objective; for LiteRT those a
/// LiteRT model holds (no dynamic, 4-bit or codebook forms: its builtin ops have none).
fn quantizations(objective: Objective, litert: bool) -> Vec<QuantConfig> {
    let mut list = all_quantizations(objective);
    if litert {
        list.retain(|q| {
            matches!(q.mode, QuantMode::Static | QuantMode::Weights) && q.bits == 8 && q.codebook.is_none()
        });
    }
    list
}

fn all_quantizations(objective: Objective) -> Vec<QuantConfig> {
    let fast = QuantConfig { keep_faster: true, ..Default::default() };
    let statics = QuantConfig { mode: QuantMode::Static, ..fast.clone() };
    let mut list = vec![
        statics.clone(),
        QuantConfig { mode: QuantMode::Dynamic, ..fast.clone() },
        QuantConfig { target_sqnr: 0.0, ..statics },
        QuantConfig { mode: QuantMode::Weights, ..fast.clone() },
    ];
    if objective != Objective::Latency {
        // Mixed per layer: 4-bit weights, int8 where 4 bits lose too much.
        list.push(QuantConfig { bits: 4, ..fast.clone() });
        list.push(QuantConfig { bits: 4, fallback_int8: false, ..fast.clone() });
        list.push(QuantConfig { codebook: Some(16), ..fast.clone() });
        list.push(QuantConfig { codebook: Some(16), fallback_int8: false, ..fast.clone() });
        list.push(QuantConfig { mode: QuantMode::Fp16, ..fast });
    }
    list
}

/// The fusions worth trying: all of them, then without the affine folds into
/// the Conv before, then without any, then hard-swish alone (a folded scale can
/// make a layer quantize worse: measured on ppocr_rec_v4, static 82.8 → 71.9 %
/// exact lines; hard-swish alone takes away the Q/DQ pairs static puts on its
/// written-out Add and Mul — ppocr_rec_v4 static 83.6 → 85.2 %, ppocr_cls_v2
/// 100 → 97.7 % agreement); only those that change the model, each once.
fn fusions(original: &Model) -> Result<Vec<FuseConfig>> {
    let mut found: Vec<(FuseConfig, Fused)> = vec![];
    let configs = [
        FuseConfig::default(),
        FuseConfig { affine: false, ..Default::default() },
        FuseConfig { affine: false, affine_forward: false, ..Default::default() },
        FuseConfig { batchnorm: false, affine: false, affine_forward: false, hardswish: true },
    ];
    for config in configs {
        let fused = crate::transform::fuse(&mut original.clone(), &config)?;
        let changes = fused.nodes_after < fused.nodes_before;
        if changes && found.iter().all(|(_, f)| *f != fused) {
            found.push((config, fused));
        }
    }
    Ok(found.into_iter().map(|(c, _)| c).collect())
}

/// Structured pruning to a MAC target, the same share of each channel group
/// (the global ranking measured worse: ppocr_cls_v2 at −15 % MACs kept 94.5 %
/// agreement ranked globally, 96.9 % per group; after `fuse`, 35 % at −8 %).
fn structured(target_macs: f64) -> Step {
    Step::Prune(PruneConfig { structured: true, target_macs: Some(target_macs), ..Default::default() })
}

/// Searches for the best candidate that keeps the budget; returns the report
/// and that candidate's model (built again from its recipe, so that `apply`
/// gives the same bytes). `None` when no candidate kept the budget.
pub fn optimize(
    original: &Model,
    config: &OptimizeConfig,
    calib: &Dataset,
    val: &Dataset,
    observer: &dyn Observer,
) -> Result<(OptimizeReport, Option<Model>)> {
    let started = Instant::now();
    let judge = Judge { metric: config.metric, original, val, texts: config.texts.clone() };
    let original_quality = judge.measure(original, &Silent)?.value;
    let bound = config.budget.bound(config.metric, original_quality);
    let original_size = crate::onnx::file_size(original)?;
    let original_litert = match config.litert {
        true => {
            let options = crate::litert::sizes_from_data(original, Some(val), &Default::default())?;
            Some(crate::litert::convert(original, &options)?.bytes)
        }
        false => None,
    };
    let mut s = Search {
        config,
        judge,
        calib,
        bound,
        original_size,
        started,
        tried: BTreeMap::new(),
        pruned: BTreeMap::new(),
        prefix: vec![],
        candidates: vec![],
        best: None,
        stopped_by_time: false,
        observer,
        original_litert,
    };
    let mut notes = vec![];
    // 1. Quantization alone; when static with its default fallback loses too
    // much, more layers float.
    if config.litert {
        notes.push(
            "judged and timed in LiteRT as .tflite files: dynamic, 4-bit, codebook and fp16 quantization were not \
             tried (LiteRT's builtin ops hold none of them; `prunq convert --fp16` writes LiteRT's float16 form)"
                .into(),
        );
    }
    for q in quantizations(config.objective, config.litert) {
        s.try_steps(vec![Step::Quantize(q)])?;
    }
    // The per-layer choice: the fallback keeps groups float most sensitive first
    // until the estimated output SQNR reaches its target; the target is searched
    // on the validation quality — higher when the default loses too much, lower
    // (more layers int8) when everything int8 does.
    let statics = QuantConfig { mode: QuantMode::Static, keep_faster: true, ..Default::default() };
    let at = |target: f64| Step::Quantize(QuantConfig { target_sqnr: target, ..statics.clone() });
    let default_target = statics.target_sqnr;
    let default_holds = s.try_steps(vec![at(default_target)])?.map(|i| s.meets(i));
    let all_int8_holds = s.try_steps(vec![at(0.0)])?.map(|i| s.meets(i));
    match (default_holds, all_int8_holds) {
        (Some(false), _) => {
            // 16-bit activations (accuracy over speed), then more layers float.
            let wide = Step::Quantize(QuantConfig { activations: Activations::U16, ..statics.clone() });
            for step in [wide, at(30.0), at(40.0)] {
                if s.try_steps(vec![step])?.is_some_and(|i| s.meets(i)) {
                    break;
                }
            }
        }
        (Some(true), Some(false)) => {
            let (mut held, mut failed) = (default_target, 0.0);
            for _ in 0..2 {
                let mid = ((held + failed) / 2.0).round();
                match s.try_steps(vec![at(mid)])? {
                    Some(i) if s.meets(i) => held = mid,
                    Some(_) => failed = mid,
                    None => break,
                }
            }
        }
        _ => {}
    }
    // 2. Fusion, measured after the best quantization (folding can change how
    // well a layer quantizes); kept as the prefix of what follows when it wins.
    if let Some(q) = s.good_quantizations(1).pop() {
        let alone = s.best.as_ref().map(|(i, _)| *i);
        for fusion in fusions(original)? {
            let Some(i) = s.try_recipe(vec![Step::Fuse(fusion.clone()), Step::Quantize(q.clone())])? else { break };
            let wins = alone.is_none_or(|a| s.candidates[i].beats(&s.candidates[a], config.objective));
            if s.meets(i) && wins {
                s.prefix = vec![Step::Fuse(fusion)];
                break;
            }
        }
    }
    // Where size matters: zeros stored sparse (a float file past 2/3 zeros is
    // smaller; no runtime here runs it faster).
    if config.objective != Objective::Latency {
        let sparse = PruneConfig {
            sparsity: 0.75,
            method: crate::prune::Method::Sparsegpt,
            sparse_storage: true,
            ..Default::default()
        };
        s.try_steps(vec![Step::Prune(sparse)])?;
    }
    // 3. Structured pruning, more while it keeps the budget.
    let mut holds = vec![];
    let mut failed_at = None;
    for t in MAC_TARGETS {
        match s.try_steps(vec![structured(t)])? {
            Some(i) if s.meets(i) => holds.push(t),
            Some(i) => {
                match &s.candidates[i].error {
                    Some(e) => notes.push(format!("structured pruning was left out: {e}")),
                    None => failed_at = Some(t),
                }
                break;
            }
            None => break,
        }
    }
    // Two halvings between the last target that held (or none) and the first that did not.
    if let Some(mut failed) = failed_at {
        for _ in 0..2 {
            let held = holds.last().copied().unwrap_or(0.0);
            let mid = ((held + failed) / 2.0 * 100.0).round() / 100.0;
            if mid <= held || mid >= failed {
                break;
            }
            match s.try_steps(vec![structured(mid)])? {
                Some(i) if s.meets(i) => holds.push(mid),
                Some(i) if s.candidates[i].error.is_none() => failed = mid,
                _ => break,
            }
        }
    }
    // 4. The largest pruning that holds, with the quantizations that held alone.
    let quants = s.good_quantizations(2);
    'prune: for &t in holds.iter().rev() {
        for q in &quants {
            match s.try_steps(vec![structured(t), Step::Quantize(q.clone())])? {
                Some(i) if s.meets(i) => break 'prune,
                Some(_) => {}
                None => break 'prune,
            }
        }
    }
    let Search { mut candidates, best, stopped_by_time, calib, .. } = s;
    mark_pareto(&mut candidates, config.metric, original_quality);
    let chosen = best.as_ref().map(|(i, _)| *i);
    let model = match best {
        Some((i, searched)) => {
            // What `apply` makes from the recipe is what is written.
            let mut replayed = original.clone();
            apply(&mut replayed, &candidates[i].recipe, Some(calib), &Silent)?;
            if crate::onnx::encode(&replayed)? != crate::onnx::encode(&searched)? {
                notes.push(
                    "the recipe replayed to different bytes than the searched candidate; the replay is written".into(),
                );
            }
            Some(replayed)
        }
        None => None,
    };
    if stopped_by_time {
        notes.push(format!(
            "the time budget ({} s) ran out: the best candidate found so far was kept",
            config.time_budget.as_secs()
        ));
    }
    let report = OptimizeReport {
        metric: config.metric,
        budget: config.budget,
        objective: config.objective,
        original_quality,
        original_size_bytes: original_size,
        bound,
        candidates,
        chosen,
        runtime: match config.litert {
            true => crate::runtime::RuntimeInfo::of(crate::runtime::Backend::LiteRt),
            false => crate::runtime::RuntimeInfo::current()?,
        },
        seconds: started.elapsed().as_secs_f64(),
        stopped_by_time,
        notes,
    };
    Ok((report, model))
}
