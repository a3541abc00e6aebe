//! Non-linear weight quantization: every weight becomes an index into a small
//! table of values — fitted by k-means (`--codebook K`, weighted by each input
//! feature's activation energy when calibration data is given, as SqueezeLLM
//! weights by sensitivity) or fixed at signed powers of two times a scale
//! (`--scheme log2 --bits B`, for shift-only hardware).
//!
//! With calibration data and a table per output channel (K ≤ 16), the indices
//! are then chosen as GPTQ rounds: column by column, each column's error spread
//! over the columns not yet coded through H⁻¹ of the layer's inputs — to the
//! nearest table entry instead of the nearest grid point.
//!
//! Stored as standard ONNX that runtimes fold at load: uint8 indices (two per
//! byte when K ≤ 16), a float16 table per output channel (or one per tensor),
//! and `Cast` + `GatherElements` (after the nibble unpacking) restoring the float
//! weight under its old name. Large embedding tables read only by `Gather` are
//! looked up after the Gather, on the rows read, as the linear formats do.
mod fit;
#[cfg(test)]
mod tests;
mod write;

use crate::data::Dataset;
use crate::ir::{AttrValue, Attribute, DataType, Model, Node, Tensor};
use crate::quant::portable::{lookups_to_dequantize_after, PORTABLE_INT4_OPSET};
use crate::quant::report::{QuantReport, Skipped, TensorRecord};
use crate::quant::scheme::{Granularity, QScheme, QType};
use crate::quant::weights::weight_uses;
use crate::{Error, Result};
use fit::*;
use ndarray::{Array2, ArrayD, Axis, IxDyn};
use std::collections::BTreeMap;
use write::*;

/// How the table of values is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// K values fitted by k-means (2 ≤ K ≤ 256).
    KMeans(usize),
    /// Sign and exponent: 0 and ±scale·2^-e for e = 0 … 2^(B−1) − 2, B bits (2 to 8).
    Log2(u32),
}

impl Table {
    /// Entries in the table.
    pub fn entries(self) -> usize {
        match self {
            Table::KMeans(k) => k,
            Table::Log2(bits) => 1 << bits,
        }
    }

    fn validate(self) -> Result<()> {
        match self {
            Table::KMeans(k) if !(2..=256).contains(&k) => {
                Err(Error::Usage(format!("a codebook holds 2 to 256 values, not {k}")))
            }
            Table::Log2(b) if !(2..=8).contains(&b) => {
                Err(Error::Usage(format!("log2 weights take 2 to 8 bits, not {b}")))
            }
            _ => Ok(()),
        }
    }
}

/// Codebook and log2 weights' options.
#[derive(Clone, Debug)]
pub struct CodebookOptions {
    /// K-means with K entries, or log2 levels of a number of bits.
    pub table: Table,
    /// One table per weight tensor; `None`: per output channel when K ≤ 16
    /// (a 256-entry table per channel would outweigh the channel).
    pub per_tensor: Option<bool>,
    /// Node names or op types to leave alone.
    pub exclude: Vec<String>,
    /// Weights with fewer elements stay float.
    pub min_elements: usize,
    /// Only the weights of these nodes (by index); all when `None`.
    pub only_nodes: Option<Vec<usize>>,
    /// With the fallback, the layers it keeps get int8 weights instead of float.
    pub fallback_int8: bool,
}

impl Default for CodebookOptions {
    fn default() -> Self {
        CodebookOptions {
            table: Table::KMeans(16),
            per_tensor: None,
            exclude: vec![],
            min_elements: 64,
            only_nodes: None,
            fallback_int8: false,
        }
    }
}

/// What calibration data says about the weights' layers.
#[derive(Default)]
struct Statistics {
    /// Each weight's input-feature mean square activation, by name.
    energy: BTreeMap<String, Vec<f32>>,
    /// Each layer with input statistics and H = XᵀX of its inputs, by weight name.
    hessians: BTreeMap<String, (crate::layerwise::Layer, Array2<f64>)>,
}

/// Replaces every weight of the registry's ops by table indices. With `calib`,
/// k-means weighs each value by its input feature's mean square activation
/// (and per-channel tables are coded with GPTQ's error feedback),
/// and with `target_sqnr_db` > 0 the layers whose tables cost the output most
/// stay float until the output SQNR on it meets the target (measured, as for
/// linear weights).
pub fn quantize_codebook(
    model: &mut Model,
    options: &CodebookOptions,
    calib: Option<&Dataset>,
    target_sqnr_db: f64,
    report: &mut QuantReport,
    progress: &dyn crate::measure::Progress,
) -> Result<()> {
    options.table.validate()?;
    let uses = weight_uses(model, &options.exclude, options.only_nodes.as_deref());
    let stats = match (calib, options.table) {
        (Some(data), Table::KMeans(k)) if !uses.is_empty() => Statistics {
            energy: feature_energy(model, data, &uses)?,
            hessians: if k <= 16 && options.per_tensor != Some(true) {
                crate::quant::gptq::layer_hessians(model, &options.exclude, data, &|_| true, progress)?
            } else {
                BTreeMap::new()
            },
        },
        _ => Statistics::default(),
    };
    match calib {
        Some(calib) if target_sqnr_db > 0.0 => {
            let nodes = crate::quant::weights::weight_nodes(model, &options.exclude);
            let quantize = |m: &mut Model, only: Vec<usize>, r: &mut QuantReport| {
                encode_weights(m, &CodebookOptions { only_nodes: Some(only), ..options.clone() }, &stats, r)
            };
            let float = crate::quant::sensitivity::quantize_with_fallback(
                model,
                &nodes,
                calib,
                target_sqnr_db,
                &quantize,
                report,
                progress,
            )?;
            match options.fallback_int8 {
                true => crate::quant::weights::fallback_to_int8(
                    model,
                    &float,
                    &options.exclude,
                    crate::quant::WeightFormat::Portable,
                    report,
                ),
                false => Ok(()),
            }
        }
        _ => encode_weights(model, options, &stats, report),
    }
}

/// [`quantize_codebook`] with the activation energies already measured.
fn encode_weights(
    model: &mut Model,
    options: &CodebookOptions,
    stats: &Statistics,
    report: &mut QuantReport,
) -> Result<()> {
    let uses = weight_uses(model, &options.exclude, options.only_nodes.as_deref());
    if uses.is_empty() {
        return Ok(());
    }
    let rank_of = crate::analysis::rank_lookup(model);
    crate::transform::upgrade_opset(model, PORTABLE_INT4_OPSET, &|n| rank_of.get(n).copied())?;
    let k = options.table.entries();
    for (name, uses) in uses {
        let t = match model.graph.constant(&name) {
            Some(Ok(t)) if t.dtype == DataType::FLOAT => t,
            Some(Ok(t)) => {
                report.skipped.push(Skipped::new(&name, format!("{} weights are left as they are", t.dtype)));
                continue;
            }
            _ => continue,
        };
        if t.numel().unwrap_or(0) < options.min_elements.max(k) {
            continue;
        }
        let w = t.to_f32()?;
        if w.iter().any(|v| !v.is_finite()) {
            report.skipped.push(Skipped::new(&name, "contains NaN or infinite values".into()));
            continue;
        }
        let gathers = lookups_to_dequantize_after(&model.graph, &name, w.len() * 4);
        let axes: Vec<Option<usize>> = uses.iter().map(|(_, a)| *a).collect();
        let consistent = axes.windows(2).all(|p| p[0] == p[1]);
        // A table looked up by Gather is cut by rows; others by their output channel.
        let axis = match &gathers {
            Some(_) => Some(0),
            None => axes[0].filter(|_| consistent && w.ndim() >= 2),
        };
        let layout = match (options.per_tensor, axis, options.table) {
            (Some(true), ..) | (_, None, _) => Tables::PerTensor,
            (_, _, Table::Log2(_)) => Tables::ScaledShared,
            (_, _, Table::KMeans(k)) if k > 16 => Tables::ScaledShared,
            _ => Tables::PerRow,
        };
        let axis = axis.unwrap_or(0);
        let rows = rows_of(&w, axis);
        let feature_weights = stats
            .energy
            .get(&name)
            .map(|e| expand_features(&e.iter().map(|v| v.sqrt()).collect::<Vec<_>>(), rows.ncols()));
        let mut encoded = encode(&rows, options.table, layout, feature_weights.as_deref());
        let hessian = stats.hessians.get(&name).filter(|(layer, _)| layout == Tables::PerRow && layer.rows == rows);
        if let Some((layer, h)) = hessian {
            encoded.codes = codes_with_feedback(&rows, h, &encoded.tables)
                .map_err(|e| Error::Model(format!("coding '{}' with error feedback: {e}", layer.node)))?;
        }
        let granularity = match layout {
            Tables::PerTensor => Granularity::PerTensor,
            _ => Granularity::PerChannel { axis },
        };
        let qtype = if k <= 16 { QType::UInt4 } else { QType::UInt8 };
        let (lo, hi) =
            encoded.tables.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        let mut record = TensorRecord::new(
            &name,
            &QScheme { qtype, symmetric: false, granularity, reduce_range: false },
            &crate::quant::scheme::QParams {
                scale: ndarray::arr1(&[lo, hi]).into_dyn(),
                zero_point: ndarray::arr1(&[0, 0]).into_dyn(),
            },
            t.byte_size(),
            w.shape(),
        );
        record.gptq = hessian.is_some();
        record.codebook = Some(match options.table {
            Table::KMeans(k) => format!("k-means, {k} values"),
            Table::Log2(b) => format!("log2, {b} bits"),
        });
        write(model, &name, w.shape(), axis, &encoded, k, gathers.as_deref())?;
        report.tensors.push(record);
    }
    model.graph.sort_nodes()
}

/// The weight as rows × values: the channel axis first, the rest flattened.
fn rows_of(w: &ArrayD<f32>, axis: usize) -> Array2<f32> {
    let moved = w.view().permuted_axes(moved_order(w.ndim(), axis));
    let rows = w.shape()[axis];
    let flat: Vec<f32> = moved.iter().copied().collect();
    Array2::from_shape_vec((rows, flat.len() / rows.max(1)), flat).expect("sized")
}

/// The axis order that brings `axis` first, the others after in order.
fn moved_order(rank: usize, axis: usize) -> Vec<usize> {
    std::iter::once(axis).chain((0..rank).filter(|&a| a != axis)).collect()
}

/// Each weight's input-feature energy, repeated over a conv kernel's positions.
fn expand_features(energy: &[f32], cols: usize) -> Vec<f32> {
    let repeat = (cols / energy.len().max(1)).max(1);
    energy.iter().flat_map(|&e| std::iter::repeat_n(e, repeat)).chain(std::iter::repeat(1.0)).take(cols).collect()
}

/// Mean square of each input feature of every weight's consumers on `data`
/// (last axis for MatMul, axis 1 for Gemm and Conv), by weight name.
fn feature_energy(
    model: &Model,
    data: &Dataset,
    uses: &BTreeMap<String, Vec<(usize, Option<usize>)>>,
) -> Result<BTreeMap<String, Vec<f32>>> {
    let g = &model.graph;
    // The activation each weight multiplies, and the axis of its features.
    let mut reads: BTreeMap<String, (String, isize)> = BTreeMap::new();
    for (name, list) in uses {
        let node = &g.nodes[list[0].0];
        let axis = match node.op_type.as_str() {
            "MatMul" if node.inputs.get(1) == Some(name) => -1,
            "Gemm" if node.inputs.get(1) == Some(name) && node.attr_int("transA").unwrap_or(0) == 0 => 1,
            "Conv" if node.inputs.get(1) == Some(name) && node.attr_int("group").unwrap_or(1) == 1 => 1,
            _ => continue,
        };
        reads.insert(name.clone(), (node.inputs[0].clone(), axis));
    }
    let tensors: Vec<String> =
        reads.values().map(|(t, _)| t.clone()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    // Each tensor's features on the axis its first reader multiplies.
    let axes: Vec<isize> =
        tensors.iter().map(|t| reads.values().find(|(r, _)| r == t).map_or(0, |(_, a)| *a)).collect();
    let mut sums: BTreeMap<String, (Vec<f64>, f64)> = BTreeMap::new();
    let rows = crate::measure::Rows::first(256, 8);
    crate::measure::visit_tensors(model, &tensors, data, rows, &crate::measure::Silent, "", |i, x| {
        let Some(x) = x.filter(|x| x.ndim() > 0) else { return Ok(()) };
        let axis = if axes[i] < 0 { x.ndim() - 1 } else { axes[i] as usize };
        if axis >= x.ndim() {
            return Ok(());
        }
        let (sum, count) = sums.entry(tensors[i].clone()).or_insert_with(|| (vec![0.0; x.shape()[axis]], 0.0));
        if sum.len() != x.shape()[axis] {
            return Ok(());
        }
        for (f, lane) in x.axis_iter(Axis(axis)).enumerate() {
            sum[f] += lane.iter().map(|v| (*v as f64).powi(2)).sum::<f64>();
        }
        *count += (x.len() / x.shape()[axis]) as f64;
        Ok(())
    })?;
    Ok(reads
        .into_iter()
        .filter_map(|(w, (t, _))| {
            let (sum, count) = sums.get(&t)?;
            Some((w, sum.iter().map(|s| (s / count.max(1.0)) as f32).collect()))
        })
        .collect())
}
