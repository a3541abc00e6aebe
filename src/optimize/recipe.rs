//! Recipes: the ordered steps of a run (prune, then quantize …), each with
//! every option, as TOML a person can write or read. `apply` replays one; a
//! recipe written by `optimize` replays to the same bytes (static quantization's
//! timed choices are recorded in it as `decided`).

use crate::data::Dataset;
use crate::ir::Model;
use crate::measure::Progress;
use crate::prune::structured::StructuredReport;
use crate::prune::{PruneConfig, PruneReport, Pruned};
use crate::quant::{QuantConfig, QuantReport};
use crate::transform::{FuseConfig, Fused};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One step: a `prunq prune` or `prunq quantize` run, its options as the flags name them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Step {
    /// Graph rewrites equal up to float rounding (see `transform::fuse`).
    Fuse(FuseConfig),
    /// Unstructured, N:M or structured pruning.
    Prune(PruneConfig),
    /// Quantization, any mode.
    Quantize(QuantConfig),
}

/// The steps, in order (`[[step]]` tables in TOML).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// The steps in the order they run.
    #[serde(rename = "step", default)]
    pub steps: Vec<Step>,
}

/// What a step did.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum StepReport {
    /// What `fuse` folded.
    Fuse(Fused),
    /// Unstructured or N:M pruning's report.
    Prune(Box<PruneReport>),
    /// Structured pruning's report.
    PruneStructured(Box<StructuredReport>),
    /// Quantization's report.
    Quantize(Box<QuantReport>),
}

impl Step {
    /// A short name, e.g. `structured 45 % MACs` or `static int8`.
    pub fn label(&self) -> String {
        match self {
            Step::Fuse(f) if *f == FuseConfig::default() => "fuse".into(),
            Step::Fuse(f) => {
                let on = [
                    ("batchnorm", f.batchnorm),
                    ("affine", f.affine),
                    ("affine-forward", f.affine_forward),
                    ("hardswish", f.hardswish),
                ];
                let on: Vec<&str> = on.iter().filter(|(_, b)| *b).map(|(n, _)| *n).collect();
                format!("fuse {}", on.join("+"))
            }
            Step::Prune(p) if p.structured => match (p.target_macs, p.target_params, p.ratio, p.threshold) {
                (Some(m), ..) => format!("structured −{:.0} % MACs", m * 100.0),
                (_, Some(q), ..) => format!("structured −{:.0} % params", q * 100.0),
                (_, _, _, Some(t)) => format!("structured threshold {t}"),
                (_, _, r, _) => format!("structured ratio {}", r.unwrap_or(0.3)),
            },
            Step::Prune(p) => match p.pattern {
                Some((n, m)) => format!("{n}:{m} sparse ({:?})", p.method).to_lowercase(),
                None => format!("{:.0} % sparse ({:?})", p.sparsity * 100.0, p.method).to_lowercase(),
            },
            Step::Quantize(q) => {
                use crate::quant::{QuantMode, Rounding, WeightScheme};
                let mut s = match q.mode {
                    QuantMode::Static => format!("static {:?}", q.activations).to_lowercase(),
                    QuantMode::Dynamic => "dynamic int8".into(),
                    QuantMode::Fp16 => "fp16".into(),
                    QuantMode::Weights => match (q.codebook, q.scheme) {
                        (Some(k), _) => format!("weights codebook {k}"),
                        (None, WeightScheme::Log2) => format!("weights log2 {}-bit", q.bits),
                        (None, WeightScheme::Linear) => format!("weights int{}", q.bits),
                    },
                };
                if q.algorithm == Rounding::Gptq {
                    s += " gptq";
                }
                if q.mode != QuantMode::Fp16 {
                    s += &match q.target_sqnr {
                        t if t > 0.0 && q.int8_fallback() => format!(" (fallback to int8, {t} dB)"),
                        t if t > 0.0 => format!(" (fallback {t} dB)"),
                        _ => " (no fallback)".into(),
                    };
                }
                s
            }
        }
    }
}

impl Recipe {
    /// `step + step + …`, or `float` for none.
    pub fn label(&self) -> String {
        if self.steps.is_empty() {
            return "float (as it was)".into();
        }
        self.steps.iter().map(Step::label).collect::<Vec<_>>().join(" + ")
    }

    /// The recipe as TOML, every option written out.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self).map_err(|e| Error::Model(format!("cannot write the recipe as TOML: {e}")))
    }

    /// Reads a recipe from TOML text; `name` says where it came from in errors.
    pub fn from_toml(text: &str, name: &str) -> Result<Recipe> {
        toml::from_str(text).map_err(|e| Error::Usage(format!("{name}: not a prunq recipe: {e}")))
    }

    /// Reads a recipe file.
    pub fn read(path: &Path) -> Result<Recipe> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Recipe::from_toml(&text, &path.display().to_string())
    }

    /// Whether a step needs calibration data.
    pub fn needs_data(&self) -> bool {
        self.steps.iter().any(|s| match s {
            Step::Fuse(_) => false,
            Step::Prune(p) => p.method != crate::prune::Method::Magnitude || p.structured && p.repair,
            Step::Quantize(q) => {
                q.mode == crate::quant::QuantMode::Static || q.algorithm == crate::quant::Rounding::Gptq
            }
        })
    }
}

/// Runs one step on `model`.
pub fn apply_step(
    model: &mut Model,
    step: &Step,
    calib: Option<&Dataset>,
    progress: &dyn Progress,
) -> Result<StepReport> {
    Ok(match step {
        Step::Fuse(config) => StepReport::Fuse(crate::transform::fuse(model, config)?),
        Step::Prune(config) => match crate::prune::prune(model, config, calib, progress)? {
            Pruned::Sparse(r) => StepReport::Prune(r),
            Pruned::Structured(r, _) => StepReport::PruneStructured(r),
        },
        Step::Quantize(config) => {
            StepReport::Quantize(Box::new(crate::quant::quantize(model, config, calib, progress)?))
        }
    })
}

/// Runs the steps in order on `model`; `calib` is every step's calibration data.
pub fn apply(
    model: &mut Model,
    recipe: &Recipe,
    calib: Option<&Dataset>,
    progress: &dyn Progress,
) -> Result<Vec<StepReport>> {
    recipe.steps.iter().map(|step| apply_step(model, step, calib, progress)).collect()
}

/// `step` as a `.tflite` output takes it: static quantization marked for LiteRT (its trials timed
/// and judged there, its graph outputs given the scales the converter writes) with int8 weights
/// (LiteRT's int8 kernels take no other). `optimize` and `apply` writing a `.tflite` both use it, so a
/// recipe replays to the file its search wrote.
pub fn for_litert(step: Step) -> Step {
    match step {
        Step::Quantize(q) if q.mode == crate::quant::QuantMode::Static => {
            Step::Quantize(QuantConfig { in_litert: true, unsigned_weights: Some(false), ..q })
        }
        step => step,
    }
}

/// `step` as it replays without timing and on any CPU: static quantization's
/// measured choice (`decided` in its report) written in, its speed trials turned
/// off, and the weight type this machine chose pinned.
pub fn replayable(step: &Step, report: &StepReport) -> Step {
    match (step, report) {
        (Step::Quantize(q), StepReport::Quantize(r)) => {
            let unsigned_weights = Some(q.uses_unsigned_weights());
            match &r.decided {
                Some(decided) => Step::Quantize(QuantConfig {
                    keep_faster: false,
                    decided: Some(decided.clone()),
                    unsigned_weights,
                    ..q.clone()
                }),
                None => Step::Quantize(QuantConfig { unsigned_weights, ..q.clone() }),
            }
        }
        _ => step.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::QuantMode;

    #[test]
    fn a_recipe_survives_toml_with_every_option() {
        let recipe = Recipe {
            steps: vec![
                Step::Prune(PruneConfig { structured: true, target_macs: Some(0.5), ..Default::default() }),
                Step::Quantize(QuantConfig {
                    mode: QuantMode::Static,
                    target_sqnr: 0.0,
                    decided: Some(crate::quant::StaticDecision { int8: vec!["conv1".into()], ..Default::default() }),
                    ..Default::default()
                }),
            ],
        };
        let text = recipe.to_toml().unwrap();
        assert!(text.contains("[[step]]") && text.contains("kind = \"prune\"") && text.contains("target-macs = 0.5"));
        assert!(text.contains("round-to = 16"), "every option is written out:\n{text}");
        assert_eq!(Recipe::from_toml(&text, "r.toml").unwrap(), recipe);
        assert_eq!(recipe.label(), "structured −50 % MACs + static u8 (no fallback)");
    }

    #[test]
    fn a_hand_written_recipe_takes_defaults_and_refuses_unknown_options() {
        let r = Recipe::from_toml("[[step]]\nkind = \"quantize\"\nmode = \"dynamic\"\n", "r.toml").unwrap();
        assert_eq!(r.steps, vec![Step::Quantize(QuantConfig { mode: QuantMode::Dynamic, ..Default::default() })]);
        let e = Recipe::from_toml("[[step]]\nkind = \"quantize\"\nmodes = \"dynamic\"\n", "r.toml").unwrap_err();
        assert!(e.to_string().contains("r.toml") && e.to_string().contains("modes"), "{e}");
        let e = Recipe::from_toml("[[step]]\nkind = \"shrink\"\n", "r.toml").unwrap_err();
        assert!(e.to_string().contains("shrink"), "{e}");
    }
}
