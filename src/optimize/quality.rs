//! Quality of a candidate on the validation data, in one number per metric,
//! and the budget it must keep.

use crate::data::Dataset;
use crate::eval::{compare, evaluate, RunOptions};
use crate::ir::Model;
use crate::measure::{Progress, Silent};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// How a candidate is judged. Percentages are in points (0–100); cosine is 0–1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    /// Top-1 accuracy against the labels, %.
    Accuracy,
    /// Top-1 agreement of the first output with the original model's, %.
    Agreement,
    /// Mean cosine similarity of the first output with the original's.
    Cosine,
    /// Lines read exactly right (CTC-decoded first output against the expected texts), %.
    ExactLines,
    /// Character error rate against the expected texts, % (lower is better).
    Cer,
}

impl Metric {
    /// Whether larger values are better (not for CER).
    pub fn higher_is_better(self) -> bool {
        self != Metric::Cer
    }

    /// How a value of this metric is written.
    pub fn show(self, v: f64) -> String {
        match self {
            Metric::Cosine => format!("cosine {v:.4}"),
            Metric::Accuracy => format!("{v:.2} % accuracy"),
            Metric::Agreement => format!("{v:.2} % agreement"),
            Metric::ExactLines => format!("{v:.2} % exact lines"),
            Metric::Cer => format!("CER {v:.2} %"),
        }
    }
}

/// What a candidate must keep.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Budget {
    /// At most this much worse than the original (in the metric's unit).
    MaxDrop(f64),
    /// At least this good (at most this, for CER).
    MinQuality(f64),
}

impl Budget {
    /// The budget a front end's two options give: `max_drop` or `min_quality`, not both; `None`
    /// without either.
    pub fn given(max_drop: Option<f64>, min_quality: Option<f64>) -> crate::Result<Option<Budget>> {
        match (max_drop, min_quality) {
            (Some(_), Some(_)) => Err(crate::Error::Usage("give max-drop or min-quality, not both".into())),
            (Some(d), None) => Ok(Some(Budget::MaxDrop(d))),
            (None, Some(q)) => Ok(Some(Budget::MinQuality(q))),
            (None, None) => Ok(None),
        }
    }

    /// The worst quality allowed, given the original's.
    pub fn bound(self, metric: Metric, original: f64) -> f64 {
        match self {
            Budget::MaxDrop(d) if metric.higher_is_better() => original - d,
            Budget::MaxDrop(d) => original + d,
            Budget::MinQuality(q) => q,
        }
    }
}

/// One measurement of a candidate.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Quality {
    /// In the metric's unit.
    pub value: f64,
    /// Nearest-neighbour agreement with the original (embeddings), %.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nn_agreement: Option<f64>,
}

/// Measures candidates against the original on the validation data.
pub struct Judge<'a> {
    /// The metric.
    pub metric: Metric,
    /// The model candidates are judged against.
    pub original: &'a Model,
    /// The validation data.
    pub val: &'a Dataset,
    /// Expected texts, one per sample (exact lines, CER).
    pub texts: Option<Vec<String>>,
}

impl Judge<'_> {
    /// Scores `model` (ONNX, or a `.tflite` run in LiteRT) on the validation data.
    pub fn measure<'m>(
        &self,
        model: impl Into<crate::runtime::Runnable<'m>>,
        progress: &dyn Progress,
    ) -> Result<Quality> {
        let model = model.into();
        let run = RunOptions { texts: self.texts.clone(), ..Default::default() };
        Ok(match self.metric {
            Metric::Accuracy => {
                let r = evaluate(model, self.val, &run, progress)?;
                let a = r.accuracy.ok_or_else(|| {
                    Error::Usage(
                        "metric accuracy needs labels in the validation data (or choose another metric)".into(),
                    )
                })?;
                Quality { value: 100.0 * a, nn_agreement: None }
            }
            Metric::ExactLines | Metric::Cer => {
                if self.texts.is_none() {
                    return Err(Error::Usage(format!(
                        "metric {} needs the expected texts (option text)",
                        if self.metric == Metric::Cer { "cer" } else { "exact-lines" }
                    )));
                }
                let r = evaluate(model, self.val, &run, progress)?;
                let v = if self.metric == Metric::Cer { r.cer } else { r.exact_match };
                Quality { value: 100.0 * v.unwrap_or(0.0), nn_agreement: None }
            }
            Metric::Agreement | Metric::Cosine => {
                let r = compare(self.original, model, self.val, &Default::default(), &Silent)?;
                let first = r.outputs.first().ok_or_else(|| Error::Model("the model has no outputs".into()))?;
                let value =
                    if self.metric == Metric::Cosine { first.cosine_mean } else { 100.0 * first.top1_agreement };
                Quality { value, nn_agreement: first.nn_agreement.map(|a| 100.0 * a) }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Budget;

    #[test]
    fn a_budget_is_one_limit_or_none() {
        assert_eq!(Budget::given(Some(1.0), None).unwrap(), Some(Budget::MaxDrop(1.0)));
        assert_eq!(Budget::given(None, Some(0.9)).unwrap(), Some(Budget::MinQuality(0.9)));
        assert_eq!(Budget::given(None, None).unwrap(), None);
        assert!(Budget::given(Some(1.0), Some(0.9)).unwrap_err().to_string().contains("not both"));
    }
}
