//! `optimize`: the adaptive step. Candidates — structured pruning by MAC
//! target, the quantization modes (each with its measured per-layer float
//! fallback), and the two together — are built, judged on the validation data
//! and timed against the original in the runtime that will run them; the best
//! one that keeps the quality budget wins for the objective. Every candidate is
//! a [`Recipe`] that `apply` replays to the same bytes.

mod quality;
pub mod recipe;
mod search;

pub use quality::{Budget, Judge, Metric, Quality};
pub use recipe::{apply, apply_step, for_litert, Recipe, Step, StepReport};
pub use search::{optimize, Observer};

use serde::Serialize;

/// `90s`, `10m`, `1h` or plain seconds: a time budget as people write it.
pub fn parse_duration(s: &str) -> std::result::Result<std::time::Duration, String> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: f64 = digits.trim().parse().map_err(|_| format!("'{s}' is not a duration like 90s or 10m"))?;
    let seconds = match unit {
        's' => n,
        'm' => n * 60.0,
        'h' => n * 3600.0,
        _ => return Err(format!("'{s}': unknown unit '{unit}' (s, m or h)")),
    };
    if !(seconds.is_finite() && seconds >= 0.0) {
        return Err(format!("'{s}' is not a duration"));
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

/// What the winner is best at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Objective {
    /// The fastest in the runtime (ties within 3 %: the smaller).
    Latency,
    /// The smallest file (ties within 1 %: the faster).
    Size,
    /// The largest speed-up per size ratio.
    Both,
}

/// What `optimize` is told besides the model and the data.
#[derive(Clone, Debug)]
pub struct OptimizeConfig {
    /// How quality is scored on the validation data.
    pub metric: Metric,
    /// How much quality may be lost.
    pub budget: Budget,
    /// What "best" means among the candidates that keep the budget.
    pub objective: Objective,
    /// No new candidate is started after this long; the best so far wins.
    pub time_budget: std::time::Duration,
    /// Expected texts of the validation samples (exact lines, CER).
    pub texts: Option<Vec<String>>,
    /// Judge and time every candidate in LiteRT, converted (the job sets it for a `.tflite`
    /// output); only what a LiteRT model holds is tried.
    pub litert: bool,
}

/// One measured candidate.
#[derive(Clone, Debug, Serialize)]
pub struct Candidate {
    /// A short name, e.g. `structured −45 % MACs + static u8`.
    pub label: String,
    /// The steps as they replay (static choices recorded).
    pub recipe: Recipe,
    /// Quality on the validation data (`None` when it could not be measured).
    pub quality: Option<Quality>,
    /// The file's size as it would be written.
    pub size_bytes: u64,
    /// Size over the original's.
    pub size_ratio: f64,
    /// Original time / candidate time (batch 1, one thread, taking turns).
    pub speedup: f64,
    /// Whether the quality keeps the budget.
    pub meets_budget: bool,
    /// Not beaten on quality, speed and size together by another candidate.
    pub pareto: bool,
    /// Building and measuring it.
    pub seconds: f64,
    /// Why it could not be built or measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Candidate {
    /// Higher is better for the objective.
    fn score(&self, objective: Objective) -> f64 {
        match objective {
            Objective::Latency => self.speedup,
            Objective::Size => 1.0 / self.size_ratio.max(1e-9),
            Objective::Both => self.speedup / self.size_ratio.max(1e-9),
        }
    }

    /// Whether `self` beats `other` for the objective (scores within the tie band
    /// go to the other measure).
    fn beats(&self, other: &Candidate, objective: Objective) -> bool {
        let (a, b) = (self.score(objective), other.score(objective));
        let band = if objective == Objective::Size { 0.01 } else { 0.03 };
        if (a - b).abs() <= band * a.max(b) {
            return match objective {
                Objective::Size => self.speedup > other.speedup,
                _ => self.size_bytes < other.size_bytes,
            };
        }
        a > b
    }
}

/// What a search measured and chose.
#[derive(Clone, Debug, Serialize)]
pub struct OptimizeReport {
    /// The metric quality was scored by.
    pub metric: Metric,
    /// The budget.
    pub budget: Budget,
    /// The objective.
    pub objective: Objective,
    /// The original's quality on the validation data.
    pub original_quality: f64,
    /// The input file's size.
    pub original_size_bytes: u64,
    /// The worst quality a candidate may have.
    pub bound: f64,
    /// Every candidate measured, in the order tried.
    pub candidates: Vec<Candidate>,
    /// Index into `candidates` of the one written; `None`: none kept the budget.
    pub chosen: Option<usize>,
    /// The runtime candidates were timed in.
    pub runtime: crate::runtime::RuntimeInfo,
    /// How long the search took.
    pub seconds: f64,
    /// The time budget ran out before the search did.
    pub stopped_by_time: bool,
    /// What a user should know (budget reached, nothing kept the budget …).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Marks the candidates no other measured candidate beats on quality, speed
/// and size at once (the original counts as one: quality as it is, 1×, 1×).
fn mark_pareto(candidates: &mut [Candidate], metric: Metric, original_quality: f64) {
    let point = |c: &Candidate| {
        let q = c.quality.map(|q| q.value)?;
        Some((if metric.higher_is_better() { q } else { -q }, c.speedup, -c.size_ratio))
    };
    let original = (if metric.higher_is_better() { original_quality } else { -original_quality }, 1.0, -1.0);
    let points: Vec<_> = candidates.iter().map(point).collect();
    let dominates = |a: (f64, f64, f64), b: (f64, f64, f64)| {
        a.0 >= b.0 && a.1 >= b.1 && a.2 >= b.2 && (a.0 > b.0 || a.1 > b.1 || a.2 > b.2)
    };
    for (i, c) in candidates.iter_mut().enumerate() {
        c.pareto = points[i]
            .is_some_and(|p| !dominates(original, p) && points.iter().flatten().all(|&other| !dominates(other, p)));
    }
}

#[cfg(test)]
mod duration_tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_take_seconds_minutes_and_hours() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)), "plain seconds");
        assert!(parse_duration("3d").unwrap_err().contains("unknown unit 'd'"));
        assert!(parse_duration("-5s").unwrap_err().contains("not a duration"));
        assert!(parse_duration("soon").unwrap_err().contains("not a duration"));
    }
}

#[cfg(test)]
mod choice_tests {
    use super::*;

    fn candidate(label: &str, quality: f64, speedup: f64, size_ratio: f64) -> Candidate {
        Candidate {
            label: label.into(),
            recipe: Recipe::default(),
            quality: Some(Quality { value: quality, nn_agreement: None }),
            size_bytes: (size_ratio * 1000.0) as u64,
            size_ratio,
            speedup,
            meets_budget: true,
            pareto: false,
            seconds: 0.0,
            error: None,
        }
    }

    #[test]
    fn budgets_bound_quality_in_the_metrics_direction() {
        assert_eq!(Budget::MaxDrop(1.0).bound(Metric::Accuracy, 99.0), 98.0);
        assert_eq!(Budget::MaxDrop(0.5).bound(Metric::Cer, 1.0), 1.5, "lower CER is better");
        assert_eq!(Budget::MinQuality(0.99).bound(Metric::Cosine, 1.0), 0.99);
        assert!(!Metric::Cer.higher_is_better() && Metric::ExactLines.higher_is_better());
        assert_eq!(Metric::Cosine.show(0.99871), "cosine 0.9987");
    }

    #[test]
    fn speed_wins_for_latency_and_size_breaks_a_tie_within_3_percent() {
        let (fast, slow) = (candidate("fast", 99.0, 2.0, 0.5), candidate("slow", 99.0, 1.5, 0.3));
        assert!(fast.beats(&slow, Objective::Latency) && !slow.beats(&fast, Objective::Latency));
        let (a, b) = (candidate("a", 99.0, 2.0, 0.5), candidate("b", 99.0, 1.95, 0.3));
        assert!(b.beats(&a, Objective::Latency), "within 3 %: the smaller wins");
        assert!(slow.beats(&fast, Objective::Size));
        assert!(slow.beats(&fast, Objective::Both), "1.5/0.3 = 5 beats 2/0.5 = 4");
    }

    #[test]
    fn the_pareto_front_leaves_out_what_another_beats_on_every_measure() {
        let mut cs = vec![
            candidate("best", 99.0, 2.0, 0.3),
            candidate("beaten", 98.0, 1.5, 0.5),
            candidate("most accurate", 99.5, 1.1, 0.9),
            candidate("worse than the original", 98.0, 0.9, 1.1),
        ];
        mark_pareto(&mut cs, Metric::Accuracy, 99.4);
        let front: Vec<&str> = cs.iter().filter(|c| c.pareto).map(|c| c.label.as_str()).collect();
        assert_eq!(front, ["best", "most accurate"]);
    }
}
