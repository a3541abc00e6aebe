//! `prune`: the one entry point of pruning. A [`PruneConfig`] says everything
//! `prunq prune` can be told (its `Default` holds the documented defaults),
//! unstructured or structured; serializable, so a recipe step is a `PruneConfig`
//! written as TOML.

use super::structured::{
    prune_structured, Amount, Importance, Ranking, Selection, StructuredOptions, StructuredReport,
};
use super::{prune_sparse, LayerChoice, Method, PruneReport, Scope, SparseOptions};
use crate::data::Dataset;
use crate::ir::Model;
use crate::measure::Progress;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Everything a pruning run can be told. Field names are `prunq prune`'s options (the CLI's flags
/// are derived from this struct, help and defaults included).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[serde(rename_all = "kebab-case", default, deny_unknown_fields)]
pub struct PruneConfig {
    /// Remove whole channels (conv filters, FC neurons) instead of zeroing weights.
    #[cfg_attr(feature = "cli", arg(long))]
    pub structured: bool,
    /// Unstructured: fraction of each layer's weights to zero (0.5 = half).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = PruneConfig::default().sparsity))]
    pub sparsity: f64,
    /// Unstructured: how weights are scored: magnitude |w|, wanda |w|·‖x‖ or sparsegpt (both need
    /// calibration data).
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = PruneConfig::default().method))]
    pub method: Method,
    /// `layer`: the same share of every layer (or channel group); `global`: one ranking across all.
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = PruneConfig::default().scope))]
    pub scope: Scope,
    /// Unstructured: N:M sparsity along the inputs, e.g. 2:4 (overrides --sparsity); `[2, 4]` in TOML.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "cli", arg(long, value_parser = parse_pattern))]
    pub pattern: Option<(usize, usize)>,
    /// Leave these nodes (by name) or op types alone. Repeatable.
    #[cfg_attr(feature = "cli", arg(long))]
    pub exclude: Vec<String>,
    /// Unstructured: also prune the first and the last layer (kept dense by default).
    #[cfg_attr(feature = "cli", arg(long))]
    pub prune_ends: bool,
    /// Unstructured: also prune grouped (depthwise) convs, kept dense by default: a handful of
    /// weights per channel, each carrying a whole channel.
    #[cfg_attr(feature = "cli", arg(long))]
    pub prune_grouped: bool,
    /// Unstructured: write pruned weights as ONNX sparse_initializer where that is smaller
    /// (past 2/3 zeros for float32). ONNX Runtime reads them; tract does not.
    #[cfg_attr(feature = "cli", arg(long, conflicts_with = "structured"))]
    pub sparse_storage: bool,
    /// Structured: fraction of channels to remove (default 0.3 when no other amount is given).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "cli", arg(long, conflicts_with_all = ["threshold", "target_macs", "target_params"]))]
    pub ratio: Option<f64>,
    /// Structured: remove channels scoring below this fraction of their group's best.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "cli", arg(long, conflicts_with_all = ["target_macs", "target_params"]))]
    pub threshold: Option<f64>,
    /// Structured: remove at least this fraction of the model's MACs (0.5 halves them).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "cli", arg(long, conflicts_with = "target_params"))]
    pub target_macs: Option<f64>,
    /// Structured: remove at least this fraction of the model's parameters.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "cli", arg(long))]
    pub target_params: Option<f64>,
    /// Structured: how channels are scored.
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = PruneConfig::default().importance))]
    pub importance: Importance,
    /// Structured: keep channel counts multiples of N. 16 is the channel block of ONNX Runtime's
    /// AVX-512 conv kernels (and a multiple of AVX2's 8); other counts fall off the fast path.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = PruneConfig::default().round_to))]
    pub round_to: usize,
    /// Structured: never keep fewer channels in a group (default: --round-to).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "cli", arg(long))]
    pub min_channels: Option<usize>,
    /// Structured: re-fit the layers that lost inputs (with calibration data); `--no-repair` does not.
    #[cfg_attr(feature = "cli", arg(long = "no-repair", action = clap::ArgAction::SetFalse))]
    pub repair: bool,
    /// Structured: shapes for inputs with dynamic dims (`--shape x=1x3x48x320`; others default to 1).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "cli", arg(skip))]
    pub shape: BTreeMap<String, Vec<usize>>,
    /// Fold the graph's shape computations into constants (before unstructured pruning, after
    /// structured), kept only when the outputs are unchanged; `--no-simplify` does not.
    #[cfg_attr(feature = "cli", arg(long = "no-simplify", action = clap::ArgAction::SetFalse))]
    pub simplify: bool,
}

/// `2:4` → (2, 4): an N:M pattern.
pub fn parse_pattern(s: &str) -> std::result::Result<(usize, usize), String> {
    let (n, m) = s.split_once(':').ok_or("expected N:M, e.g. 2:4")?;
    let n = n.trim().parse().map_err(|_| format!("'{n}' is not a number"))?;
    let m = m.trim().parse().map_err(|_| format!("'{m}' is not a number"))?;
    Ok((n, m))
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
            round_to: super::structured::DEFAULT_ROUND_TO,
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
/// use prunq::eval::compare;
/// use prunq::measure::Silent;
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
            transposed: false,
        },
        ..Default::default()
    };
    let mut report = PruneReport::default();
    if config.simplify {
        report.simplified = Some(crate::transform::simplify(model)?);
    }
    prune_sparse(model, &options, calib, &mut report, progress)?;
    super::sparse::prune_bodies(model, &options, &mut report)?;
    if config.sparse_storage {
        let weights: Vec<String> = report.layers.iter().map(|l| l.weight.clone()).collect();
        report.storage = super::store_sparse_where_smaller(model, &weights)?;
    }
    Ok(Pruned::Sparse(Box::new(report)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_read_as_n_colon_m() {
        assert_eq!(parse_pattern("2:4"), Ok((2, 4)));
        assert_eq!(parse_pattern(" 1 : 8 "), Ok((1, 8)));
        assert!(parse_pattern("2/4").unwrap_err().contains("expected N:M"));
        assert!(parse_pattern("a:4").unwrap_err().contains("'a' is not a number"));
    }

    #[test]
    fn one_structured_amount_at_a_time_and_a_ratio_of_0_3_without_one() {
        assert!(matches!(PruneConfig::default().amount(), Ok(Amount::Ratio(r)) if r == 0.3));
        let macs = PruneConfig { target_macs: Some(0.5), ..Default::default() };
        assert!(matches!(macs.amount(), Ok(Amount::TargetMacs(r)) if r == 0.5));
        let params = PruneConfig { target_params: Some(0.25), ..Default::default() };
        assert!(matches!(params.amount(), Ok(Amount::TargetParams(r)) if r == 0.25));
        let threshold = PruneConfig { threshold: Some(0.05), ..Default::default() };
        assert!(matches!(threshold.amount(), Ok(Amount::Threshold(t)) if t == 0.05));
        let two = PruneConfig { ratio: Some(0.2), threshold: Some(0.1), ..Default::default() };
        assert!(two.amount().unwrap_err().to_string().contains("give one of"));
    }

    #[test]
    fn recipes_spell_prune_options_as_the_flags_and_refuse_unknown_ones() {
        let c = PruneConfig { structured: true, target_macs: Some(0.5), repair: false, ..Default::default() };
        let text = toml::to_string(&c).unwrap();
        assert!(text.contains("target-macs = 0.5") && text.contains("repair = false"), "{text}");
        assert_eq!(toml::from_str::<PruneConfig>(&text).unwrap(), c);
        assert!(toml::from_str::<PruneConfig>("round_to = 8").is_err());
        assert_eq!(toml::from_str::<PruneConfig>("pattern = [2, 4]").unwrap().pattern, Some((2, 4)));
    }

    /// The CLI's flags are derived from this struct: without flags they are its `Default`.
    #[cfg(feature = "cli")]
    #[test]
    fn the_command_lines_defaults_are_the_librarys() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            config: PruneConfig,
        }
        assert_eq!(Cli::parse_from(["prune"]).config, PruneConfig::default());
        let flags = ["prune", "--structured", "--target-macs", "0.4", "--no-repair", "--round-to", "8"];
        let c = Cli::parse_from(flags).config;
        assert_eq!((c.structured, c.target_macs, c.repair, c.round_to), (true, Some(0.4), false, 8));
        assert!(
            Cli::try_parse_from(["prune", "--ratio", "0.2", "--target-macs", "0.5"]).is_err(),
            "conflicting amounts"
        );
        assert_eq!(Cli::parse_from(["prune", "--pattern", "2:4"]).config.pattern, Some((2, 4)));
    }
}
