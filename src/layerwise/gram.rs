//! Second-moment statistics of each layer's inputs over calibration data:
//! H = XᵀX, where a row of X is one input vector the layer's weight rows are
//! dotted with (a token for MatMul/Gemm, an im2col patch for Conv).

use super::layers::Layer;
use crate::data::Dataset;
use crate::ir::Model;
use crate::measure::{visit_tensors, Progress, Rows};
use crate::{Error, Result};
use ndarray::{Array2, ArrayD, ArrayView4, Axis};

/// How a Conv turns its input into patches.
#[derive(Clone, Debug, Default)]
pub struct ConvGeometry {
    /// Kernel size per spatial axis.
    pub kernel: Vec<usize>,
    /// Strides per spatial axis.
    pub strides: Vec<usize>,
    /// Dilations per spatial axis.
    pub dilations: Vec<usize>,
    /// Begin pads of each spatial axis.
    pub pads: Vec<usize>,
    /// End pads (a conv's: its begin pads, as only they place the patches; a transposed conv's
    /// make its output size).
    pub pads_end: Vec<usize>,
    /// The input spread out by this much per axis, zeros between (a transposed conv's strides; 1:
    /// as it is).
    pub spread: Vec<usize>,
}

/// Runs the calibration data through the model and shows `visit` each
/// layer's float input, batch by batch: `visit(layer index, input)`.
pub fn visit_layer_inputs(
    model: &Model,
    layers: &[Layer],
    data: &Dataset,
    batch_size: usize,
    progress: &dyn Progress,
    mut visit: impl FnMut(usize, &ArrayD<f32>) -> Result<()>,
) -> Result<()> {
    let names: Vec<String> = layers.iter().map(|l| l.input.clone()).collect();
    visit_tensors(model, &names, data, Rows::all(batch_size), progress, "layer inputs", |i, x| {
        visit(
            i,
            x.ok_or_else(|| Error::Model(format!("layer '{}': input '{}' is not float32", layers[i].node, names[i])))?,
        )
    })
}

/// H (inputs × inputs, f64) and the number of rows it sums, per layer.
pub fn input_grams(
    model: &Model,
    layers: &[Layer],
    data: &Dataset,
    batch_size: usize,
    progress: &dyn Progress,
) -> Result<Vec<(Array2<f64>, usize)>> {
    let mut grams: Vec<(Array2<f64>, usize)> =
        layers.iter().map(|l| (Array2::zeros((l.rows.ncols(), l.rows.ncols())), 0)).collect();
    visit_layer_inputs(model, layers, data, batch_size, progress, |i, x| {
        let l = &layers[i];
        let (h, count) = &mut grams[i];
        for chunk in row_chunks(x, l)? {
            let rows = input_rows_in(x, l, chunk)?;
            if rows.ncols() != h.ncols() {
                return Err(Error::Model(format!(
                    "layer '{}': {} input features, the weight has {}",
                    l.node,
                    rows.ncols(),
                    h.ncols()
                )));
            }
            let r = rows.mapv(f64::from);
            *h += &r.t().dot(&r);
            *count += r.nrows();
        }
        Ok(())
    })?;
    Ok(grams)
}

/// Patch rows are formed and summed at most this many bytes (as f64) at a
/// time: a detector's first convs at 800×608 have ~240 000 patches of 300–600
/// features per 8 images — gigabytes at once (structured pruning's repair of
/// such a model peaked at 4.4 GB). Every shared model's layers fit in one
/// chunk, so their sums (and outputs) are as before.
const CHUNK_BYTES: usize = 128 << 20;

/// The row ranges of `layer`'s input rows in `x`, in order, each within 128 MB as f64.
pub fn row_chunks(x: &ArrayD<f32>, layer: &Layer) -> Result<Vec<std::ops::Range<usize>>> {
    row_chunks_within(x, layer, CHUNK_BYTES)
}

fn row_chunks_within(x: &ArrayD<f32>, layer: &Layer, bytes: usize) -> Result<Vec<std::ops::Range<usize>>> {
    let (rows, cols) = row_shape(x, layer)?;
    let step = (bytes / (cols.max(1) * 8)).max(1);
    Ok((0..rows).step_by(step).map(|start| start..(start + step).min(rows)).collect())
}

/// How many input rows `x` makes for `layer`, and their width.
fn row_shape(x: &ArrayD<f32>, layer: &Layer) -> Result<(usize, usize)> {
    match &layer.geometry {
        Some(geo) => {
            let (n, c, oh, ow) = conv_output_dims(x, geo, &layer.node)?;
            Ok((n * oh * ow, c * geo.kernel[0] * geo.kernel[1]))
        }
        None => {
            let k = *x.shape().last().unwrap_or(&0);
            Ok((x.len() / k.max(1), k))
        }
    }
}

/// The vectors `layer`'s weight rows are dotted with, one per row: im2col
/// patches for a Conv, the last axis for MatMul/Gemm.
pub fn input_rows(x: &ArrayD<f32>, layer: &Layer) -> Result<Array2<f32>> {
    let (rows, _) = row_shape(x, layer)?;
    input_rows_in(x, layer, 0..rows)
}

/// Rows `range` of [`input_rows`], formed alone.
pub fn input_rows_in(x: &ArrayD<f32>, layer: &Layer, range: std::ops::Range<usize>) -> Result<Array2<f32>> {
    let (rows, _) = row_shape(x, layer)?;
    if range.end > rows {
        return Err(Error::Model(format!("layer '{}': rows {range:?} of {rows}", layer.node)));
    }
    match &layer.geometry {
        Some(geo) => im2col(x, geo, &layer.node, range),
        None => {
            let k = *x.shape().last().unwrap_or(&0);
            let all = x
                .as_standard_layout()
                .into_owned()
                .into_shape_with_order((x.len() / k.max(1), k))
                .map_err(|e| Error::Model(e.to_string()))?;
            Ok(all.slice(ndarray::s![range, ..]).to_owned())
        }
    }
}

/// A conv input as an image: [N, C, L] (a 1-D conv's) seen as [N, C, 1, L].
fn image<'a>(x: &'a ArrayD<f32>, node: &str) -> Result<ArrayView4<'a, f32>> {
    let v = if x.ndim() == 3 { x.view().insert_axis(Axis(2)) } else { x.view() };
    v.into_dimensionality()
        .map_err(|_| Error::Model(format!("conv '{node}': only 1-D and 2-D convolutions are supported")))
}

/// A conv input's batch and channels, and its output's height and width.
fn conv_output_dims(x: &ArrayD<f32>, g: &ConvGeometry, node: &str) -> Result<(usize, usize, usize, usize)> {
    let (n, c, h, w) = image(x, node)?.dim();
    let span = |a: usize, size: usize| -> usize {
        let spread = size.saturating_sub(1) * g.spread[a] + usize::from(size > 0);
        let full = (spread + g.pads[a] + g.pads_end[a]) as isize - (g.dilations[a] * (g.kernel[a] - 1) + 1) as isize;
        if full < 0 {
            0
        } else {
            full as usize / g.strides[a] + 1
        }
    };
    Ok((n, c, span(0, h), span(1, w)))
}

/// Patches `range` (one row per output position, batch-major) of a
/// [N, C, H, W] input, in the weight's [C, kh, kw] order (zero padding
/// outside the image).
fn im2col(x: &ArrayD<f32>, g: &ConvGeometry, node: &str, range: std::ops::Range<usize>) -> Result<Array2<f32>> {
    let (_, c, oh, ow) = conv_output_dims(x, g, node)?;
    let x = image(x, node)?;
    let (_, _, h, w) = x.dim();
    let (kh, kw) = (g.kernel[0], g.kernel[1]);
    let (sh, sw) = (g.strides[0], g.strides[1]);
    let (dh, dw) = (g.dilations[0], g.dilations[1]);
    let (ph, pw) = (g.pads[0] as isize, g.pads[1] as isize);
    let (uh, uw) = (g.spread[0] as isize, g.spread[1] as isize);
    // A position of the spread-out input: the input's value there, or one of the zeros between.
    let at = |p: isize, spread: isize, size: usize| {
        (p >= 0 && p % spread == 0 && p / spread < size as isize).then(|| (p / spread) as usize)
    };
    let start = range.start;
    let mut out = Array2::zeros((range.len(), c * kh * kw));
    for (k, mut patch) in out.axis_iter_mut(Axis(0)).enumerate() {
        let row = start + k;
        let (b, rest) = (row / (oh * ow), row % (oh * ow));
        let (oy, ox) = (rest / ow, rest % ow);
        for ch in 0..c {
            for ky in 0..kh {
                let Some(y) = at((oy * sh + ky * dh) as isize - ph, uh, h) else { continue };
                for kx in 0..kw {
                    if let Some(xx) = at((ox * sw + kx * dw) as isize - pw, uw, w) {
                        patch[(ch * kh + ky) * kw + kx] = x[[b, ch, y, xx]];
                    }
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::IxDyn;

    /// A Conv1d (kernel 3, pad 1, stride 2) over [1, 2, 4]: patches are its
    /// windows, channel-major as its [Cout, 2, 3] weight reads them.
    #[test]
    fn a_1d_conv_cuts_windows_as_a_2d_conv_one_row_high() {
        let node = crate::ir::testing::node(
            "Conv",
            &["x", "w"],
            "y",
            &[("pads", crate::ir::testing::ints(&[1, 1])), ("strides", crate::ir::testing::ints(&[2]))],
        );
        let g = crate::layerwise::layers::conv_geometry(&node, &[5, 2, 3]).expect("a 1-D conv has patches");
        assert_eq!((g.kernel.clone(), g.strides.clone(), g.pads.clone()), (vec![1, 3], vec![1, 2], vec![0, 1]));
        let x = ArrayD::from_shape_vec(IxDyn(&[1, 2, 4]), vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]).unwrap();
        let p = im2col(&x, &g, "c", 0..2).unwrap();
        assert_eq!(p.row(0).to_vec(), vec![0.0, 1.0, 2.0, 0.0, 5.0, 6.0]);
        assert_eq!(p.row(1).to_vec(), vec![2.0, 3.0, 4.0, 6.0, 7.0, 8.0]);
    }

    #[test]
    fn patches_follow_the_kernel_layout_with_zero_padding() {
        let x = ArrayD::from_shape_vec(IxDyn(&[1, 1, 2, 2]), vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
        let g = ConvGeometry {
            kernel: vec![2, 2],
            strides: vec![1, 1],
            dilations: vec![1, 1],
            pads: vec![1, 1],
            pads_end: vec![1, 1],
            spread: vec![1, 1],
        };
        let p = im2col(&x, &g, "c", 0..9).unwrap();
        assert_eq!(p.dim(), (9, 4));
        assert_eq!(p.row(0).to_vec(), vec![0.0, 0.0, 0.0, 1.0]);
        assert_eq!(p.row(4).to_vec(), vec![1.0, 2.0, 3.0, 4.0]);
        // A range is those rows alone.
        let part = im2col(&x, &g, "c", 3..6).unwrap();
        assert_eq!(part, p.slice(ndarray::s![3..6, ..]));
    }

    /// Chunks of a layer's rows cover them in order, each within its byte budget,
    /// and together form exactly the rows formed at once.
    #[test]
    fn chunked_patches_are_the_patches() {
        let model = crate::ir::testing::model(
            vec![crate::ir::testing::node(
                "Conv",
                &["x", "w"],
                "y",
                &[("pads", crate::ir::testing::ints(&[1, 1, 1, 1]))],
            )],
            vec![crate::ir::testing::tensor("w", &[4, 2, 3, 3], crate::ir::testing::wavy)],
            &[2, 2, 5, 5],
            &["y"],
            13,
        );
        let choice = crate::layerwise::LayerChoice::all();
        let layer = crate::layerwise::prunable_layers(&model, &choice).unwrap().0.remove(0);
        let x = ArrayD::from_shape_fn(IxDyn(&[2, 2, 5, 5]), |i| (i[0] * 50 + i[1] * 25 + i[2] * 5 + i[3]) as f32);
        let whole = input_rows(&x, &layer).unwrap();
        assert_eq!(whole.dim(), (50, 18));
        let chunks = row_chunks_within(&x, &layer, 18 * 8 * 7).unwrap();
        assert_eq!(chunks.len(), 8);
        assert!(chunks.iter().all(|c| c.len() <= 7));
        let parts: Vec<Array2<f32>> = chunks.into_iter().map(|c| input_rows_in(&x, &layer, c).unwrap()).collect();
        let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
        assert_eq!(ndarray::concatenate(Axis(0), &views).unwrap(), whole);
        assert!(input_rows_in(&x, &layer, 45..51).is_err(), "rows past the end are an error, not a panic");
    }
}

#[cfg(test)]
mod transposed_tests {
    use super::*;
    use crate::ir::testing::{ints, model, node, tensor, wavy};
    use ndarray::IxDyn;

    /// A ConvTranspose (stride 2, pads 1, output_padding 1) is its rows dotted with the patches of
    /// its spread-out input: the same numbers tract computes, and the rows give the weight back.
    #[test]
    fn a_transposed_conv_is_a_conv_over_its_spread_out_input() {
        let attrs = [("strides", ints(&[2, 2])), ("pads", ints(&[1, 1, 1, 1])), ("output_padding", ints(&[1, 1]))];
        let m = model(
            vec![node("ConvTranspose", &["x", "w"], "y", &attrs)],
            vec![tensor("w", &[3, 4, 3, 3], wavy)],
            &[2, 3, 5, 4],
            &["y"],
            13,
        );
        let layer = crate::layerwise::prunable_layers(&m, &crate::layerwise::LayerChoice::all()).unwrap().0.remove(0);
        assert_eq!((layer.rows.dim(), layer.channels, layer.has_statistics()), ((4, 27), 3, true));
        let w = m.graph.constant("w").unwrap().unwrap().to_f32().unwrap();
        assert_eq!(layer.restore(&layer.rows).unwrap(), w);
        let x = ArrayD::from_shape_fn(IxDyn(&[2, 3, 5, 4]), |i| wavy(i[0] * 60 + i[1] * 20 + i[2] * 4 + i[3] + 7));
        let options =
            crate::runtime::SessionOptions { backend: Some(crate::runtime::Backend::Tract), ..Default::default() };
        let session = crate::runtime::Session::new(&m, &options).unwrap();
        let y = session.run(&[crate::data::Array::F32(x.clone())]).unwrap().remove(0).to_f32();
        assert_eq!(y.shape(), &[2, 4, 10, 8]);
        let patches = input_rows(&x, &layer).unwrap();
        let ours = patches.dot(&layer.rows.t());
        for ((b, o, r, c), v) in y.view().into_dimensionality::<ndarray::Ix4>().unwrap().indexed_iter() {
            let mine = ours[[(b * 10 + r) * 8 + c, o]];
            assert!((mine - v).abs() < 1e-4, "y[{b}, {o}, {r}, {c}] = {v}, patches give {mine}");
        }
    }
}
