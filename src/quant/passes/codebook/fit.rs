//! Fitting a table and choosing each weight's entry: k-means in one dimension (weighted, started
//! from companded quantiles), log2 levels with the best scale, entries chosen to nearest or with
//! GPTQ's error feedback, each row's sum kept.

use super::*;

/// Which values a weight's rows share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Tables {
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
pub(super) struct Encoded {
    pub(super) codes: Array2<u8>,
    pub(super) tables: Array2<f32>,
    pub(super) scales: Option<Vec<f32>>,
}

pub(super) fn encode(rows: &Array2<f32>, table: Table, layout: Tables, weights: Option<&[f32]>) -> Encoded {
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
pub(super) fn codes_with_feedback(
    rows: &Array2<f32>,
    h: &Array2<f64>,
    tables: &Array2<f32>,
) -> std::result::Result<Array2<u8>, String> {
    let q = crate::quant::gptq::round_with_feedback(rows, h, true, |r, _, x| {
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
pub(super) fn keep_sum(values: &[f32], levels: &[f32], codes: &mut [u8]) {
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
pub(super) fn nearest(levels: &[f32], v: f32) -> u8 {
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
pub(super) fn log2_levels(amax: f32, bits: u32) -> Vec<f32> {
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
pub(super) fn best_log2_scale(row: &[f32], amax: f32, bits: u32, weights: Option<&[f32]>) -> f32 {
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
pub(super) fn kmeans_1d(values: &[f32], weights: Option<&[f32]>, k: usize) -> Vec<f32> {
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
pub(super) fn companded_start(sorted: &[f64], wts: &[f64], k: usize) -> Vec<f64> {
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
