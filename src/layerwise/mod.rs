//! Layer-wise reconstruction, shared by pruning and quantization: each layer's
//! weight as output rows × input features (`layers`), the second moments of its
//! inputs over calibration data, H = XᵀX (`gram`), and the factor of H⁻¹ that
//! optimal-brain-surgeon updates (SparseGPT, GPTQ) spread a weight's error with.

mod gram;
mod layers;

pub use gram::{input_grams, input_rows, visit_layer_inputs, visit_tensors, ConvGeometry};
pub use layers::{layer_sites, prunable_layers, Layer, LayerChoice, LayerSite, Skipped};

use faer::linalg::solvers::DenseSolveCore;
use faer::{Mat, Side};
use ndarray::Array2;

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
