//! The layers pruning and GPTQ work on (Conv, Gemm, MatMul with a constant weight),
//! each weight seen as a matrix of output rows × input features.

use crate::ir::{DataType, Model};
use crate::{Error, Result};
use ndarray::{Array2, ArrayD, Ix2};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Orientation {
    /// Conv kernels [Cout, Cin/g, k…]: rows are Cout.
    Conv,
    /// [K, N] (MatMul, Gemm without transB): rows are columns.
    InputsFirst,
    /// [N, K] (Gemm with transB): rows are rows.
    OutputsFirst,
    /// ConvTranspose kernels [Cin, Cout, k…]: rows are Cout, and each row's kernels are flipped so
    /// the layer is a conv (stride 1) over its input spread out by the strides (see `ConvGeometry`).
    Transposed,
}

/// A layer left alone: its node and why.
pub type Skipped = (String, String);

/// A layer with a constant weight, loaded as output rows × input features.
#[derive(Clone)]
pub struct Layer {
    /// The node's name.
    pub node: String,
    /// The weight's name.
    pub weight: String,
    /// The activation the layer reads (for calibration statistics).
    pub input: String,
    /// Output rows × input features.
    pub rows: Array2<f32>,
    /// Input channels of `input` the rows span (features = channels × kernel positions).
    pub channels: usize,
    /// A conv with group 1: input features are channels × kernel positions.
    pub conv: bool,
    /// A grouped conv: its rows read different channels, no shared input statistics.
    pub grouped: bool,
    /// How a (group 1, 1-D or 2-D) conv cuts its input into patches.
    pub geometry: Option<super::ConvGeometry>,
    shape: Vec<usize>,
    orientation: Orientation,
}

/// Patch geometry of a 2-D conv with explicit (or no) padding; a 1-D conv's
/// as a 2-D one's over an image one row high.
pub(super) fn conv_geometry(node: &crate::ir::Node, weight: &[usize]) -> Option<super::ConvGeometry> {
    let explicit = match node.attr("auto_pad") {
        None => true,
        Some(crate::ir::AttrValue::String(s)) => s.as_slice() == b"NOTSET" || s.as_slice() == b"VALID",
        _ => false,
    };
    let spatial = weight.len().checked_sub(2).filter(|s| (1..=2).contains(s))?;
    if !explicit {
        return None;
    }
    // The begin values of each spatial axis (pads list begins first, then ends).
    let per_axis = |name: &str, default: usize| -> Option<Vec<usize>> {
        let mut v: Vec<usize> = match node.attr_ints(name) {
            Some(v) if v.len() >= spatial => v.iter().take(spatial).map(|&x| x.max(0) as usize).collect(),
            Some(_) => return None,
            None => vec![default; spatial],
        };
        if spatial == 1 {
            v.insert(0, if name == "pads" { 0 } else { 1 });
        }
        Some(v)
    };
    let mut kernel = weight[2..].to_vec();
    if spatial == 1 {
        kernel.insert(0, 1);
    }
    let pads = per_axis("pads", 0)?;
    let geometry = super::ConvGeometry {
        strides: per_axis("strides", 1)?,
        dilations: per_axis("dilations", 1)?,
        pads_end: pads.clone(),
        pads,
        spread: vec![1, 1],
        kernel,
    };
    if node.op_type != "ConvTranspose" {
        return Some(geometry);
    }
    // A transposed conv is a conv of stride 1 over its input spread out by its strides (zeros
    // between), padded by d·(k−1) − pad at the start and by that plus output_padding at the end.
    if node.attr("output_shape").is_some() {
        return None;
    }
    let ends: Vec<usize> = match node.attr_ints("pads") {
        Some(v) if v.len() == 2 * spatial => v[spatial..].iter().map(|&x| x.max(0) as usize).collect(),
        Some(_) => return None,
        None => vec![0; spatial],
    };
    let mut ends = ends;
    let mut extra = node
        .attr_ints("output_padding")
        .map(|v| v.iter().map(|&x| x.max(0) as usize).collect())
        .unwrap_or(vec![0; spatial]);
    if spatial == 1 {
        ends.insert(0, 0);
        extra.insert(0, 0);
    }
    let reach: Vec<usize> = (0..2).map(|a| geometry.dilations[a] * (geometry.kernel[a] - 1)).collect();
    let begin: Vec<usize> = (0..2).map(|a| reach[a].checked_sub(geometry.pads[a])).collect::<Option<_>>()?;
    let end: Vec<usize> =
        (0..2).map(|a| (reach[a] + extra.get(a).copied().unwrap_or(0)).checked_sub(ends[a])).collect::<Option<_>>()?;
    Some(super::ConvGeometry { spread: geometry.strides, strides: vec![1, 1], pads: begin, pads_end: end, ..geometry })
}

impl Layer {
    /// Whether input statistics (XᵀX) can be gathered for this layer.
    pub fn has_statistics(&self) -> bool {
        !self.grouped && (!self.conv || self.geometry.is_some())
    }

    /// The weight tensor, in its own layout, from rows × inputs.
    pub fn restore(&self, rows: &Array2<f32>) -> Result<ArrayD<f32>> {
        let bad = |e: ndarray::ShapeError| Error::Model(format!("weight '{}': {e}", self.weight));
        Ok(match self.orientation {
            Orientation::Conv | Orientation::OutputsFirst => {
                rows.as_standard_layout().into_owned().into_shape_with_order(self.shape.clone()).map_err(bad)?
            }
            Orientation::InputsFirst => rows.t().as_standard_layout().into_owned().into_dyn(),
            Orientation::Transposed => {
                let mut conv_shape = self.shape.clone();
                conv_shape.swap(0, 1);
                let conv = rows.as_standard_layout().into_owned().into_shape_with_order(conv_shape).map_err(bad)?;
                transposed_rows(conv)
            }
        })
    }
}

/// A ConvTranspose kernel [Cin, Cout, k…] as the conv kernel [Cout, Cin, k…] it equals over the
/// spread-out input (spatial axes flipped), and back: the map is its own inverse.
fn transposed_rows(w: ArrayD<f32>) -> ArrayD<f32> {
    let mut v = w.view();
    v.swap_axes(0, 1);
    for axis in 2..v.ndim() {
        v.invert_axis(ndarray::Axis(axis));
    }
    v.as_standard_layout().into_owned()
}

/// Where a prunable layer is, without its weights loaded (big models prune
/// one layer at a time).
#[derive(Clone)]
pub struct LayerSite {
    /// The node's name.
    pub node: String,
    /// The weight's name.
    pub weight: String,
    input: String,
    orientation: Orientation,
    group: i64,
    geometry: Option<super::ConvGeometry>,
    shape: Vec<usize>,
}

impl LayerSite {
    /// The layer with its weight as rows × inputs.
    pub fn load(&self, model: &Model) -> Result<Layer> {
        let t =
            model.graph.constant(&self.weight).ok_or_else(|| Error::Model(format!("'{}' is gone", self.weight)))??;
        let a = t.to_f32()?;
        let rows: Array2<f32> = match self.orientation {
            Orientation::Transposed => {
                let conv = transposed_rows(a);
                let out = conv.shape()[0];
                conv.into_shape_with_order((out, t.numel().unwrap_or(0) / out.max(1)))
                    .map_err(|e| Error::Model(e.to_string()))?
            }
            Orientation::Conv => {
                let out = self.shape[0];
                a.into_shape_with_order((out, t.numel().unwrap_or(0) / out.max(1)))
                    .map_err(|e| Error::Model(e.to_string()))?
            }
            _ => {
                let m = a.into_dimensionality::<Ix2>().map_err(|e| Error::Model(e.to_string()))?;
                if self.orientation == Orientation::InputsFirst {
                    m.t().to_owned()
                } else {
                    m
                }
            }
        };
        let conv = matches!(self.orientation, Orientation::Conv | Orientation::Transposed);
        let channels = match self.orientation {
            Orientation::Conv => self.shape[1],
            Orientation::Transposed => self.shape[0],
            _ => rows.ncols(),
        };
        Ok(Layer {
            node: self.node.clone(),
            weight: self.weight.clone(),
            input: self.input.clone(),
            rows,
            channels,
            conv: conv && self.group == 1,
            grouped: conv && self.group != 1,
            geometry: self.geometry.clone(),
            shape: self.shape.clone(),
            orientation: self.orientation,
        })
    }
}

/// Which layers to prune.
#[derive(Clone, Debug, Default)]
pub struct LayerChoice {
    /// Node names or op types left dense.
    pub exclude: Vec<String>,
    /// Also prune the first and the last layer.
    pub prune_ends: bool,
    /// Also prune grouped (depthwise) convs.
    pub prune_grouped: bool,
    /// Also take ConvTranspose layers (the structured repair re-fits them).
    pub transposed: bool,
}

impl LayerChoice {
    /// Every layer, ends and grouped convs included.
    pub fn all() -> Self {
        LayerChoice { exclude: vec![], prune_ends: true, prune_grouped: true, transposed: true }
    }
}

/// Every prunable layer in topological order, less those `choice` leaves
/// dense; the second list says what was skipped and why.
pub fn prunable_layers(model: &Model, choice: &LayerChoice) -> Result<(Vec<Layer>, Vec<Skipped>)> {
    let (sites, skipped) = layer_sites(model, choice)?;
    let layers = sites.iter().map(|s| s.load(model)).collect::<Result<_>>()?;
    Ok((layers, skipped))
}

/// The prunable layers' sites (no weights loaded), as [`prunable_layers`] chooses them.
pub fn layer_sites(model: &Model, choice: &LayerChoice) -> Result<(Vec<LayerSite>, Vec<Skipped>)> {
    let g = &model.graph;
    let mut sites = vec![];
    let mut skipped = vec![];
    let mut seen = std::collections::BTreeSet::new();
    for n in g.topo_order()? {
        let node = &g.nodes[n];
        let orientation = match node.op_type.as_str() {
            "Conv" => Orientation::Conv,
            "ConvTranspose" if choice.transposed => Orientation::Transposed,
            "MatMul" => Orientation::InputsFirst,
            "Gemm" if node.attr_int("transB").unwrap_or(0) != 0 => Orientation::OutputsFirst,
            "Gemm" if node.attr_int("transA").unwrap_or(0) == 0 => Orientation::InputsFirst,
            _ => continue,
        };
        if !node.is_onnx_op() {
            continue;
        }
        let (Some(x), Some(w)) = (node.input(0), node.input(1)) else { continue };
        let Some(Ok(t)) = g.constant(w) else { continue };
        if g.constant_site(x).is_some() {
            continue;
        }
        if node.is_any_of(&choice.exclude) {
            skipped.push((node.label(), "excluded".to_string()));
            continue;
        }
        if t.dtype != DataType::FLOAT {
            skipped.push((node.label(), format!("weight is {}", t.dtype)));
            continue;
        }
        if !seen.insert(w.to_string()) {
            skipped.push((node.label(), format!("weight '{w}' is shared with an earlier layer")));
            continue;
        }
        let shape = t.shape();
        let conv = matches!(orientation, Orientation::Conv | Orientation::Transposed);
        if (conv && shape.len() < 3) || (!conv && shape.len() != 2) || shape.contains(&0) {
            skipped.push((node.label(), format!("weight has shape {shape:?}")));
            continue;
        }
        let group = node.attr_int("group").unwrap_or(1);
        if conv && group != 1 && !choice.prune_grouped {
            // A depthwise kernel holds a handful of weights per channel and
            // every one of them carries a whole channel: pruning them saves
            // little and costs much (on PP-OCR, the difference between
            // readable and unreadable text at 50 %).
            skipped.push((node.label(), format!("grouped conv ({group} groups; option prune-grouped prunes it)")));
            continue;
        }
        sites.push(LayerSite {
            node: node.label(),
            weight: w.to_string(),
            input: x.to_string(),
            orientation,
            group,
            geometry: if conv && group == 1 { conv_geometry(node, &shape) } else { None },
            shape,
        });
    }
    if !choice.prune_ends && !sites.is_empty() {
        let last = sites.pop().expect("non-empty");
        skipped.push((last.node, "last layer (kept dense by default)".into()));
        if !sites.is_empty() {
            let first = sites.remove(0);
            skipped.insert(0, (first.node, "first layer (kept dense by default)".into()));
        }
    }
    Ok((sites, skipped))
}
