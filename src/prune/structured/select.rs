//! Which channels go: by a ratio per group, one global ranking, a score
//! threshold, or the smallest amount that removes a target share of the
//! model's MACs or parameters. Channel counts are rounded up to multiples of
//! `round_to` (runtimes' fast kernels want them) and never fall below a minimum.

use super::remove::{shapes_after, Costing, Plan};
use crate::analysis::dependency::{lcm, DependencyGraph};
use crate::{Error, Result};
use serde::Serialize;
use std::collections::BTreeMap;

/// How many channels to remove.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Amount {
    /// Remove this fraction of channels (of each group, or overall with a global ranking).
    Ratio(f64),
    /// Remove channels whose score is below this fraction of their group's best.
    Threshold(f64),
    /// Remove at least this fraction of the model's MACs.
    TargetMacs(f64),
    /// Remove at least this fraction of the model's parameters.
    TargetParams(f64),
}

/// How channels of different groups are compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Ranking {
    /// The same fraction of every group.
    Uniform,
    /// One ranking of all channels, scores normalised by their group's best.
    Global,
}

/// Channel counts are kept multiples of this by default: the channel block of ONNX Runtime's
/// AVX-512 conv kernels (a multiple of AVX2's 8); other counts fall off the fast path.
pub const DEFAULT_ROUND_TO: usize = 16;

/// What is removed: the amount and the ranking.
#[derive(Clone, Debug)]
pub struct Selection {
    /// How many channels go.
    pub amount: Amount,
    /// How groups are ranked against each other.
    pub ranking: Ranking,
    /// Keep channel counts multiples of this (1: any count).
    pub round_to: usize,
    /// Never keep fewer channels than this in a group (all of a smaller group stay).
    pub min_channels: usize,
}

/// Scores of the prunable groups, by group id.
pub type Scores = BTreeMap<usize, Vec<f64>>;

/// What the cost of a plan is measured on (for targets).
pub struct CostContext<'a> {
    pub costing: &'a Costing<'a>,
    pub shapes: &'a BTreeMap<String, Vec<usize>>,
    pub deps: &'a DependencyGraph,
}

/// Each group's channel runs (only groups with more than one: a grouped Conv's
/// filters), from each of which a removal takes the same number.
type Runs = BTreeMap<usize, usize>;

pub fn select(scores: &Scores, s: &Selection, ctx: &CostContext) -> Result<Plan> {
    let runs: Runs = ctx.deps.groups.iter().filter(|g| g.blocks > 1).map(|g| (g.id, g.blocks)).collect();
    let check = |what: &str, v: f64| {
        if (0.0..1.0).contains(&v) {
            Ok(v)
        } else {
            Err(Error::Usage(format!("{what} {v} must be in [0, 1)")))
        }
    };
    match s.amount {
        Amount::Ratio(r) => Ok(plan_at(scores, s, &runs, check("ratio", r)?)),
        Amount::Threshold(t) => {
            check("threshold", t)?;
            Ok(scores
                .iter()
                .map(|(&g, sc)| {
                    let norm = normalized(sc);
                    let wanted = norm.iter().filter(|&&v| v >= t).count();
                    let runs = runs_of(&runs, g);
                    (g, removed(sc, keep_count(sc.len(), wanted, s, runs), runs))
                })
                .filter(|(_, r)| !r.is_empty())
                .collect())
        }
        Amount::TargetMacs(r) => search(scores, s, &runs, ctx, check("target-macs", r)?, (|c| c.macs, "MACs")),
        Amount::TargetParams(r) => {
            search(scores, s, &runs, ctx, check("target-params", r)?, (|c| c.params, "parameters"))
        }
    }
}

/// Channel scores divided by the group's best (all ones if every score is 0).
fn normalized(scores: &[f64]) -> Vec<f64> {
    let max = scores.iter().copied().fold(0.0, f64::max);
    scores.iter().map(|&v| if max > 0.0 { v / max } else { 1.0 }).collect()
}

fn runs_of(runs: &Runs, group: usize) -> usize {
    runs.get(&group).copied().unwrap_or(1)
}

/// Channels to keep when `wanted` would: rounded up (to a multiple of
/// `round_to` and of the group's `runs`), at least the minimum.
fn keep_count(channels: usize, wanted: usize, s: &Selection, runs: usize) -> usize {
    let n = lcm(s.round_to.max(1), runs);
    let rounded = wanted.div_ceil(n) * n;
    rounded.max(s.min_channels.max(1).div_ceil(runs) * runs).min(channels)
}

/// The channels that go when `keep` stay: the lowest-scoring ones, the same
/// number from each of the `runs` equal runs.
fn removed(scores: &[f64], keep: usize, runs: usize) -> Vec<usize> {
    if runs <= 1 {
        return lowest(scores, keep);
    }
    let run = scores.len() / runs;
    (0..runs)
        .flat_map(|r| lowest(&scores[r * run..(r + 1) * run], keep / runs).into_iter().map(move |c| r * run + c))
        .collect()
}

/// The `channels - keep` lowest-scoring channels (ties: the later index goes), sorted.
fn lowest(scores: &[f64], keep: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(b.cmp(&a)));
    let mut gone: Vec<usize> = idx.into_iter().take(scores.len().saturating_sub(keep)).collect();
    gone.sort_unstable();
    gone
}

/// The plan that removes fraction `t` of the channels (per group or globally).
fn plan_at(scores: &Scores, s: &Selection, runs: &Runs, t: f64) -> Plan {
    let cutoff = match s.ranking {
        Ranking::Uniform => None,
        Ranking::Global => {
            let mut all: Vec<f64> = scores.values().flat_map(|v| normalized(v)).collect();
            all.sort_by(f64::total_cmp);
            let k = (all.len() as f64 * t).floor() as usize;
            Some(if k == 0 { f64::NEG_INFINITY } else { all[k - 1] })
        }
    };
    scores
        .iter()
        .map(|(&g, sc)| {
            let c = sc.len();
            let wanted = match cutoff {
                None => c - (c as f64 * t).floor() as usize,
                Some(cut) => normalized(sc).iter().filter(|&&v| v > cut).count(),
            };
            let runs = runs_of(runs, g);
            (g, removed(sc, keep_count(c, wanted, s, runs), runs))
        })
        .filter(|(_, r)| !r.is_empty())
        .collect()
}

/// The smallest fraction whose plan removes at least `target` of the measure.
fn search(
    scores: &Scores,
    s: &Selection,
    runs: &Runs,
    ctx: &CostContext,
    target: f64,
    (measure, unit): (Measure, &str),
) -> Result<Plan> {
    let before = measure(&ctx.costing.cost(ctx.shapes)) as f64;
    let removed = |t: f64| {
        let plan = plan_at(scores, s, runs, t);
        let after = measure(&ctx.costing.cost(&shapes_after(ctx.shapes, ctx.deps, &plan))) as f64;
        (plan, if before > 0.0 { 1.0 - after / before } else { 0.0 })
    };
    let (plan, most) = removed(1.0);
    if most < target {
        let groups = ctx.deps.groups.iter().map(|g| (g.channels, g.blocked.as_slice()));
        let blocker = crate::analysis::dependency::top_blocker(groups).map_or(String::new(), |b| format!(": {b}"));
        let limits = binding_limits(scores, s, runs, ctx, measure, (before, most), &blocker);
        return Err(Error::Usage(format!(
            "at most {:.1} % of the {unit} can be removed (asked {:.1} %): {limits}",
            most * 100.0,
            target * 100.0
        )));
    }
    let (mut lo, mut hi, mut best) = (0.0, 1.0, plan);
    for _ in 0..30 {
        let mid = (lo + hi) / 2.0;
        let (plan, got) = removed(mid);
        if got >= target {
            hi = mid;
            best = plan;
        } else {
            lo = mid;
        }
    }
    Ok(give_back(best, scores, s, runs, |plan| {
        let after = measure(&ctx.costing.cost(&shapes_after(ctx.shapes, ctx.deps, plan))) as f64;
        before > 0.0 && 1.0 - after / before >= target
    }))
}

/// What a plan is measured in: MACs or parameters, and the word for it.
type Measure = fn(&super::remove::Cost) -> u64;

/// What binds when a target cannot be met: of the share of the measure that stays at the most a
/// selection can remove, how much the width floors (`--min-channels`, `--round-to`) keep, how
/// much blocked groups keep, and how much no channel group can change (the model's input and
/// output channels) — each as a share of the whole model's, found by costing the plans that cut
/// every prunable group, then every group, to one channel per run.
fn binding_limits(
    scores: &Scores,
    s: &Selection,
    runs: &Runs,
    ctx: &CostContext,
    measure: Measure,
    (before, most): (f64, f64),
    blocker: &str,
) -> String {
    let cost = |plan: &Plan| measure(&ctx.costing.cost(&shapes_after(ctx.shapes, ctx.deps, plan))) as f64;
    let to_one = |g: usize, channels: usize| {
        let r = runs_of(runs, g);
        removed(&vec![0.0; channels], r, r)
    };
    let mut thinnest: Plan = scores.iter().map(|(&g, sc)| (g, to_one(g, sc.len()))).collect();
    let without_floors = cost(&thinnest);
    for g in ctx.deps.groups.iter().filter(|g| !g.prunable()) {
        thinnest.insert(g.id, to_one(g.id, g.channels));
    }
    let without_blocks = cost(&thinnest);
    let share = |x: f64| if before > 0.0 { 100.0 * x.max(0.0) / before } else { 0.0 };
    let stays = (1.0 - most) * before;
    let (floors, blocked) = (share(stays - without_floors), share(without_floors - without_blocks));
    let hint = match floors > blocked {
        true => ": lower --min-channels and --round-to to go further",
        false => "",
    };
    format!(
        "of the {:.1} % that stays, {floors:.1} % is kept by the width floors (every group keeps at least {} \
         channels, in multiples of {}{hint}), {blocked:.1} % by blocked groups{blocker}, {:.1} % by what no \
         channel group changes (the model's input and output channels)",
        share(stays),
        s.min_channels.max(1),
        s.round_to.max(1),
        share(without_blocks)
    )
}

/// Rounding makes the search overshoot: hands back `round_to` channels at a
/// time (the best-scoring removed ones first) while the plan still `holds`.
fn give_back(mut plan: Plan, scores: &Scores, s: &Selection, runs: &Runs, holds: impl Fn(&Plan) -> bool) -> Plan {
    let step = |g: usize| lcm(s.round_to.max(1), runs_of(runs, g));
    loop {
        // Candidates: each group's next `step` best removed channels, best first.
        let mut candidates: Vec<(f64, usize)> = plan
            .iter()
            .filter(|(&g, gone)| gone.len() >= step(g))
            .map(|(&g, gone)| {
                let norm = normalized(&scores[&g]);
                let best = gone.iter().map(|&c| norm[c]).fold(f64::NEG_INFINITY, f64::max);
                (best, g)
            })
            .collect();
        candidates.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut changed = false;
        for (_, g) in candidates {
            let mut trial = plan.clone();
            let gone = trial.get_mut(&g).expect("candidate");
            match runs_of(runs, g) {
                1 => {
                    gone.sort_by(|&a, &b| scores[&g][b].total_cmp(&scores[&g][a]).then(a.cmp(&b)));
                    gone.drain(..step(g));
                    gone.sort_unstable();
                }
                r => *gone = removed(&scores[&g], scores[&g].len() - gone.len() + step(g), r),
            }
            if gone.is_empty() {
                trial.remove(&g);
            }
            if holds(&trial) {
                plan = trial;
                changed = true;
                break;
            }
        }
        if !changed {
            return plan;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selection(round_to: usize) -> Selection {
        Selection { amount: Amount::Ratio(0.5), ranking: Ranking::Uniform, round_to, min_channels: 1 }
    }

    #[test]
    fn keeps_counts_rounded_up_and_removes_the_lowest() {
        let scores = Scores::from([(0, vec![5.0, 1.0, 4.0, 2.0, 3.0, 0.5, 6.0, 7.0, 8.0, 9.0])]);
        let plan = plan_at(&scores, &selection(1), &Runs::new(), 0.3);
        assert_eq!(plan[&0], vec![1, 3, 5]);
        // 7 wanted, rounded up to 8: two go.
        let plan = plan_at(&scores, &selection(4), &Runs::new(), 0.3);
        assert_eq!(plan[&0], vec![1, 5]);
    }

    #[test]
    fn global_ranking_prunes_the_weaker_group_more() {
        let scores = Scores::from([(0, vec![1.0, 0.1, 0.2, 0.3]), (1, vec![1.0, 0.9, 0.8, 0.7])]);
        let s = Selection { ranking: Ranking::Global, ..selection(1) };
        let plan = plan_at(&scores, &s, &Runs::new(), 0.375);
        assert_eq!(plan[&0], vec![1, 2, 3]);
        assert!(!plan.contains_key(&1));
    }

    /// A grouped Conv's filters: the same number goes from each of its runs,
    /// the lowest-scoring within each, even where one run scores lower overall.
    #[test]
    fn runs_lose_the_same_number_each() {
        let scores = Scores::from([(0, vec![0.1, 0.2, 0.3, 0.4, 5.0, 6.0, 7.0, 8.0])]);
        let plan = plan_at(&scores, &selection(1), &Runs::from([(0, 2)]), 0.5);
        assert_eq!(plan[&0], vec![0, 1, 4, 5]);
        // 5 kept would unbalance: rounded up to 6, one from each run.
        let plan = plan_at(&scores, &selection(1), &Runs::from([(0, 2)]), 0.4);
        assert_eq!(plan[&0], vec![0, 4]);
    }
}
