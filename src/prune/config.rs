//! `prune`: the one entry point of pruning. A [`PruneConfig`] says everything
//! `prunq prune` can be told (its `Default` holds the documented defaults),
//! unstructured or structured; serializable, so a recipe step is a `PruneConfig`
//! written as TOML.

use super::structured::{
    prune_structured, Amount, Importance, Ranking, Selection, StructuredOptions, StructuredReport,
};
use super::{prune_sparse, LayerChoice, Method, PruneReport, Scope, SparseOptions};
use crate::data::Dataset;
use crate::eval::Progress;
use crate::ir::Model;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Everything a pruning run can be told. Field names are `prunq prune`'s options.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default, deny_unknown_fields)]
pub struct PruneConfig {
    /// Remove whole channels instead of zeroing weights.
    pub structured: bool,
    /// Unstructured: fraction of each layer's weights zeroed.
    pub sparsity: f64,
    /// Unstructured: how weights are scored.
    pub method: Method,
    /// Layer by layer, or one global ranking (both kinds).
    pub scope: Scope,
    /// Unstructured N:M along the inputs, e.g. `[2, 4]` (overrides `sparsity`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<(usize, usize)>,
    /// Nodes (by name) or op types left alone.
    pub exclude: Vec<String>,
    /// Unstructured: prune the first and last layer too.
    pub prune_ends: bool,
    /// Unstructured: prune grouped (depthwise) convs too.
    pub prune_grouped: bool,
    /// Unstructured: write pruned weights as sparse initializers where smaller.
    pub sparse_storage: bool,
    /// Structured: fraction of channels removed (0.3 when no other amount is given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    /// Structured: remove channels scoring below this fraction of their group's best.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Structured: remove at least this fraction of the MACs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_macs: Option<f64>,
    /// Structured: remove at least this fraction of the parameters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_params: Option<f64>,
    /// Structured: how channels are scored.
    pub importance: Importance,
    /// Structured: keep channel counts multiples of this.
    pub round_to: usize,
    /// Structured: never keep fewer channels in a group (default: `round_to`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_channels: Option<usize>,
    /// Structured: re-fit the layers that lost inputs (with calibration data).
    pub repair: bool,
    /// Structured: shapes for inputs with dynamic dims.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub shape: BTreeMap<String, Vec<usize>>,
    /// Fold shape computations into constants (before unstructured pruning,
    /// after structured), kept only when the outputs are unchanged.
    pub simplify: bool,
}

impl Default for PruneConfig {
    fn default() -> Self {
        PruneConfig {
            structured: false,
            sparsity: 0.5,
            method: Method::Magnitude,
            scope: Scope::Layer,
            pattern: None,
            exclude: vec![],
            prune_ends: false,
            prune_grouped: false,
            sparse_storage: false,
            ratio: None,
            threshold: None,
            target_macs: None,
            target_params: None,
            importance: Importance::L1,
            round_to: 16,
            min_channels: None,
            repair: true,
            shape: BTreeMap::new(),
            simplify: true,
        }
    }
}

/// What a pruning run did.
pub enum Pruned {
    /// Unstructured or N:M pruning's report.
    Sparse(Box<PruneReport>),
    /// With the model as it was before the repair, when one was made.
    Structured(Box<StructuredReport>, Option<Box<Model>>),
}

impl PruneConfig {
    /// The structured amount asked for; at most one may be given.
    pub fn amount(&self) -> Result<Amount> {
        let given = [self.ratio, self.threshold, self.target_macs, self.target_params];
        if given.iter().filter(|a| a.is_some()).count() > 1 {
            return Err(Error::Usage("give one of ratio, threshold, target-macs and target-params".into()));
        }
        Ok(match (self.ratio, self.threshold, self.target_macs, self.target_params) {
            (_, Some(t), _, _) => Amount::Threshold(t),
            (_, _, Some(r), _) => Amount::TargetMacs(r),
            (_, _, _, Some(r)) => Amount::TargetParams(r),
            (r, ..) => Amount::Ratio(r.unwrap_or(0.3)),
        })
    }
}

/// Prunes `model` as `config` says; `calib` feeds the data-driven scores
/// (wanda, sparsegpt, activation importance) and the structured repair.
///
/// Load → remove half the MACs (channels cut out, the layers re-fitted) → compare:
///
/// ```
/// use prunq::data::Dataset;
/// use prunq::eval::{compare, Silent};
/// use prunq::prune::{prune, PruneConfig};
///
/// let original = prunq::onnx::load("demo/digits_cnn.onnx")?;
/// let calib = Dataset::open("demo/digits_calib.npz")?;
/// let mut model = original.clone();
/// let config = PruneConfig { structured: true, target_macs: Some(0.5), ..Default::default() };
/// prune(&mut model, &config, Some(&calib), &Silent)?;
/// let test = Dataset::open("demo/digits_test.npz")?;
/// let c = compare(&original, &model, &test, &Default::default(), &Silent)?;
/// assert!(c.outputs[0].top1_agreement > 0.97, "agreement {}", c.outputs[0].top1_agreement);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn prune(
    model: &mut Model,
    config: &PruneConfig,
    calib: Option<&Dataset>,
    progress: &dyn Progress,
) -> Result<Pruned> {
    if config.structured {
        let options = StructuredOptions {
            importance: config.importance,
            selection: Selection {
                amount: config.amount()?,
                ranking: if config.scope == Scope::Global { Ranking::Global } else { Ranking::Uniform },
                round_to: config.round_to.max(1),
                min_channels: config.min_channels.unwrap_or(config.round_to),
            },
            exclude: config.exclude.clone(),
            repair: config.repair,
            input_shapes: config.shape.clone(),
            ..Default::default()
        };
        let (mut report, unrepaired) = prune_structured(model, &options, calib, progress)?;
        if config.simplify {
            report.simplified = Some(crate::transform::simplify(model)?);
        }
        return Ok(Pruned::Structured(Box::new(report), unrepaired.map(Box::new)));
    }
    let options = SparseOptions {
        sparsity: config.sparsity,
        method: config.method,
        scope: config.scope,
        pattern: config.pattern,
        layers: LayerChoice {
            exclude: config.exclude.clone(),
            prune_ends: config.prune_ends,
            prune_grouped: config.prune_grouped,
        },
        ..Default::default()
    };
    let mut report = PruneReport::default();
    if config.simplify {
        report.simplified = Some(crate::transform::simplify(model)?);
    }
    prune_sparse(model, &options, calib, &mut report, progress)?;
    if config.sparse_storage {
        let weights: Vec<String> = report.layers.iter().map(|l| l.weight.clone()).collect();
        report.storage = super::store_sparse_where_smaller(model, &weights)?;
    }
    Ok(Pruned::Sparse(Box::new(report)))
}
