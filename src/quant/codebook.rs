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

use super::portable::{lookups_to_dequantize_after, PORTABLE_INT4_OPSET};
use super::report::{QuantReport, Skipped, TensorRecord};
use super::scheme::{Granularity, QScheme, QType};
use super::weights::weight_uses;
use crate::data::Dataset;
use crate::ir::{AttrValue, Attribute, DataType, Model, Node, Tensor};
use crate::{Error, Result};
use ndarray::{Array2, ArrayD, Axis, IxDyn};
use std::collections::BTreeMap;

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
    progress: &dyn crate::eval::Progress,
) -> Result<()> {
    options.table.validate()?;
    let uses = weight_uses(model, &options.exclude, options.only_nodes.as_deref());
    let stats = match (calib, options.table) {
        (Some(data), Table::KMeans(k)) if !uses.is_empty() => Statistics {
            energy: feature_energy(model, data, &uses)?,
            hessians: if k <= 16 && options.per_tensor != Some(true) {
                super::gptq::layer_hessians(model, &options.exclude, data, &|_| true, progress)?
            } else {
                BTreeMap::new()
            },
        },
        _ => Statistics::default(),
    };
    match calib {
        Some(calib) if target_sqnr_db > 0.0 => {
            let nodes = super::weights::weight_nodes(model, &options.exclude);
            let quantize = |m: &mut Model, only: Vec<usize>, r: &mut QuantReport| {
                encode_weights(m, &CodebookOptions { only_nodes: Some(only), ..options.clone() }, &stats, r)
            };
            let float = super::sensitivity::quantize_with_fallback(
                model,
                &nodes,
                calib,
                target_sqnr_db,
                &quantize,
                report,
                progress,
            )?;
            match options.fallback_int8 {
                true => super::weights::fallback_to_int8(
                    model,
                    &float,
                    &options.exclude,
                    super::WeightFormat::Portable,
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
            &super::scheme::QParams {
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

/// Which values a weight's rows share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tables {
    /// One table for the whole tensor.
    PerTensor,
    /// A table per row (output channel): best for small K.
    PerRow,
    /// One table of values in [−1, 1] for the tensor, times a scale per row (its
    /// largest magnitude): large K at little cost, and log2's fixed levels.
    ScaledShared,
}

/// A weight as indices, its table(s) (rows × K, or 1 × K shared) and, for
/// [`Tables::ScaledShared`], each row's scale.
struct Encoded {
    codes: Array2<u8>,
    tables: Array2<f32>,
    scales: Option<Vec<f32>>,
}

fn encode(rows: &Array2<f32>, table: Table, layout: Tables, weights: Option<&[f32]>) -> Encoded {
    let k = table.entries();
    let (n, cols) = rows.dim();
    let fit = |values: &[f32], w: Option<&[f32]>| -> Vec<f32> {
        match table {
            Table::KMeans(k) => kmeans_1d(values, w, k),
            Table::Log2(bits) => log2_levels(values.iter().fold(0f32, |m, v| m.max(v.abs())), bits),
        }
    };
    let padded = |levels: &[f32]| levels.iter().copied().chain(std::iter::repeat(0.0)).take(k).collect::<Vec<f32>>();
    let mut codes = Array2::<u8>::zeros((n, cols));
    match layout {
        Tables::PerRow => {
            let mut tables = Array2::zeros((n, k));
            for ((row, mut out), mut t) in
                rows.axis_iter(Axis(0)).zip(codes.axis_iter_mut(Axis(0))).zip(tables.axis_iter_mut(Axis(0)))
            {
                let values: Vec<f32> = row.iter().copied().collect();
                let levels = fit(&values, weights);
                out.iter_mut().zip(&values).for_each(|(c, v)| *c = nearest(&levels, *v));
                keep_sum(&values, &levels, out.as_slice_mut().expect("row"));
                t.iter_mut().zip(padded(&levels)).for_each(|(o, v)| *o = v);
            }
            Encoded { codes, tables, scales: None }
        }
        Tables::PerTensor | Tables::ScaledShared => {
            // Scales as stored (float16), so the shared values are fitted to what decoding multiplies.
            let scales: Option<Vec<f32>> = (layout == Tables::ScaledShared).then(|| {
                rows.axis_iter(Axis(0))
                    .map(|r| {
                        let m = r.iter().fold(0f32, |m, v| m.max(v.abs()));
                        let s = match table {
                            Table::Log2(bits) => best_log2_scale(r.as_slice().expect("row"), m, bits, weights),
                            Table::KMeans(_) => m,
                        };
                        let s = half::f16::from_f32(s).to_f32();
                        if s > 0.0 && s.is_finite() {
                            s
                        } else {
                            1.0
                        }
                    })
                    .collect()
            });
            let scale = |r: usize| scales.as_ref().map_or(1.0, |s| s[r]);
            let values: Vec<f32> = rows.indexed_iter().map(|((r, _), v)| v / scale(r)).collect();
            // Each value weighs its feature's energy times its row's scale² (its error is scaled back).
            let tiled: Option<Vec<f32>> = (weights.is_some() || scales.is_some()).then(|| {
                (0..n)
                    .flat_map(|r| (0..cols).map(move |c| (r, c)))
                    .map(|(r, c)| weights.map_or(1.0, |w| w[c]) * scale(r) * scale(r))
                    .collect()
            });
            let levels = match table {
                // Fixed levels: the row scales carry the fit.
                Table::Log2(bits) if scales.is_some() => log2_levels(1.0, bits),
                _ => fit(&values, tiled.as_deref()),
            };
            codes.iter_mut().zip(&values).for_each(|(c, v)| *c = nearest(&levels, *v));
            if layout == Tables::ScaledShared {
                for (mut row, values) in codes.axis_iter_mut(Axis(0)).zip(values.chunks(cols.max(1))) {
                    keep_sum(values, &levels, row.as_slice_mut().expect("row"));
                }
            }
            let tables = Array2::from_shape_vec((1, k), padded(&levels)).expect("k values");
            Encoded { codes, tables, scales }
        }
    }
}

/// Each value's index into its row's table, chosen column by column with the
/// error of the columns already coded spread over the rest (GPTQ's sweep).
fn codes_with_feedback(
    rows: &Array2<f32>,
    h: &Array2<f64>,
    tables: &Array2<f32>,
) -> std::result::Result<Array2<u8>, String> {
    let q = super::gptq::round_with_feedback(rows, h, true, |r, _, x| {
        let table = tables.row(r);
        // A padding entry holds 0, a value like any other: decoding reads what was chosen.
        let best = (0..table.len())
            .min_by(|&a, &b| (table[a] - x).abs().total_cmp(&(table[b] - x).abs()).then(a.cmp(&b)))
            .unwrap_or(0);
        (best as i32, table[best])
    })?;
    Ok(q.mapv(|c| c as u8))
}

/// Moves the fewest values one level, those whose error grows least, until the
/// row's decoded sum is as near its float sum as one move can bring it: a
/// filter's response to a constant input (its DC gain) survives, as linear
/// weights keep theirs (`scheme::quantize_lane_keeping_sum`).
fn keep_sum(values: &[f32], levels: &[f32], codes: &mut [u8]) {
    let exact: f64 = values.iter().map(|&v| v as f64).sum();
    let mut missing = exact - codes.iter().map(|&c| levels[c as usize] as f64).sum::<f64>();
    let up = missing > 0.0;
    // Each value's move towards the missing sum: its step and the squared error it adds.
    let mut moves: Vec<(f64, usize, f64)> = codes
        .iter()
        .enumerate()
        .filter_map(|(i, &c)| {
            let next = if up { c as usize + 1 } else { (c as usize).checked_sub(1)? };
            let to = *levels.get(next)? as f64;
            let (v, from) = (values[i] as f64, levels[c as usize] as f64);
            Some(((v - to).powi(2) - (v - from).powi(2), i, to - from))
        })
        .collect();
    moves.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    for (_, i, step) in moves {
        if (missing - step).abs() >= missing.abs() {
            continue;
        }
        missing -= step;
        codes[i] = if up { codes[i] + 1 } else { codes[i] - 1 };
    }
}

/// The index of the level nearest `v` (levels sorted ascending).
fn nearest(levels: &[f32], v: f32) -> u8 {
    let i = levels.partition_point(|&l| l < v);
    let best = match i {
        0 => 0,
        i if i == levels.len() => i - 1,
        i if (v - levels[i - 1]).abs() <= (levels[i] - v).abs() => i - 1,
        i => i,
    };
    best as u8
}

/// 0 and ±amax·2^-e, e = 0 … 2^(bits−1) − 2 (2^bits − 1 values), sorted, stored as float16.
fn log2_levels(amax: f32, bits: u32) -> Vec<f32> {
    let exponents = (1u32 << (bits - 1)) - 1;
    let scale = if amax > 0.0 { amax } else { 1.0 };
    let mut levels = vec![0.0f32];
    for e in 0..exponents {
        let v = half::f16::from_f32(scale * (-(e as f32)).exp2()).to_f32();
        levels.extend([v, -v]);
    }
    levels.sort_by(f32::total_cmp);
    levels.dedup();
    levels
}

/// The scale for a row of log2 levels: the levels ±s·2^-e are the same grid
/// for s and 2s, so the choice is the grid's offset in log2 — tried in
/// sixteenths of an octave below the row's largest magnitude, the one with
/// the least (weighted) squared error kept.
fn best_log2_scale(row: &[f32], amax: f32, bits: u32, weights: Option<&[f32]>) -> f32 {
    if amax <= 0.0 {
        return 1.0;
    }
    let unit = log2_levels(1.0, bits);
    let error = |s: f32| -> f64 {
        row.iter()
            .enumerate()
            .map(|(i, &v)| {
                let q = unit[nearest(&unit, v / s) as usize] * s;
                weights.map_or(1.0, |w| w[i] as f64) * ((v - q) as f64).powi(2)
            })
            .sum()
    };
    (0..16).map(|f| amax * (-(f as f32) / 16.0).exp2()).min_by(|a, b| error(*a).total_cmp(&error(*b))).unwrap_or(amax)
}

/// Lloyd's k-means in one dimension: `k` centroids (sorted, fewer when there
/// are fewer distinct values) minimizing Σ wᵢ (vᵢ − c)², as stored, in float16.
/// Started where the optimal quantizer puts its levels at high resolution: at
/// quantiles of the (weighted) density to the power ⅓ — quantiles of the
/// density itself leave the tails, the largest weights, too few levels.
fn kmeans_1d(values: &[f32], weights: Option<&[f32]>, k: usize) -> Vec<f32> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let sorted: Vec<f64> = order.iter().map(|&i| values[i] as f64).collect();
    let wts: Vec<f64> = order.iter().map(|&i| weights.map_or(1.0, |w| (w[i] as f64).max(1e-12))).collect();
    let mut centroids = companded_start(&sorted, &wts, k);
    for _ in 0..50 {
        // Sorted values split at the midpoints between neighbouring centroids.
        let mut sums = vec![(0.0f64, 0.0f64); centroids.len()];
        let mut c = 0;
        for (v, w) in sorted.iter().zip(&wts) {
            while c + 1 < centroids.len() && *v > (centroids[c] + centroids[c + 1]) / 2.0 {
                c += 1;
            }
            sums[c].0 += w * v;
            sums[c].1 += w;
        }
        let moved: Vec<f64> =
            sums.iter().zip(&centroids).map(|((s, w), old)| if *w > 0.0 { s / w } else { *old }).collect();
        let done = moved == centroids;
        centroids = moved;
        centroids.dedup();
        if done {
            break;
        }
    }
    let mut out: Vec<f32> = centroids.iter().map(|&c| half::f16::from_f64(c).to_f32()).collect();
    out.sort_by(f32::total_cmp);
    out.dedup();
    out
}

/// The (j + ½)/k quantiles of the weighted density^⅓ over a histogram of the
/// sorted values, snapped to values present.
fn companded_start(sorted: &[f64], wts: &[f64], k: usize) -> Vec<f64> {
    let (Some(&lo), Some(&hi)) = (sorted.first(), sorted.last()) else { return vec![] };
    if hi <= lo {
        return vec![lo];
    }
    const BINS: usize = 4096;
    let bin = |v: f64| (((v - lo) / (hi - lo) * BINS as f64) as usize).min(BINS - 1);
    let mut mass = vec![0.0f64; BINS];
    for (v, w) in sorted.iter().zip(wts) {
        mass[bin(*v)] += w;
    }
    let density: Vec<f64> = mass.iter().map(|m| m.cbrt()).collect();
    let total: f64 = density.iter().sum();
    let mut centroids = Vec::with_capacity(k);
    let (mut acc, mut next) = (0.0, 0);
    for (b, d) in density.iter().enumerate() {
        acc += d;
        while next < k && acc >= (next as f64 + 0.5) / k as f64 * total {
            // The first value in or after this bin.
            let edge = lo + (hi - lo) * b as f64 / BINS as f64;
            let i = sorted.partition_point(|&v| v < edge).min(sorted.len() - 1);
            centroids.push(sorted[i]);
            next += 1;
        }
    }
    centroids.dedup();
    centroids
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
    let rows = crate::layerwise::Rows::first(256, 8);
    crate::layerwise::visit_tensors(model, &tensors, data, rows, &crate::eval::Silent, "", |i, x| {
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

/// Replaces constant `name` (of `shape`, channel `axis` first in `codes`) by its
/// indices and tables and the ops that restore it: once, folded at load, or
/// after each of `gathers` on the rows read.
#[allow(clippy::too_many_arguments)]
fn write(
    model: &mut Model,
    name: &str,
    shape: &[usize],
    axis: usize,
    encoded: &Encoded,
    k: usize,
    gathers: Option<&[usize]>,
) -> Result<()> {
    let (codes, tables) = (&encoded.codes, &encoded.tables);
    let g = &mut model.graph;
    g.remove_constant(name)?;
    let n = |s: &str| format!("{name}_codebook_{s}");
    let (rows, cols) = codes.dim();
    let packed = k <= 16;
    let stored: Vec<u8> = match packed {
        true => codes.axis_iter(Axis(0)).flat_map(|r| super::pack::nibbles(r.iter().map(|&c| c as i32))).collect(),
        false => codes.iter().copied().collect(),
    };
    let row_bytes = stored.len() / rows.max(1);
    g.initializers.push(Tensor::from_bytes(
        n("indices"),
        DataType::UINT8,
        vec![rows as i64, row_bytes as i64],
        stored.into(),
    ));
    let table16: Vec<u8> = tables.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect();
    let (trows, tk) = tables.dim();
    g.initializers.push(Tensor::from_bytes(
        n("table"),
        DataType::FLOAT16,
        vec![trows as i64, tk as i64],
        table16.into(),
    ));
    let int64 = |v: Vec<i64>| ArrayD::from_shape_vec(IxDyn(&[v.len()]), v).expect("1-d");
    g.initializers.push(Tensor::from_array(n("last_axis"), &int64(vec![-1])));
    if packed {
        g.initializers.push(Tensor::scalar(n("mask"), 15u8));
        g.initializers.push(Tensor::scalar(n("shift"), 4u8));
        g.initializers.push(Tensor::from_array(n("starts"), &int64(vec![0])));
        g.initializers.push(Tensor::from_array(n("ends"), &int64(vec![cols as i64])));
    }
    let shared = trows == 1 && rows > 1;
    let to_float = || vec![attr("to", AttrValue::Int(DataType::FLOAT.0 as i64))];
    let mut added = vec![node(&n("table32"), "Cast", &[&n("table")], to_float())];
    if let Some(scales) = &encoded.scales {
        let s16: Vec<u8> = scales.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect();
        g.initializers.push(Tensor::from_bytes(n("scale"), DataType::FLOAT16, vec![rows as i64, 1], s16.into()));
        added.push(node(&n("scale32"), "Cast", &[&n("scale")], to_float()));
    }
    // Indices [rows, bytes] → each value's index [rows, cols] as int32, looked up in
    // `table` (float): [1, K] shared by all, or [rows, K] one per row.
    let lookup = |codes_in: &str, table: &str, per_row: bool, o: &dyn Fn(&str) -> String, out: &str| -> Vec<Node> {
        let mut nodes = vec![];
        let mut idx = codes_in.to_string();
        if packed {
            nodes.extend([
                node(&o("low"), "BitwiseAnd", &[&idx, &n("mask")], vec![]),
                node(
                    &o("high"),
                    "BitShift",
                    &[&idx, &n("shift")],
                    vec![attr("direction", AttrValue::String(b"RIGHT".to_vec()))],
                ),
                node(&o("low2"), "Unsqueeze", &[&o("low"), &n("last_axis")], vec![]),
                node(&o("high2"), "Unsqueeze", &[&o("high"), &n("last_axis")], vec![]),
                node(&o("pairs"), "Concat", &[&o("low2"), &o("high2")], vec![attr("axis", AttrValue::Int(-1))]),
                node(&o("flat"), "Flatten", &[&o("pairs")], vec![attr("axis", AttrValue::Int(-2))]),
            ]);
            idx = o("flat");
        }
        nodes.push(node(&o("ids"), "Cast", &[&idx], vec![attr("to", AttrValue::Int(DataType::INT32.0 as i64))]));
        let mut ids = o("ids");
        if packed {
            nodes.push(node(&o("cut"), "Slice", &[&ids, &n("starts"), &n("ends"), &n("last_axis")], vec![]));
            ids = o("cut");
        }
        let (op, inputs, attributes) = match per_row {
            false => ("Gather", vec![o("table_flat"), ids], vec![]),
            true => ("GatherElements", vec![table.to_string(), ids], vec![attr("axis", AttrValue::Int(-1))]),
        };
        if !per_row {
            nodes.push(node(&o("table_flat"), "Reshape", &[table, &n("last_axis")], vec![]));
        }
        nodes.push(Node {
            name: o(op),
            op_type: op.into(),
            inputs,
            outputs: vec![out.to_string()],
            attributes,
            ..Default::default()
        });
        nodes
    };
    match gathers {
        // Rows looked up first (indices and, per row, their tables), then decoded.
        Some(gathers) => {
            for &i in gathers {
                let gather = &mut g.nodes[i];
                let out = gather.outputs[0].clone();
                let ids = gather.inputs[1].clone();
                let o = |s: &str| format!("{out}_codebook_{s}");
                gather.inputs[0] = n("indices");
                gather.outputs[0] = o("indices");
                // Looked-up rows [ids…, bytes] flattened to [rows, bytes], decoded, then shaped [ids…, cols].
                let flat = vec![attr("axis", AttrValue::Int(-1))];
                added.push(node(&o("indices_flat"), "Flatten", &[&o("indices")], flat.clone()));
                // The rows' own tables, looked up with the same ids: [rows read, K].
                let table = match (shared, encoded.scales.is_some()) {
                    (true, false) => n("table32"),
                    (false, _) => {
                        added.push(node(&o("rows_table"), "Gather", &[&n("table32"), &ids], vec![]));
                        added.push(node(&o("rows_table_flat"), "Flatten", &[&o("rows_table")], flat.clone()));
                        o("rows_table_flat")
                    }
                    (true, true) => {
                        added.push(node(&o("rows_scale"), "Gather", &[&n("scale32"), &ids], vec![]));
                        added.push(node(&o("rows_scale_flat"), "Flatten", &[&o("rows_scale")], flat.clone()));
                        added.push(node(&o("rows_table"), "Mul", &[&o("rows_scale_flat"), &n("table32")], vec![]));
                        o("rows_table")
                    }
                };
                let per_row = !shared || encoded.scales.is_some();
                added.extend(lookup(&o("indices_flat"), &table, per_row, &o, &o("decoded")));
                added.push(node(&o("ids_shape"), "Shape", &[&ids], vec![]));
                added.push(node(
                    &o("shape"),
                    "Concat",
                    &[&o("ids_shape"), &n("cols")],
                    vec![attr("axis", AttrValue::Int(0))],
                ));
                added.push(node_named(&out, "Reshape", &[&o("decoded"), &o("shape")], vec![], &o("Reshape")));
            }
            g.initializers.push(Tensor::from_array(n("cols"), &int64(vec![cols as i64])));
        }
        None => {
            let o = |s: &str| n(s);
            let mut moved: Vec<usize> = moved_order(shape.len(), axis).iter().map(|&a| shape[a]).collect();
            if moved.is_empty() {
                moved.push(1);
            }
            let decoded = if moved.len() == 2 && axis == 0 { name.to_string() } else { n("rows") };
            // Per row: the rows' tables, or the shared one times each row's scale ([rows, K], folded at load).
            if encoded.scales.is_some() {
                added.push(node(&n("rows_table"), "Mul", &[&n("scale32"), &n("table32")], vec![]));
            }
            let (table, per_row) = match (shared, encoded.scales.is_some()) {
                (true, false) => (n("table32"), false),
                (false, _) => (n("table32"), true),
                (true, true) => (n("rows_table"), true),
            };
            added.extend(lookup(&n("indices"), &table, per_row, &o, &decoded));
            if decoded != name {
                g.initializers.push(Tensor::from_array(n("shape"), &int64(moved.iter().map(|&d| d as i64).collect())));
                let reshaped = if axis == 0 { name.to_string() } else { n("moved") };
                added.push(node_named(&reshaped, "Reshape", &[&decoded, &n("shape")], vec![], &n("Reshape")));
                if axis != 0 {
                    // Back from channel-first to the weight's own axis order.
                    let order = moved_order(shape.len(), axis);
                    let mut inverse = vec![0i64; order.len()];
                    for (i, &a) in order.iter().enumerate() {
                        inverse[a] = i as i64;
                    }
                    added.push(node_named(
                        name,
                        "Transpose",
                        &[&reshaped],
                        vec![attr("perm", AttrValue::Ints(inverse))],
                        &n("Transpose"),
                    ));
                }
            }
        }
    }
    g.nodes.extend(added);
    Ok(())
}

fn attr(name: &str, value: AttrValue) -> Attribute {
    Attribute::new(name, value)
}

fn node(output: &str, op: &str, inputs: &[&str], attributes: Vec<Attribute>) -> Node {
    Node::single(output, op, inputs, attributes)
}

/// [`node`] under another name than `{output}_{op}`.
fn node_named(output: &str, op: &str, inputs: &[&str], attributes: Vec<Attribute>, name: &str) -> Node {
    Node { name: name.into(), ..Node::single(output, op, inputs, attributes) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kmeans_finds_clusters_and_weights_move_them() {
        let values = [0.0f32, 0.1, 0.2, 10.0, 10.1, 10.2];
        let c = kmeans_1d(&values, None, 2);
        assert_eq!(c.len(), 2);
        assert!((c[0] - 0.1).abs() < 1e-3 && (c[1] - 10.1).abs() < 1e-2, "{c:?}");
        let heavy = [1.0f32, 1.0, 100.0, 1.0, 1.0, 1.0];
        let w = kmeans_1d(&values, Some(&heavy), 2);
        assert!((w[0] - 0.2).abs() < 0.02, "a heavy value pulls its centroid: {w:?}");
        assert_eq!(kmeans_1d(&[3.0; 10], None, 16), vec![3.0], "one distinct value, one centroid");
    }

    #[test]
    fn log2_levels_are_signed_powers_of_two() {
        let l = log2_levels(1.0, 4);
        assert_eq!(l.len(), 15);
        assert_eq!(l[7], 0.0);
        assert_eq!(l[14], 1.0);
        assert_eq!(l[13], 0.5);
        assert_eq!(l[0], -1.0);
        assert_eq!(nearest(&l, 0.3), 13 - 1, "0.3 is nearest 0.25");
        assert_eq!(nearest(&l, -2.0), 0);
    }

    #[test]
    fn rows_put_the_channel_axis_first() {
        let w = ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        assert_eq!(rows_of(&w, 1), ndarray::arr2(&[[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]]));
        assert_eq!(rows_of(&w, 0), ndarray::arr2(&[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]));
    }
}
