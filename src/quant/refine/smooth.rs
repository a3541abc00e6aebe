//! SmoothQuant (Xiao et al., 2023) before static quantization: a MatMul's
//! activation outliers sit in a few input channels, which a per-tensor
//! activation scale must cover; dividing channel k of the activation by s_k and
//! multiplying row k of the weight by s_k keeps the product and moves the
//! outliers into the weights, which are quantized per output channel.
//! s_k = max|X_k|^α / max|W_k|^(1−α), from the calibration data. The division
//! is one `Mul` by 1/s on the activation, shared by the MatMuls that read it
//! (so Q, K and V get one s).
//!
//! With `α = auto` each group gets the α (or no smoothing) whose simulated
//! int8 product — uint8 activations over the whole calibrated range, int8
//! weights per output channel — is closest to the float product on sampled
//! calibration rows. The α tried stop at 0.6: that local error kept choosing
//! 0.7–0.9 on minilm_l6, which measured worse at its output (cosine 0.9975 /
//! NN 94.1 % against 0.9981 / 95.3 % at a fixed 0.6); up to 0.6 it chose 0.6
//! for 21 groups and none for 3 (0.9981 / 93.4 %). A group no α up to 0.6
//! smooths is tried at 0.7–0.9 (the same gain rule): minilm_l6's GELU outputs
//! and attention contexts, whose MatMuls the fallback otherwise keeps float —
//! all int8 then, 2.07× → 2.30× fp32's speed at cosine 0.9978 / NN 94.1 %.

use crate::data::Dataset;
use crate::ir::{Model, Node, Tensor};
use crate::quant::scheme::{fake_quantize, params_for_range, QType};
use crate::Result;
use ndarray::{Array1, Array2, ArrayD, Axis, IxDyn};
use std::collections::BTreeMap;

/// Calibration rows the activation ranges are taken over.
pub(crate) const ROWS: usize = 64;
/// Activation vectors (rows of the last axis) kept per group to judge α on, every
/// [`SAMPLE_EVERY`]-th one. Half of the 1024 they were moved each group's error ratios by at most
/// 3 % and chose the same α everywhere (every shared model's output byte for byte the same), for
/// half the products: minilm_l6's choice 1.1 → 0.6 s.
const SAMPLES: usize = 512;
const SAMPLE_EVERY: usize = 8;
/// The α `auto` tries; `None` is no smoothing (see the module's note on 0.6).
const AUTO_ALPHAS: [Option<f64>; 5] = [None, Some(0.3), Some(0.4), Some(0.5), Some(0.6)];
/// The α `auto` tries for a group none of [`AUTO_ALPHAS`] smooths: minilm_l6's GELU outputs (read by
/// its FFN-output MatMuls) and attention contexts (read by the attention-output MatMuls) have outlier
/// channels that need more than 0.6 moved into the weights.
const WIDER_ALPHAS: [f64; 3] = [0.7, 0.8, 0.9];

/// With `auto`, a group is smoothed only where its best α leaves at most this share of the
/// unsmoothed product's error. Activations with outlier channels gain far more: minilm_l6's
/// LayerNorm outputs 0.07–0.33; groups without outliers gain little and their
/// smoothed weights cost at the output what the product gained (digits_vit 0.72–1.0,
/// ppocr_rec_v4 0.50–1.0, ppocr_cls_v2 0.63; smoothed at those, their output SQNR fell by 0.4–1.4 dB).
const AUTO_MIN_GAIN: f64 = 0.4;

/// SmoothQuant's migration strength.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Alpha {
    /// No smoothing.
    Off,
    /// One α for every group (0–1).
    Fixed(f64),
    /// Per group, the α whose simulated int8 product errs least, where that gains enough
    /// (`AUTO_MIN_GAIN`); static's default.
    Auto,
}

impl std::str::FromStr for Alpha {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => return Ok(Alpha::Auto),
            "off" => return Ok(Alpha::Off),
            _ => {}
        }
        match s.parse::<f64>() {
            Ok(a) if (0.0..=1.0).contains(&a) => Ok(Alpha::Fixed(a)),
            _ => Err(format!("'{s}' is neither 'auto', 'off' nor an α between 0 and 1")),
        }
    }
}

impl std::fmt::Display for Alpha {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Alpha::Off => f.write_str("off"),
            Alpha::Fixed(a) => write!(f, "{a}"),
            Alpha::Auto => f.write_str("auto"),
        }
    }
}

impl serde::Serialize for Alpha {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Alpha::Fixed(a) => s.serialize_f64(*a),
            other => s.serialize_str(&other.to_string()),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Alpha {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Written {
            Number(f64),
            Word(String),
        }
        match Written::deserialize(d)? {
            Written::Number(a) => a.to_string().parse(),
            Written::Word(w) => w.parse(),
        }
        .map_err(serde::de::Error::custom)
    }
}

/// One smoothed group: the activation and the α it got.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Smoothed {
    /// The activation divided.
    pub activation: String,
    /// Its α.
    pub alpha: f64,
}

/// What the calibration data says about one activation.
struct Stats {
    /// Per channel (last axis): smallest, largest value.
    min: Vec<f32>,
    max: Vec<f32>,
    /// Sampled activation vectors, one per row.
    samples: Vec<f32>,
}

/// The groups SmoothQuant may smooth: MatMuls with constant 2-D weights, by the activation they read.
fn groups(model: &Model) -> BTreeMap<String, Vec<usize>> {
    let g = &model.graph;
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, n) in g.nodes.iter().enumerate() {
        if n.op_type != "MatMul" || !n.is_onnx_op() {
            continue;
        }
        let (Some(x), Some(w)) = (n.input(0), n.input(1)) else { continue };
        let Some(Ok(t)) = g.constant(w) else { continue };
        if t.dims.len() != 2 || g.constant_site(x).is_some() {
            continue;
        }
        groups.entry(x.to_string()).or_default().push(i);
    }
    groups
}

/// What SmoothQuant measures of the data: each group activation's per-channel extremes over the
/// rows it sees and (for `auto`) up to [`SAMPLES`] of its vectors. Filled by [`Observed::see`],
/// from a pass of its own ([`smooth`]) or beside calibration's ([`Observed::capture`]).
pub struct Observed {
    names: Vec<String>,
    stats: Vec<Option<Stats>>,
    bad: Vec<bool>,
    sample: bool,
    /// Vectors seen per activation, across batches: the sample is every SAMPLE_EVERY-th of the
    /// data's, however the rows are batched.
    seen: Vec<usize>,
}

impl Observed {
    /// What `alpha` needs of `model`'s groups; `None` when there is nothing to smooth.
    pub fn new(model: &Model, alpha: Alpha) -> Option<Observed> {
        let names: Vec<String> = groups(model).into_keys().collect();
        if names.is_empty() || alpha == Alpha::Off {
            return None;
        }
        let n = names.len();
        Some(Observed {
            names,
            stats: (0..n).map(|_| None).collect(),
            bad: vec![false; n],
            sample: alpha == Alpha::Auto,
            seen: vec![0; n],
        })
    }

    /// Whether calibration over `rows` rows can serve it in its own run: `auto` (a fixed α
    /// smooths every group, so the model calibrated would change) when calibration sees no more
    /// rows than SmoothQuant's [`ROWS`]. The choice is then made after calibration, which runs
    /// again only if some group is smoothed (ppocr_rec_v4, digits_vit, ppocr_cls_v2 smooth none:
    /// ppocr_rec_v4's own SmoothQuant run, 0.9 s, is gone).
    pub fn rides_along(&self, rows: usize) -> bool {
        self.sample && rows <= ROWS
    }

    /// One batch's value of activation `i` (`None`: not float).
    fn see(&mut self, i: usize, x: Option<&ArrayD<f32>>) -> Result<()> {
        let Some(x) = x else {
            self.bad[i] = true;
            return Ok(());
        };
        let Some(&k) = x.shape().last() else { return Ok(()) };
        let st = self.stats[i].get_or_insert_with(|| Stats { min: vec![0.0; k], max: vec![0.0; k], samples: vec![] });
        if st.min.len() != k {
            self.bad[i] = true;
            return Ok(());
        }
        // Every SAMPLE_EVERY-th vector, in the data's order: deterministic for any thread count
        // and batch. The vectors are the contiguous runs of the last axis (a strided walk
        // through ndarray's lanes took a fifth of minilm_l6's statistics).
        let x = x.as_standard_layout();
        for lane in x.as_slice().expect("standard layout").chunks_exact(k.max(1)) {
            for ((lo, hi), v) in st.min.iter_mut().zip(st.max.iter_mut()).zip(lane) {
                *lo = lo.min(*v);
                *hi = hi.max(*v);
            }
            if self.sample && self.seen[i].is_multiple_of(SAMPLE_EVERY) && st.samples.len() < SAMPLES * k {
                st.samples.extend_from_slice(lane);
            }
            self.seen[i] += 1;
        }
        Ok(())
    }

    /// A statistic for [`crate::measure::collect`] filling it (`feeds`: the model's fed inputs).
    pub fn capture<'a>(&'a mut self, feeds: &[String]) -> crate::measure::Captured<'a> {
        let names = self.names.clone();
        crate::measure::Captured::new(&names, feeds, move |i, x| self.see(i, x))
    }

    /// Each activation's statistics; `None` where it is not float or not finite.
    fn finish(self) -> BTreeMap<String, Stats> {
        let finite = |st: &Stats| st.min.iter().chain(&st.max).chain(&st.samples).all(|v| v.is_finite());
        let kept = self.names.into_iter().zip(self.stats).zip(self.bad);
        kept.filter_map(|((name, st), bad)| Some((name, st.filter(|st| !bad && finite(st))?))).collect()
    }
}

/// Smooths every group of MatMuls with constant 2-D weights that read one
/// activation. Returns the groups smoothed (auto may leave some as they are).
pub fn smooth(model: &mut Model, calib: &Dataset, alpha: Alpha, reduce_range: bool) -> Result<Vec<Smoothed>> {
    let Some(mut observed) = Observed::new(model, alpha) else { return Ok(vec![]) };
    let rows = crate::measure::Rows::first(ROWS, crate::measure::rows_per_run(model, 8));
    let names = observed.names.clone();
    crate::measure::visit_tensors(model, &names, calib, rows, &crate::measure::Silent, "", |i, x| observed.see(i, x))?;
    smooth_observed(model, observed, alpha, reduce_range)
}

/// [`smooth`] from what was observed of the data.
pub fn smooth_observed(
    model: &mut Model,
    observed: Observed,
    alpha: Alpha,
    reduce_range: bool,
) -> Result<Vec<Smoothed>> {
    let groups = groups(model);
    let mut stats = observed.finish();
    // Each group's weights and per-channel maxima, read from the model before it changes.
    let mut found = vec![];
    for (x, nodes) in &groups {
        let Some(stats) = stats.remove(x) else { continue };
        let xmax: Vec<f32> = stats.min.iter().zip(&stats.max).map(|(a, b)| a.abs().max(b.abs())).collect();
        let weights: Vec<(String, Array2<f32>)> = nodes
            .iter()
            .filter_map(|&i| {
                let w = model.graph.nodes[i].inputs[1].clone();
                let t = model.graph.constant(&w)?.ok()?.to_f32().ok()?.into_dimensionality().ok()?;
                Some((w, t))
            })
            .collect();
        if weights.len() != nodes.len() || weights.iter().any(|(_, w)| w.nrows() != xmax.len()) {
            continue;
        }
        let wmax: Vec<f32> = (0..xmax.len())
            .map(|k| {
                weights.iter().map(|(_, w)| w.row(k).iter().fold(0f32, |m, v| m.max(v.abs()))).fold(0f32, f32::max)
            })
            .collect();
        found.push((x, nodes, stats, weights, xmax, wmax));
    }
    // The α of every group, judged in parallel (minilm_l6: 24 groups, 5 to 8 α each).
    let chosen = crate::parallel::map(&found, |(_, _, stats, weights, xmax, wmax)| match alpha {
        Alpha::Off => None,
        Alpha::Fixed(a) => Some(a),
        Alpha::Auto => {
            let k = xmax.len();
            let x = Array2::from_shape_vec((stats.samples.len() / k, k), stats.samples.clone()).expect("rows of k");
            // The float products, the same for every α.
            let exact: Vec<Array2<f32>> = weights.iter().map(|(_, w)| product(&x, w)).collect();
            let error = |a: Option<f64>| {
                let s = a.map_or_else(|| Array1::ones(k), |a| scales(xmax, wmax, a));
                simulated_error(&x, &exact, stats, weights, &s, reduce_range)
            };
            let errors: Vec<(Option<f64>, f64)> = AUTO_ALPHAS.iter().map(|&a| (a, error(a))).collect();
            let unsmoothed = errors[0].1;
            let best = |errors: &[(Option<f64>, f64)]| {
                let (a, least) =
                    errors.iter().fold((None, f64::INFINITY), |best, &(a, e)| if e < best.1 { (a, e) } else { best });
                a.filter(|_| least <= AUTO_MIN_GAIN * unsmoothed)
            };
            best(&errors).or_else(|| {
                let wider: Vec<(Option<f64>, f64)> = WIDER_ALPHAS.iter().map(|&a| (Some(a), error(Some(a)))).collect();
                best(&wider)
            })
        }
    });
    let mut smoothed = vec![];
    for ((x, nodes, _, weights, xmax, wmax), chosen) in found.iter().zip(chosen) {
        let Some(a) = chosen else { continue };
        let s = scales(xmax, wmax, a);
        for (name, w) in weights {
            let scaled = w * &s.view().insert_axis(Axis(1));
            model.graph.set_constant(name, Tensor::from_array(name, &scaled.into_dyn()))?;
        }
        let inv = ArrayD::from_shape_vec(IxDyn(&[s.len()]), s.iter().map(|v| 1.0 / v).collect()).expect("1-d");
        let (inv_name, out) = (format!("{x}_smooth_scale"), format!("{x}_smoothed"));
        model.graph.initializers.push(Tensor::from_array(&inv_name, &inv));
        model.graph.nodes.push(Node::single(&out, "Mul", &[x, &inv_name], vec![]));
        for &i in *nodes {
            model.graph.nodes[i].inputs[0] = out.clone();
        }
        smoothed.push(Smoothed { activation: x.to_string(), alpha: a });
    }
    model.graph.sort_nodes()?;
    Ok(smoothed)
}

/// s_k = max|X_k|^α / max|W_k|^(1−α); 1 where that is degenerate.
fn scales(xmax: &[f32], wmax: &[f32], alpha: f64) -> Array1<f32> {
    xmax.iter()
        .zip(wmax)
        .map(|(&a, &b)| {
            let v = (a as f64).powf(alpha) / (b as f64).max(1e-8).powf(1.0 - alpha);
            if v.is_finite() && v > 1e-5 {
                v as f32
            } else {
                1.0
            }
        })
        .collect()
}

/// Squared error of the group's products with X/s as uint8 (the range the
/// calibration data gives X/s) and W·s as int8 per output channel, against
/// the float products `exact` (X·W of each weight), on the sampled rows `x`.
fn simulated_error(
    x: &Array2<f32>,
    exact: &[Array2<f32>],
    stats: &Stats,
    weights: &[(String, Array2<f32>)],
    s: &Array1<f32>,
    reduce_range: bool,
) -> f64 {
    let lo = stats.min.iter().zip(s).map(|(m, s)| m / s).fold(0f32, f32::min);
    let hi = stats.max.iter().zip(s).map(|(m, s)| m / s).fold(0f32, f32::max);
    let (qmin, qmax) = QType::UInt8.range(false);
    let (scale, zp) = params_for_range(lo, hi, QType::UInt8, false, false);
    let (zp, qmin, qmax) = (zp as f32, qmin as f32, qmax as f32);
    // Row by row (the values an indexed fill gives, without its index arithmetic).
    let mut xq = x.to_owned();
    for mut row in xq.rows_mut() {
        for (v, s) in row.iter_mut().zip(s) {
            *v = fake_quantize(*v / s, scale, zp, qmin, qmax);
        }
    }
    let (wmin, wmax) = QType::Int8.range(reduce_range);
    let (wmin, wmax) = (wmin as f32, wmax as f32);
    let mut error = 0.0;
    for ((_, w), exact) in weights.iter().zip(exact) {
        let mut wq = w * &s.view().insert_axis(Axis(1));
        // Each column's step from its largest magnitude, both passes along the rows.
        let mut amax = vec![0f32; wq.ncols()];
        for row in wq.rows() {
            for (m, v) in amax.iter_mut().zip(row) {
                *m = m.max(v.abs());
            }
        }
        let steps: Vec<f32> = amax.iter().map(|&m| if m > 0.0 { m / wmax } else { 1.0 }).collect();
        for mut row in wq.rows_mut() {
            for (v, step) in row.iter_mut().zip(&steps) {
                *v = fake_quantize(*v, *step, 0.0, wmin, wmax);
            }
        }
        let product = product(&xq, &wq);
        error += product.iter().zip(exact).map(|(p, e)| ((p - e) as f64).powi(2)).sum::<f64>();
    }
    error
}

/// `a · b` by faer on this thread (the groups are judged in parallel): a group's products for
/// every α — minilm_l6's FFN weights, 1024 sampled rows × 384 × 1536 each when measured — took
/// matrixmultiply 1.7× as long.
fn product(a: &Array2<f32>, b: &Array2<f32>) -> Array2<f32> {
    let (a, b) = (a.as_standard_layout(), b.as_standard_layout());
    let (m, k, n) = (a.nrows(), a.ncols(), b.ncols());
    let mut out = Array2::zeros((m, n));
    let lhs = faer::MatRef::from_row_major_slice(a.as_slice().expect("standard layout"), m, k);
    let rhs = faer::MatRef::from_row_major_slice(b.as_slice().expect("standard layout"), k, n);
    let dst = faer::MatMut::from_row_major_slice_mut(out.as_slice_mut().expect("standard layout"), m, n);
    faer::linalg::matmul::matmul(dst, faer::Accum::Replace, lhs, rhs, 1.0, faer::Par::Seq);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::data::Array;
    use crate::ir::testing::{model, node, tensor, wavy};

    /// x → Relu → MatMul, channel 3 of x forty times the others (an outlier channel), 40 rows.
    pub(crate) fn outlier_matmul(outlier: f32) -> (Model, Dataset) {
        let m = model(
            vec![node("Relu", &["x"], "r", &[]), node("MatMul", &["r", "w"], "y", &[])],
            vec![tensor("w", &[8, 4], wavy)],
            &[1, 8],
            &["y"],
            13,
        );
        let x = (0..320).map(|i| (wavy(i * 7) + 1.0) * if i % 8 == 3 { outlier } else { 1.0 }).collect();
        let x = ArrayD::from_shape_vec(IxDyn(&[40, 8]), x).unwrap();
        (m, Dataset::from_arrays("calibration", [("x".to_string(), Array::F32(x))].into()))
    }

    /// Observations filled beside another statistic's run, at another batch size, choose what
    /// SmoothQuant's own pass chooses: the same groups, α and model.
    #[test]
    fn observations_riding_on_another_run_choose_as_its_own_pass_does() {
        let (m, data) = outlier_matmul(40.0);
        let mut own = m.clone();
        let smoothed = smooth(&mut own, &data, Alpha::Auto, false).unwrap();
        assert_eq!(smoothed.len(), 1, "the outlier channel is smoothed");
        let mut riding = m.clone();
        let mut observed = Observed::new(&riding, Alpha::Auto).expect("a group");
        assert!(observed.rides_along(40) && !observed.rides_along(ROWS + 1));
        let bound = data.bind(&crate::runtime::feed_inputs(&m), None).unwrap();
        let mut extremes = crate::measure::Extremes::new(&["y".to_string()]);
        let mut capture = observed.capture(&bound.names);
        let rows = crate::measure::Rows::all(3);
        crate::measure::collect(&m, &bound, rows, &mut [&mut extremes, &mut capture], &crate::measure::Silent).unwrap();
        drop(capture);
        let again = smooth_observed(&mut riding, observed, Alpha::Auto, false).unwrap();
        assert_eq!(format!("{again:?}"), format!("{smoothed:?}"));
        assert_eq!(crate::ir::fingerprint(&riding), crate::ir::fingerprint(&own));
        assert!(Observed::new(&m, Alpha::Fixed(0.5)).is_some_and(|o| !o.rides_along(1)), "a fixed α smooths first");
    }

    #[test]
    fn alpha_reads_a_number_or_auto_and_writes_it_back() {
        assert_eq!("0.6".parse::<Alpha>(), Ok(Alpha::Fixed(0.6)));
        assert_eq!("auto".parse::<Alpha>(), Ok(Alpha::Auto));
        assert_eq!("off".parse::<Alpha>(), Ok(Alpha::Off));
        assert!("1.5".parse::<Alpha>().is_err() && "half".parse::<Alpha>().is_err());
        for alpha in [Alpha::Fixed(0.5), Alpha::Auto, Alpha::Off] {
            let written = serde_json::to_string(&alpha).unwrap();
            assert_eq!(serde_json::from_str::<Alpha>(&written).unwrap(), alpha, "{written}");
        }
        assert_eq!(serde_json::to_string(&Alpha::Auto).unwrap(), "\"auto\"");
        assert!(serde_json::from_str::<Alpha>("2.0").is_err());
    }
}
