//! Structured pruning: whole channels (conv filters, FC neurons) leave the
//! model, with every tensor they are tied to, so parameters and MACs really
//! fall. Torch-Pruning's three ideas, three modules: the dependency graph
//! (`analysis::dependency`) finds the coupled channels, `importance` scores
//! them, `select` picks the ones to go; `remove` cuts them out and `repair`
//! re-fits the layers that read them.

mod importance;
mod remove;
mod repair;
mod select;

pub use importance::Importance;
pub use remove::{Cost, Plan};
pub use repair::Repaired;
pub use select::{Amount, Ranking, Selection, DEFAULT_ROUND_TO};

use crate::analysis::dependency::{build, DependencyGraph};
use crate::analysis::{concrete_input_shapes, infer_shapes, node_macs};
use crate::data::Dataset;
use crate::eval::CompareReport;
use crate::ir::Model;
use crate::measure::Progress;
use crate::Result;
use serde::Serialize;
use std::collections::BTreeMap;

/// Structured pruning's options.
#[derive(Clone, Debug)]
pub struct StructuredOptions {
    /// How channels are scored.
    pub importance: Importance,
    /// How many channels go and how they are ranked.
    pub selection: Selection,
    /// Groups made by these nodes (by name) or op types stay whole.
    pub exclude: Vec<String>,
    /// Re-fit the layers that lost inputs (needs calibration data).
    pub repair: bool,
    /// Rows per calibration batch.
    pub batch_size: usize,
    /// Concrete shapes for inputs with dynamic dims (others default to 1).
    pub input_shapes: BTreeMap<String, Vec<usize>>,
}

impl Default for StructuredOptions {
    fn default() -> Self {
        StructuredOptions {
            importance: Importance::L1,
            selection: Selection {
                amount: Amount::Ratio(0.5),
                ranking: Ranking::Uniform,
                round_to: select::DEFAULT_ROUND_TO,
                min_channels: select::DEFAULT_ROUND_TO,
            },
            exclude: vec![],
            repair: true,
            batch_size: 32,
            input_shapes: BTreeMap::new(),
        }
    }
}

/// One channel group: its channels, what made them, what was removed, or why nothing could be.
#[derive(Clone, Debug, Serialize)]
pub struct GroupRecord {
    /// The group's number.
    pub id: usize,
    /// The layers that make its channels.
    pub sources: Vec<String>,
    /// Its channels before.
    pub channels: usize,
    /// Its channels after.
    pub kept: usize,
    /// The channels removed (indices before).
    pub removed: Vec<usize>,
    /// Lowest and highest channel score (`None` for groups that could not be pruned).
    pub score_range: Option<(f64, f64)>,
    /// Why it cannot be pruned (empty when it can).
    pub blocked: Vec<String>,
}

/// MACs and parameters of one layer before and after.
#[derive(Clone, Debug, Serialize)]
pub struct LayerCost {
    /// The node's name.
    pub node: String,
    /// Its op type.
    pub op_type: String,
    /// MACs before.
    pub macs_before: Option<u64>,
    /// MACs after.
    pub macs_after: Option<u64>,
    /// Parameters before.
    pub params_before: u64,
    /// Parameters after.
    pub params_after: u64,
}

/// What structured pruning did.
#[derive(Clone, Debug, Serialize)]
pub struct StructuredReport {
    /// How channels were scored.
    pub importance: Importance,
    /// How many were asked to go.
    pub amount: Amount,
    /// MACs and parameters before.
    pub before: Cost,
    /// After.
    pub after: Cost,
    /// Every channel group.
    pub groups: Vec<GroupRecord>,
    /// Every layer's cost before and after.
    pub layers: Vec<LayerCost>,
    /// Tensors computed from constants alone folded first (Paddle's bias reshapes, a bias made by
    /// a Mul or Cast of constants), so their channels can be followed.
    pub folded_reshapes: usize,
    /// The graph clean-up done on the pruned model (absent with `--no-simplify`).
    pub simplified: Option<crate::transform::Simplification>,
    /// Layers re-fitted, with their error before and after.
    pub repaired: Vec<Repaired>,
    /// Layers not re-fitted, and why.
    pub not_repaired: Vec<(String, String)>,
    /// What the user should know that the numbers do not say.
    pub notes: Vec<String>,
    /// The pruned model against the original before and after repair (when validation data is given).
    pub comparison_without_repair: Option<CompareReport>,
    /// The pruned and repaired model against the original (when validation data is given).
    pub comparison: Option<CompareReport>,
    /// What ran the model for statistics, the repair and validation.
    pub runtime: Option<crate::runtime::RuntimeInfo>,
    /// The check the output passed before it was written (the CLI runs it).
    pub output_check: Option<crate::eval::OutputCheck>,
    /// The output timed against the input where it runs (absent with `--no-latency-check`).
    pub latency: Option<crate::eval::LatencyCheck>,
}

/// The channel groups of `model` as structured pruning sees them: reshapes of
/// constants are folded first (in `model`). Also returns every tensor's shape.
pub fn channel_groups(
    model: &mut Model,
    input_shapes: &BTreeMap<String, Vec<usize>>,
) -> Result<(DependencyGraph, BTreeMap<String, Vec<usize>>, usize)> {
    // A conv's bias or scale computed from constants alone (a Mul, a Cast — GoogLeNet's and
    // EfficientNet's exports) is a constant once run: folded first, its layer's channels can go.
    let g = &model.graph;
    let parameters: std::collections::BTreeSet<String> = g
        .nodes
        .iter()
        .filter(|n| matches!(n.op_type.as_str(), "Conv" | "ConvTranspose" | "Gemm" | "MatMul" | "BatchNormalization"))
        .flat_map(|n| n.inputs.iter().skip(1).filter(|t| !t.is_empty() && g.constant_site(t).is_none()).cloned())
        .collect();
    let folded_constants = crate::transform::fold_constants_into(model, &parameters)?;
    let shapes = infer_shapes(model, &concrete_input_shapes(model, input_shapes))?;
    let folded = crate::transform::fold_constant_reshapes(model, &shapes)?;
    Ok((build(model, &shapes)?, shapes, folded + folded_constants))
}

/// Prunes `model` in place. Returns the report and, when a repair ran, the
/// model as it was before the repair (for comparison).
pub fn prune_structured(
    model: &mut Model,
    options: &StructuredOptions,
    calib: Option<&Dataset>,
    progress: &dyn Progress,
) -> Result<(StructuredReport, Option<Model>)> {
    let input_shapes = match (options.input_shapes.is_empty(), calib) {
        (true, Some(data)) => shapes_of_one_row(model, data)?,
        _ => options.input_shapes.clone(),
    };
    let (mut deps, shapes, folded_reshapes) = channel_groups(model, &input_shapes)?;
    for g in deps.groups.iter_mut() {
        let hit = model.graph.nodes.iter().any(|n| g.sources.contains(&n.label()) && n.is_any_of(&options.exclude));
        if hit {
            g.blocked.push("excluded".into());
        }
    }
    let (scores, mut notes) =
        importance::group_scores(model, &deps, options.importance, calib, options.batch_size, progress)?;
    let costing = remove::Costing::new(model);
    let ctx = select::CostContext { costing: &costing, shapes: &shapes, deps: &deps };
    let plan = select::select(&scores, &options.selection, &ctx)?;
    let before = costing.cost(&shapes);
    let reference = model.clone();
    remove::remove_channels(model, &deps, &plan)?;
    let (mut repaired, mut not_repaired, mut unrepaired) = (vec![], vec![], None);
    match (options.repair, calib) {
        (true, Some(data)) if !plan.is_empty() => {
            unrepaired = Some(model.clone());
            (repaired, not_repaired) =
                repair::repair(&reference, model, &deps, &plan, data, options.batch_size, progress)?;
        }
        (true, None) => notes.push("no calibration data: layers were not re-fitted".into()),
        _ => {}
    }
    // Shapes of the result, from tract: also proves the pruned graph types.
    let new_shapes = infer_shapes(model, &concrete_input_shapes(model, &input_shapes))?;
    let after = remove::Costing::new(model).cost(&new_shapes);
    let report = StructuredReport {
        simplified: None,
        importance: options.importance,
        amount: options.selection.amount,
        before,
        after,
        groups: group_records(&deps, &scores, &plan),
        layers: layer_costs(&reference, model, &shapes, &new_shapes),
        folded_reshapes,
        repaired,
        not_repaired,
        notes,
        comparison_without_repair: None,
        comparison: None,
        runtime: None,
        output_check: None,
        latency: None,
    };
    Ok((report, unrepaired))
}

/// The input shapes of one row of `data` (what MACs are counted for when
/// the model's inputs have dynamic dims).
fn shapes_of_one_row(model: &Model, data: &Dataset) -> Result<BTreeMap<String, Vec<usize>>> {
    let bound = data.bind(&crate::runtime::feed_inputs(model), None)?;
    Ok(bound.shapes_for_rows(1))
}

fn group_records(deps: &DependencyGraph, scores: &select::Scores, plan: &Plan) -> Vec<GroupRecord> {
    deps.groups
        .iter()
        .map(|g| {
            let removed = plan.get(&g.id).cloned().unwrap_or_default();
            let score_range = scores.get(&g.id).map(|s| {
                (s.iter().copied().fold(f64::INFINITY, f64::min), s.iter().copied().fold(f64::NEG_INFINITY, f64::max))
            });
            GroupRecord {
                id: g.id,
                sources: g.sources.clone(),
                channels: g.channels,
                kept: g.channels - removed.len(),
                removed,
                score_range,
                blocked: g.blocked.clone(),
            }
        })
        .collect()
}

fn layer_costs(
    before: &Model,
    after: &Model,
    shapes_before: &BTreeMap<String, Vec<usize>>,
    shapes_after: &BTreeMap<String, Vec<usize>>,
) -> Vec<LayerCost> {
    let params = |m: &Model, node: &crate::ir::Node| -> u64 {
        node.inputs
            .iter()
            .filter_map(|i| m.graph.constant(i).and_then(|t| t.ok()))
            .filter(|t| t.dtype.is_float())
            .map(|t| t.numel().unwrap_or(0) as u64)
            .sum()
    };
    before
        .graph
        .nodes
        .iter()
        .zip(&after.graph.nodes)
        .filter(|(n, _)| crate::analysis::counts_macs(&n.op_type))
        .map(|(b, a)| LayerCost {
            node: b.label(),
            op_type: b.op_type.clone(),
            macs_before: node_macs(b, shapes_before),
            macs_after: node_macs(a, shapes_after),
            params_before: params(before, b),
            params_after: params(after, a),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::ir::testing::{ints, model, node, tensor, wavy};

    /// `x [1, 3, 8, 8]` → Conv (8 filters, bias = b · 2 computed by a Mul) → Relu → Conv (4).
    fn conv_with_computed_bias() -> crate::ir::Model {
        let pads = ("pads", ints(&[1, 1, 1, 1]));
        let nodes = vec![
            node("Mul", &["b_raw", "two"], "b", &[]),
            node("Conv", &["x", "w1", "b"], "c1", std::slice::from_ref(&pads)),
            node("Relu", &["c1"], "r1", &[]),
            node("Conv", &["r1", "w2"], "y", &[pads]),
        ];
        let weights = vec![
            tensor("b_raw", &[8], wavy),
            tensor("two", &[1], |_| 2.0),
            tensor("w1", &[8, 3, 3, 3], wavy),
            tensor("w2", &[4, 8, 3, 3], wavy),
        ];
        model(nodes, weights, &[1, 3, 8, 8], &["y"], 17)
    }

    #[test]
    fn a_bias_computed_from_constants_is_folded_and_its_layer_can_be_pruned() {
        let mut m = conv_with_computed_bias();
        let (deps, _, folded) = super::channel_groups(&mut m, &Default::default()).unwrap();
        assert_eq!(folded, 1, "the Mul of two constants is run once");
        let conv = deps.groups.iter().find(|g| g.channels == 8).expect("the first conv's channels are a group");
        assert!(conv.blocked.is_empty(), "{:?}", conv.blocked);
    }

    #[test]
    fn a_target_the_width_floors_hold_back_says_so_with_their_share() {
        let mut m = conv_with_computed_bias();
        let options = super::StructuredOptions {
            selection: super::Selection {
                amount: super::Amount::TargetMacs(0.9),
                ranking: super::Ranking::Uniform,
                round_to: 4,
                min_channels: 4,
            },
            repair: false,
            ..Default::default()
        };
        let e = super::prune_structured(&mut m, &options, None, &crate::measure::Silent).unwrap_err().to_string();
        // The first conv's 8 filters can only halve (4 kept): half the MACs stay, most by that floor,
        // some by the output's 4 channels (blocked: a graph output) and the input's 3.
        assert!(e.contains("can be removed (asked 90.0 %)"), "{e}");
        assert!(
            e.contains("kept by the width floors (every group keeps at least 4 channels, in multiples of 4: lower"),
            "{e}"
        );
        assert!(e.contains("at most 50.0 %") && e.contains("of the 50.0 % that stays, 37.5 %"), "{e}");
        assert!(
            e.contains("5.4 % by blocked groups: 4 channels in 1 group are blocked by reaches graph output 'y'"),
            "{e}"
        );
    }
}
