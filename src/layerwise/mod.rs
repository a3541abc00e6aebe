//! Layer-wise reconstruction, shared by pruning and quantization: each layer's
//! weight as output rows × input features (`layers`), the second moments of its
//! inputs over calibration data, H = XᵀX (`gram`), and the factor of H⁻¹ that
//! optimal-brain-surgeon updates (SparseGPT, GPTQ) spread a weight's error with.

mod gram;
mod layers;

pub use gram::{input_grams, input_rows, input_rows_in, row_chunks, visit_layer_inputs, ConvGeometry};
pub use layers::{layer_sites, prunable_layers, Layer, LayerChoice, LayerSite, Skipped};

use faer::linalg::solvers::DenseSolveCore;
use faer::{Mat, Side};
use ndarray::{s, Array2};

/// Columns handled together by [`obs_sweep`]: updates inside a block are
/// applied at once, to the rest of the row once per block.
pub const BLOCK: usize = 128;

/// Dampening: λ = 1 % of the mean diagonal of H.
const DAMP: f64 = 0.01;

/// The inputs that never fire on the calibration data (zero diagonal).
pub fn dead_inputs(h: &Array2<f64>) -> Vec<usize> {
    (0..h.nrows()).filter(|&j| h[[j, j]] == 0.0).collect()
}

/// H made safely invertible: dead inputs get a unit diagonal, and every
/// diagonal entry 1 % of the mean diagonal more.
pub fn dampened(h: &Array2<f64>) -> Array2<f64> {
    let mut h = h.clone();
    let n = h.nrows();
    for j in dead_inputs(&h) {
        h[[j, j]] = 1.0;
    }
    let mean_diag = (0..n).map(|j| h[[j, j]]).sum::<f64>() / n.max(1) as f64;
    for j in 0..n {
        h[[j, j]] += DAMP * mean_diag;
    }
    h
}

/// U with Uᵀ U = H⁻¹ (U upper triangular), via two Cholesky factorisations.
pub fn upper_cholesky_of_inverse(h: &Array2<f64>) -> Result<Array2<f64>, String> {
    let n = h.nrows();
    let hm = Mat::<f64>::from_fn(n, n, |i, j| h[[i, j]]);
    let inv = hm.llt(Side::Lower).map_err(|e| format!("H is not positive definite ({e:?})"))?.inverse();
    let llt = inv.llt(Side::Lower).map_err(|e| format!("H⁻¹ is not positive definite ({e:?})"))?;
    let l = llt.L();
    // U = Lᵀ.
    Ok(Array2::from_shape_fn((n, n), |(i, j)| if j >= i { l[(j, i)] } else { 0.0 }))
}

/// The optimal-brain-surgeon sweep SparseGPT and GPTQ share. The columns of
/// `w` (rows × inputs) are visited in order; `decide(block, start, j, out)`
/// writes into `out` the value each row keeps for column `start + j` (zero, a
/// grid point …), seeing the block of columns `start..` as updated so far. The
/// difference is spread over the row's later columns through `u`, the upper
/// Cholesky factor of H⁻¹, so the layer's output on the calibration inputs
/// moves as little as possible.
pub fn obs_sweep(w: &mut Array2<f64>, u: &Array2<f64>, mut decide: impl FnMut(&Array2<f64>, usize, usize, &mut [f64])) {
    let (rows, cols) = w.dim();
    let mut kept = vec![0.0; rows];
    for start in (0..cols).step_by(BLOCK) {
        let end = (start + BLOCK).min(cols);
        let mut block = w.slice(s![.., start..end]).to_owned();
        let mut errors = Array2::<f64>::zeros((rows, end - start));
        for j in 0..end - start {
            let col = start + j;
            decide(&block, start, j, &mut kept);
            let d = u[[col, col]];
            for r in 0..rows {
                let err = (block[[r, j]] - kept[r]) / d;
                block[[r, j]] = kept[r];
                errors[[r, j]] = err;
                if err != 0.0 {
                    for k in j + 1..end - start {
                        block[[r, k]] -= err * u[[col, start + k]];
                    }
                }
            }
        }
        w.slice_mut(s![.., start..end]).assign(&block);
        if end < cols {
            // The rest of each row absorbs this block's errors: W[:, end:] -= E · U[block, end:].
            let update = errors.dot(&u.slice(s![start..end, end..]));
            let mut rest = w.slice_mut(s![.., end..]);
            rest -= &update;
        }
    }
}
