//! SparseGPT (Frantar & Alistarh, 2023): optimal-brain-surgeon pruning with
//! H = XᵀX. Columns are visited in order; a pruned weight's error is spread
//! over the row's later weights through the upper Cholesky factor of H⁻¹, so
//! the layer's output on the calibration inputs changes as little as possible.
//! The factorisations come from faer.

use crate::layerwise::{obs_sweep, upper_cholesky_of_inverse};
use ndarray::{Array2, Axis};

/// Prunes `w` (rows × inputs) in place to `sparsity` (or N of every M inputs),
/// given H (inputs × inputs). Returns the mask of kept weights.
pub fn sparsegpt(
    w: &mut Array2<f32>,
    h: &Array2<f64>,
    sparsity: f64,
    pattern: Option<(usize, usize)>,
) -> Result<Array2<bool>, String> {
    let (rows, cols) = w.dim();
    let mut wd = w.mapv(f64::from);
    // Inputs that never fire carry no information: prune them.
    for j in crate::layerwise::dead_inputs(h) {
        wd.column_mut(j).fill(0.0);
    }
    let u = upper_cholesky_of_inverse(&crate::layerwise::dampened(h))?;
    let mut mask = Array2::from_elem((rows, cols), true);
    let mut block_mask = Array2::from_elem((rows, 0), true);
    obs_sweep(&mut wd, &u, |block, start, j, kept| {
        let width = block.ncols();
        if j == 0 {
            block_mask = Array2::from_elem((rows, width), true);
            if pattern.is_none() {
                // Lowest w²/[U]²_jj in the block across all rows, as SparseGPT does.
                let mut scores: Vec<(f64, usize, usize)> = Vec::with_capacity(rows * width);
                for r in 0..rows {
                    for c in 0..width {
                        let d = u[[start + c, start + c]];
                        scores.push((block[[r, c]].powi(2) / (d * d), r, c));
                    }
                }
                scores.sort_by(|a, b| a.0.total_cmp(&b.0).then((a.1, a.2).cmp(&(b.1, b.2))));
                let k = (scores.len() as f64 * sparsity).round() as usize;
                for &(_, r, c) in scores.iter().take(k) {
                    block_mask[[r, c]] = false;
                }
            }
        }
        if let Some((n, m)) = pattern {
            if j % m == 0 {
                // Within each group of m inputs, each row keeps its n best.
                for r in 0..rows {
                    let mut idx: Vec<usize> = (j..(j + m).min(width)).collect();
                    idx.sort_by(|&a, &b| {
                        let score = |c: usize| block[[r, c]].powi(2) / u[[start + c, start + c]].powi(2);
                        score(b).total_cmp(&score(a)).then(a.cmp(&b))
                    });
                    for &c in idx.iter().skip(n) {
                        block_mask[[r, c]] = false;
                    }
                }
            }
        }
        for r in 0..rows {
            kept[r] = if block_mask[[r, j]] { block[[r, j]] } else { 0.0 };
            mask[[r, start + j]] = block_mask[[r, j]];
        }
    });
    for (r, m) in wd.axis_iter(Axis(0)).zip(mask.axis_iter(Axis(0))) {
        debug_assert!(r.iter().zip(m.iter()).all(|(v, k)| *k || *v == 0.0));
    }
    *w = wd.mapv(|v| v as f32);
    Ok(mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With correlated inputs, the surviving weights compensate for the
    /// pruned ones: the output error is smaller than plain magnitude pruning's.
    #[test]
    fn compensation_beats_plain_zeroing() {
        let n = 400;
        let mut state = 7u64;
        let mut rnd = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 33) as f64 / (1u64 << 31) as f64) - 0.5
        };
        // Inputs: 8 features, pairs strongly correlated.
        let mut x = Array2::<f64>::zeros((n, 8));
        for i in 0..n {
            for p in 0..4 {
                let base = rnd();
                x[[i, 2 * p]] = base + 0.05 * rnd();
                x[[i, 2 * p + 1]] = base + 0.05 * rnd();
            }
        }
        let w = Array2::from_shape_fn((3, 8), |(r, c)| ((r * 8 + c) as f64 * 0.37).sin() as f32);
        let h = x.t().dot(&x);
        let y = x.dot(&w.mapv(f64::from).t());
        let mut pruned = w.clone();
        let mask = sparsegpt(&mut pruned, &h, 0.5, None).unwrap();
        assert_eq!(mask.iter().filter(|k| !**k).count(), 12);
        assert!(pruned.iter().zip(mask.iter()).all(|(v, k)| *k || *v == 0.0));
        let err = |m: &Array2<f32>| (&y - &x.dot(&m.mapv(f64::from).t())).mapv(|v| v * v).sum();
        let mut magnitude = w.clone();
        let keep = crate::prune::sparse::row_mask(&w.mapv(f32::abs), 0.5);
        magnitude.zip_mut_with(&keep, |v, k| {
            if !k {
                *v = 0.0
            }
        });
        assert!(err(&pruned) < 0.5 * err(&magnitude), "{} vs {}", err(&pruned), err(&magnitude));
    }

    #[test]
    fn two_of_four_pattern_holds_in_every_group() {
        let h = Array2::from_shape_fn((8, 8), |(i, j)| if i == j { 2.0 } else { 0.5 });
        let mut w = Array2::from_shape_fn((2, 8), |(r, c)| (r + c) as f32 - 3.5);
        let mask = sparsegpt(&mut w, &h, 0.5, Some((2, 4))).unwrap();
        for row in mask.axis_iter(Axis(0)) {
            for g in 0..2 {
                assert_eq!(row.iter().skip(4 * g).take(4).filter(|k| **k).count(), 2);
            }
        }
    }
}
