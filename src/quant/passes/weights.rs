//! Weight-only quantization: every weight of the ops in the registry becomes a
//! low-bit constant and the ops that restore the float tensor under its old
//! name (by default ones the runtime folds at load, see `portable.rs`), so
//! consumers are untouched. No data needed.

use crate::ir::{Attribute, ConstantSite, DataType, Model, Node, Tensor};
use crate::quant::pack::int_tensor;
use crate::quant::registry;
use crate::quant::report::{QuantReport, Skipped, TensorRecord};
use crate::quant::scheme::{Granularity, QParams, QScheme, QType};
use crate::Result;
use std::collections::BTreeMap;

/// Weight-only quantization's options.
#[derive(Clone, Debug)]
pub struct WeightOptions {
    /// The weights' integer type.
    pub qtype: QType,
    /// Symmetric weights (zero point 0).
    pub symmetric: bool,
    /// `None`: per channel; `Some(n)`: blocks of n along the input-feature axis.
    pub block_size: Option<usize>,
    /// One scale per tensor instead of per channel.
    pub per_tensor: bool,
    /// Node names or op types to leave alone.
    pub exclude: Vec<String>,
    /// Weights with fewer elements stay float (biases, tiny kernels).
    pub min_elements: usize,
    /// Quantize only the weights of these nodes (by index); all when `None`.
    pub only_nodes: Option<Vec<usize>>,
    /// How the low-bit weights are written.
    pub format: WeightFormat,
    /// Weights use one bit less than their type (7 of 8).
    pub reduce_range: bool,
    /// Weights already rounded by GPTQ, by name (see [`quantize_weights_gptq`]); the rest
    /// are rounded to nearest.
    pub rounded: Option<std::sync::Arc<BTreeMap<String, crate::quant::gptq::Rounded>>>,
    /// With the fallback, the layers it keeps from a format under 8 bits get
    /// int8 weights instead of float (per channel, written as `format`).
    pub fallback_int8: bool,
}

/// How weight-only low-bit weights are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum WeightFormat {
    /// Plain ops that ONNX Runtime and tract fold back to float at load, so the model runs at float
    /// speed: int8 as Cast and Mul by the scale; int4 packed two per uint8 and unpacked (opset 18,
    /// 2-D weights; conv kernels get int8 per channel).
    #[default]
    Portable,
    /// `DequantizeLinear` on every weight (int4: the INT4 type, blocked, opset 21, ONNX Runtime
    /// only): the form QDQ-reading toolchains expect; ONNX Runtime dequantizes it on every run.
    Qdq,
    /// ONNX Runtime's `MatMulNBits` (com.microsoft; tract runs it too, slowly) for MatMul weights, 4 or 8
    /// bits in blocks (default 32): the weights stay packed in memory. Other weights as `portable`.
    #[cfg_attr(feature = "cli", value(name = "matmul-nbits"))]
    #[serde(rename = "matmul-nbits")]
    MatMulNBits,
}

impl Default for WeightOptions {
    fn default() -> Self {
        WeightOptions {
            qtype: QType::Int8,
            symmetric: true,
            block_size: None,
            per_tensor: false,
            exclude: vec![],
            min_elements: 64,
            only_nodes: None,
            format: WeightFormat::Portable,
            reduce_range: false,
            rounded: None,
            fallback_int8: false,
        }
    }
}

/// The weights to quantize: name → (consumer nodes, the channel axis each wants).
pub(in crate::quant) fn weight_uses(
    model: &Model,
    exclude: &[String],
    only: Option<&[usize]>,
) -> BTreeMap<String, Vec<(usize, Option<usize>)>> {
    let g = &model.graph;
    let mut uses: BTreeMap<String, Vec<(usize, Option<usize>)>> = BTreeMap::new();
    for (i, node) in g.nodes.iter().enumerate() {
        let Some(rule) = registry::rule(node) else { continue };
        if node.is_any_of(exclude) || only.is_some_and(|o| !o.contains(&i)) {
            continue;
        }
        for slot in rule.weights {
            let Some(name) = node.input(slot.input) else { continue };
            let Some(ConstantSite::Initializer(_) | ConstantSite::ConstantNode(_)) = g.constant_site(name) else {
                continue;
            };
            let rank = g.constant(name).and_then(|t| t.ok()).map(|t| t.dims.len()).unwrap_or(0);
            uses.entry(name.to_string()).or_default().push((i, (slot.channel_axis)(node, rank)));
        }
    }
    uses
}

/// Quantizes the weights in place; the opset is raised as the format needs.
pub fn quantize_weights(model: &mut Model, options: &WeightOptions, report: &mut QuantReport) -> Result<()> {
    if weight_uses(model, &options.exclude, options.only_nodes.as_deref()).is_empty() {
        return Ok(());
    }
    let four_bit = matches!(options.qtype, QType::Int4 | QType::UInt4);
    let nbits = options.format == WeightFormat::MatMulNBits;
    // What MatMulNBits does not take is written portable.
    let portable = matches!(options.format, WeightFormat::Portable | WeightFormat::MatMulNBits);
    let needs = match (portable, four_bit, options.block_size.is_some()) {
        (true, true, _) => crate::quant::portable::PORTABLE_INT4_OPSET,
        (true, false, true) => 13,
        (true, false, false) => 0,
        (false, true, _) | (false, false, true) => 21,
        (false, false, false) => 13,
    };
    let rank_of = crate::analysis::rank_lookup(model);
    crate::transform::upgrade_opset(model, needs, &|n| rank_of.get(n).copied())?;
    for (name, uses) in weight_uses(model, &options.exclude, options.only_nodes.as_deref()) {
        let t = match model.graph.constant(&name) {
            Some(Ok(t)) => t,
            _ => continue,
        };
        if t.dtype != DataType::FLOAT {
            report.skipped.push(Skipped::new(&name, format!("{} weights are left as they are", t.dtype)));
            continue;
        }
        if t.numel().unwrap_or(0) < options.min_elements {
            continue;
        }
        let w = t.to_f32()?;
        if w.iter().any(|v| !v.is_finite()) {
            report.skipped.push(Skipped::new(&name, "contains NaN or infinite values".into()));
            continue;
        }
        let rounded = options.rounded.as_ref().and_then(|r| r.get(&name));
        let nbits_block = options.block_size.unwrap_or(32);
        if nbits && crate::quant::matmul_nbits::applies(model, &name, &w, &uses, nbits_block) {
            report.tensors.push(crate::quant::matmul_nbits::replace(model, &name, &w, options.qtype, nbits_block)?);
            continue;
        }
        let axes: Vec<Option<usize>> = uses.iter().map(|(_, a)| *a).collect();
        let axis = if axes.windows(2).all(|p| p[0] == p[1]) { axes[0] } else { None };
        let granularity = match (options.per_tensor, options.block_size, axis) {
            (true, _, _) | (_, _, None) => Granularity::PerTensor,
            (false, None, Some(a)) => Granularity::PerChannel { axis: a },
            // Blocks run along the reduction (input-feature) axis, one set per output channel.
            (false, Some(size), Some(a)) => Granularity::Block { axis: reduction_axis(w.ndim(), a), size },
        };
        if portable && four_bit {
            if let (2, Granularity::Block { axis, size }) = (w.ndim(), granularity) {
                let gathers = crate::quant::portable::lookups_to_dequantize_after(&model.graph, &name, w.len() * 4);
                let four = rounded.filter(|r| r.grid.group == size && r.grid.qmax == 7);
                let (lo, hi) =
                    crate::quant::portable::replace_with_portable_int4(model, &name, &w, axis, size, gathers, four)?;
                let scheme = QScheme { qtype: QType::Int4, symmetric: true, granularity, reduce_range: false };
                let range = QParams {
                    scale: ndarray::arr1(&[lo, hi]).into_dyn(),
                    zero_point: ndarray::arr1(&[0, 0]).into_dyn(),
                };
                let mut record = TensorRecord::new(&name, &scheme, &range, t.byte_size(), w.shape());
                record.gptq = four.is_some();
                report.tensors.push(record);
                continue;
            }
            // Conv kernels and per-channel requests: int8 per channel, which both runtimes
            // run (the tensor's record says int8).
        }
        let (qtype, granularity) = match (portable && four_bit, axis) {
            (true, Some(a)) => (QType::Int8, Granularity::PerChannel { axis: a }),
            (true, None) => (QType::Int8, Granularity::PerTensor),
            _ => (options.qtype, granularity),
        };
        let scheme = QScheme { qtype, symmetric: options.symmetric, granularity, reduce_range: options.reduce_range };
        // GPTQ's integers when it rounded this weight on this very grid (one scale per output channel).
        let per_row = |r: &&crate::quant::gptq::Rounded| {
            r.grid.scale.ncols() == 1 && (r.grid.qmin, r.grid.qmax) == qtype.range(options.reduce_range)
        };
        let gptq = match (rounded.filter(per_row), granularity) {
            (Some(r), Granularity::PerChannel { .. }) => {
                let q = r.layer.restore(&r.q.mapv(|v| v as f32))?.mapv(|v| v as i32);
                let column = |a: &ndarray::Array2<f32>| a.column(0).to_owned().into_dyn();
                let params =
                    QParams { scale: column(&r.grid.scale), zero_point: r.grid.zero.column(0).to_owned().into_dyn() };
                Some((q, params))
            }
            _ => None,
        };
        let used_gptq = gptq.is_some();
        let (q, params) = match gptq {
            Some(done) => done,
            None => scheme.quantize_weight(&w)?,
        };
        let mut record = TensorRecord::new(&name, &scheme, &params, t.byte_size(), w.shape());
        record.gptq = used_gptq;
        replace_weight(model, &name, &q, &params, qtype, granularity, options.format)?;
        report.tensors.push(record);
    }
    model.graph.sort_nodes()
}

/// Weight-only quantization that first measures, on calibration data, how much
/// each layer's quantized weights alone disturb the output, and leaves the
/// worst float until the summed noise meets `target_sqnr_db`.
pub fn quantize_weights_with_fallback(
    model: &mut Model,
    options: &WeightOptions,
    calib: &crate::data::Dataset,
    target_sqnr_db: f64,
    report: &mut QuantReport,
    progress: &dyn crate::measure::Progress,
) -> Result<()> {
    let nodes = weight_nodes(model, &options.exclude);
    let quantize = |m: &mut Model, only: Vec<usize>, r: &mut QuantReport| {
        quantize_weights(m, &WeightOptions { only_nodes: Some(only), ..options.clone() }, r)
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
    match options.fallback_int8 && options.qtype.bits() < 8 {
        true => fallback_to_int8(model, &float, &options.exclude, options.format, report),
        false => Ok(()),
    }
}

/// Mixed precision per layer: the layers a low-bit format's fallback kept float
/// (named by their first output) get int8 weights per channel instead — a
/// quarter of float's size; four bits more than 4-bit weights is ~24 dB less
/// noise on those layers, so the target the fallback met still holds within a
/// fraction of a dB (the written model is checked like every output).
pub(in crate::quant) fn fallback_to_int8(
    model: &mut Model,
    float: &[String],
    exclude: &[String],
    format: WeightFormat,
    report: &mut QuantReport,
) -> Result<()> {
    let nodes: Vec<usize> = (0..model.graph.nodes.len())
        .filter(|&i| model.graph.nodes[i].outputs.first().is_some_and(|o| float.contains(o)))
        .collect();
    if nodes.is_empty() {
        return Ok(());
    }
    let labels: Vec<String> = nodes.iter().map(|&i| model.graph.nodes[i].label()).collect();
    let options = WeightOptions { only_nodes: Some(nodes), exclude: exclude.to_vec(), format, ..Default::default() };
    let mut int8 = QuantReport::default();
    quantize_weights(model, &options, &mut int8)?;
    report.tensors.extend(int8.tensors);
    report.skipped.retain(|s| !(labels.contains(&s.name) && s.reason.starts_with("kept float:")));
    report.notes.push(format!(
        "{} layer(s) the fallback kept from the low-bit format have int8 weights instead of float: {}",
        labels.len(),
        labels.join(", ")
    ));
    Ok(())
}

/// Weight-only quantization with the weights of Conv/Gemm/MatMul layers rounded
/// by GPTQ on `calib` (int8 per channel, int4 in portable blocks; other weights
/// and formats round to nearest), then, with `target_sqnr_db` > 0, the measured
/// float fallback on top.
pub fn quantize_weights_gptq(
    model: &mut Model,
    options: &WeightOptions,
    calib: &crate::data::Dataset,
    target_sqnr_db: f64,
    report: &mut QuantReport,
    progress: &dyn crate::measure::Progress,
) -> Result<()> {
    let four_bit = matches!(options.qtype, QType::Int4);
    let portable = options.format == WeightFormat::Portable;
    let grid_for = |layer: &crate::layerwise::Layer| -> Option<crate::quant::gptq::Grid> {
        match (four_bit, options.block_size, layer.conv) {
            _ if options.per_tensor || !portable && !matches!(options.format, WeightFormat::Qdq) => None,
            (true, Some(block), false) if portable => Some(crate::quant::portable::int4_block_grid(&layer.rows, block)),
            // Conv kernels in a 4-bit portable model are written int8 per channel.
            (true, _, true) if portable => {
                Some(crate::quant::gptq::Grid::per_row(&layer.rows, QType::Int8, true, false))
            }
            (false, None, _) => Some(crate::quant::gptq::Grid::per_row(
                &layer.rows,
                options.qtype,
                options.symmetric,
                options.reduce_range,
            )),
            _ => None,
        }
    };
    let rounded = crate::quant::gptq::round_layers(model, &options.exclude, calib, &grid_for, progress)?;
    if rounded.is_empty() {
        report.notes.push("GPTQ found no Conv, Gemm or MatMul weight it could round in this format".into());
    }
    let options = WeightOptions { rounded: Some(std::sync::Arc::new(rounded)), ..options.clone() };
    match target_sqnr_db > 0.0 {
        true => quantize_weights_with_fallback(model, &options, calib, target_sqnr_db, report, progress),
        false => quantize_weights(model, &options, report),
    }
}

/// The nodes whose weights weight-only quantization would touch.
pub(in crate::quant) fn weight_nodes(model: &Model, exclude: &[String]) -> Vec<usize> {
    weight_uses(model, exclude, None)
        .values()
        .flat_map(|uses| uses.iter().map(|(n, _)| *n))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The axis a block runs along: for a 2-D MatMul/Gemm weight the one that is
/// not the output axis; for conv kernels, the input-channel axis.
fn reduction_axis(rank: usize, channel_axis: usize) -> usize {
    if rank == 2 {
        1 - channel_axis
    } else {
        1
    }
}

/// Replaces constant `name` by its integers `q` in `format`: `Portable` as a
/// table dequantized after each Gather when only Gathers read it by row and its
/// float form is too large for runtimes to fold, else folded at load; `Qdq` behind a `DequantizeLinear`.
pub(in crate::quant) fn replace_weight(
    model: &mut Model,
    name: &str,
    q: &ndarray::ArrayD<i32>,
    params: &QParams,
    qtype: QType,
    granularity: Granularity,
    format: WeightFormat,
) -> Result<()> {
    let per_row = matches!(granularity, Granularity::PerTensor | Granularity::PerChannel { axis: 0 });
    let gathers =
        crate::quant::portable::lookups_to_dequantize_after(&model.graph, name, q.len() * 4).filter(|_| per_row);
    match (format, gathers) {
        // What MatMulNBits does not take is written portable.
        (WeightFormat::Portable | WeightFormat::MatMulNBits, Some(gathers)) => {
            crate::quant::portable::replace_gathered(model, name, q, params, qtype, granularity, &gathers)
        }
        (WeightFormat::Portable | WeightFormat::MatMulNBits, None) => {
            crate::quant::portable::replace_with_folded(model, name, q, params, qtype, granularity)
        }
        (WeightFormat::Qdq, _) => {
            let q = int_tensor(&format!("{name}_quantized"), q, qtype);
            replace_with_dequantize(model, name, q, params, qtype, granularity)
        }
    }
}

/// Removes constant `name` and makes it the output of a `DequantizeLinear`
/// of `q` with the given parameters.
pub(in crate::quant) fn replace_with_dequantize(
    model: &mut Model,
    name: &str,
    q: Tensor,
    params: &crate::quant::scheme::QParams,
    qtype: QType,
    granularity: Granularity,
) -> Result<()> {
    let g = &mut model.graph;
    g.remove_constant(name)?;
    let scale_name = format!("{name}_scale");
    let zp_name = format!("{name}_zero_point");
    let zp = int_tensor(&zp_name, &params.zero_point, qtype);
    let inputs = vec![q.name.clone(), scale_name.clone(), zp_name];
    g.initializers.push(q);
    g.initializers.push(Tensor::from_array(&scale_name, &params.scale));
    g.initializers.push(zp);
    let mut attributes = vec![];
    let int = |n: &str, v: usize| Attribute::int(n, v as i64);
    match granularity {
        Granularity::PerTensor => {}
        Granularity::PerChannel { axis } => attributes.push(int("axis", axis)),
        Granularity::Block { axis, size } => {
            attributes.push(int("axis", axis));
            attributes.push(int("block_size", size));
        }
    }
    g.nodes.push(Node {
        name: format!("{name}_DequantizeLinear"),
        op_type: "DequantizeLinear".into(),
        inputs,
        outputs: vec![name.to_string()],
        attributes,
        ..Default::default()
    });
    Ok(())
}
