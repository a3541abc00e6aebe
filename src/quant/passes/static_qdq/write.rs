//! Writing the choice: weights per channel (rounded to nearest or by GPTQ), int32 biases at
//! s_x · s_w, and the Q/DQ pairs on activations.

use super::*;
use std::sync::Arc;

/// The prepared float model with `nodes` quantized (the QDQ pairs on their
/// tensors and on pass-through outputs of those) and the weights of
/// `weight_nodes` in int8 (biases in int32 where the input is quantized).
pub(super) fn apply(
    prepared: &Model,
    plan: &Plan,
    nodes: &[usize],
    weight_nodes: &[usize],
    all_params: &BTreeMap<String, (f32, i32)>,
    options: &StaticOptions,
    report: &mut QuantReport,
) -> Result<Model> {
    let mut model = prepared.clone();
    let wanted: BTreeSet<&String> = nodes.iter().filter_map(|n| plan.node_tensors.get(n)).flatten().collect();
    let mut params: BTreeMap<String, (f32, i32)> =
        all_params.iter().filter(|(t, _)| wanted.contains(t)).map(|(t, p)| (t.clone(), *p)).collect();
    for (y, x) in &plan.followers {
        if let Some(&p) = params.get(x) {
            params.insert(y.clone(), p);
        }
    }
    quantize_node_weights(&mut model, &plan.weights, weight_nodes, nodes, &params, options, report)?;
    insert_qdq(&mut model, &params, options.activation_type)?;
    for (name, &(s, z)) in &params {
        let scheme = QScheme {
            qtype: options.activation_type,
            symmetric: options.symmetric_activations,
            granularity: Granularity::PerTensor,
            reduce_range: false,
        };
        let p = QParams { scale: ArrayD::from_elem(vec![], s), zero_point: ArrayD::from_elem(vec![], z) };
        report.tensors.push(TensorRecord::new(name, &scheme, &p, 0, &[]));
    }
    crate::transform::remove_unused_constants(&mut model.graph);
    model.graph.sort_nodes()?;
    Ok(model)
}

/// Per-channel int8 weights of `nodes` (and Gather tables), and int32 biases
/// where the input's scale is known. A weight read by a node whose activations
/// are quantized (in `quantized`) goes behind a `DequantizeLinear`, which the
/// runtime fuses into an integer kernel; any other is written in the form the
/// runtime folds at load (a `DequantizeLinear` before a float op would run on
/// every inference — ONNX Runtime even turns DequantizeLinear → MatMul into its
/// MatMulNBits, slower than the float MatMul here).
pub(super) fn quantize_node_weights(
    model: &mut Model,
    cache: &WeightCache,
    nodes: &[usize],
    quantized: &[usize],
    params: &BTreeMap<String, (f32, i32)>,
    options: &StaticOptions,
    report: &mut QuantReport,
) -> Result<()> {
    let g = &model.graph;
    // (weight, its channel axis, (bias, the input whose scale the bias takes))
    type Work = (String, Option<usize>, Option<(String, String)>);
    let integer: BTreeSet<String> =
        quantized.iter().flat_map(|&n| weight_inputs(g, &g.nodes[n]).into_iter().map(|(_, w, _)| w)).collect();
    let mut work: Vec<Work> = vec![];
    for n in nodes.iter().copied().chain(gathers(g)) {
        let node = &g.nodes[n];
        let Some(rule) = registry::rule(node) else { continue };
        for (_, w, axis) in weight_inputs(g, node) {
            let bias = rule.bias.and_then(|b| node.input(b)).filter(|b| g.constant_site(b).is_some());
            let x = node.input(0).filter(|x| params.contains_key(*x));
            let bias = match (bias, x) {
                (Some(b), Some(x)) => Some((b.to_string(), x.to_string())),
                _ => None,
            };
            work.push((w, axis, bias));
        }
    }
    // The weights not yet rounded are rounded in parallel first (minilm_l6: 0.9 s on one thread,
    // its word table half of it); the loop below then reads them from the cache.
    let fresh: BTreeSet<(&String, Option<usize>)> =
        work.iter().filter(|(w, axis, _)| !cache.holds(w, *axis)).map(|(w, axis, _)| (w, *axis)).collect();
    let (fresh, g): (Vec<_>, _) = (fresh.into_iter().collect(), &model.graph);
    crate::parallel::map(&fresh, |(w, axis)| match g.constant(w) {
        Some(Ok(t)) => cache.int8_weight(&t, *axis, options).map(|_| ()),
        _ => Ok(()),
    })
    .into_iter()
    .collect::<Result<()>>()?;
    let mut done = BTreeSet::new();
    for (w, axis, bias) in work {
        if !done.insert(w.clone()) {
            continue;
        }
        let Some(Ok(t)) = model.graph.constant(&w) else { continue };
        let Some(quantized) = cache.int8_weight(&t, axis, options)? else {
            if t.to_f32().is_ok_and(|wf| wf.iter().any(|v| !v.is_finite())) {
                report.skipped.push(Skipped::new(&w, "contains NaN or infinite values".into()));
            }
            continue;
        };
        let Int8Weight { shape, q, params: p, scheme, gptq } = &*quantized;
        let mut record = TensorRecord::new(&w, scheme, p, t.byte_size(), shape);
        record.gptq = *gptq;
        report.tensors.push(record);
        let format = if integer.contains(&w) { WeightFormat::Qdq } else { WeightFormat::Portable };
        replace_weight(model, &w, q, p, scheme.qtype, scheme.granularity, format)?;
        if let (Some((b, x)), Some(_)) = (bias, axis) {
            quantize_bias(model, &b, params[&x].0, p, report)?;
        }
    }
    Ok(())
}

/// Gather nodes: their tables get int8 weights whatever else is quantized.
pub(in crate::quant) fn gathers(g: &Graph) -> impl Iterator<Item = usize> + '_ {
    g.nodes.iter().enumerate().filter(|(_, n)| n.op_type == "Gather").map(|(i, _)| i)
}

/// The constant weight inputs of `node` the registry names: (input index, name, channel axis).
pub(in crate::quant) fn weight_inputs(g: &Graph, node: &Node) -> Vec<(usize, String, Option<usize>)> {
    let Some(rule) = registry::rule(node) else { return vec![] };
    rule.weights
        .iter()
        .filter_map(|slot| {
            let w = node.input(slot.input).filter(|w| g.constant_site(w).is_some())?;
            let rank = g.constant(w).and_then(|t| t.ok()).map_or(0, |t| t.dims.len());
            Some((slot.input, w.to_string(), (slot.channel_axis)(node, rank)))
        })
        .collect()
}

/// A weight in int8 as the static pass stores it.
pub(in crate::quant) struct Int8Weight {
    /// The weight's shape.
    pub shape: Vec<usize>,
    pub q: ArrayD<i32>,
    pub params: QParams,
    pub scheme: QScheme,
    /// Rounded by GPTQ.
    pub gptq: bool,
}

/// Each weight's int8 form by (name, channel axis), made once per pass for its many trial
/// models: every one of them holds the same weights of the same prepared model (minilm_l6:
/// 1.7 s a trial model before, most of it rounding the same weights again).
#[derive(Default)]
pub(in crate::quant) struct WeightCache(std::sync::Mutex<BTreeMap<WeightKey, Option<Arc<Int8Weight>>>>);

/// A weight's name and channel axis.
type WeightKey = (String, Option<usize>);

impl WeightCache {
    /// Whether the int8 form of weight `name` along `axis` is made (or known not to be).
    fn holds(&self, name: &str, axis: Option<usize>) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).contains_key(&(name.to_string(), axis))
    }

    /// [`int8_weight`] of `t`, made on first use.
    pub(in crate::quant) fn int8_weight(
        &self,
        t: &Tensor,
        axis: Option<usize>,
        options: &StaticOptions,
    ) -> Result<Option<Arc<Int8Weight>>> {
        let key = (t.name.clone(), axis);
        if let Some(w) = self.0.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(w.clone());
        }
        let w = int8_weight(t, axis, options)?.map(Arc::new);
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(key, w.clone());
        Ok(w)
    }
}

/// The weight type static quantization writes.
pub(super) fn weight_qtype(options: &StaticOptions) -> QType {
    if options.unsigned_weights {
        QType::UInt8
    } else {
        QType::Int8
    }
}

/// GPTQ on every layer with input statistics, onto the per-output-channel grid
/// `int8_weight` would round to.
pub(super) fn gptq_rounding(
    model: &Model,
    calib: &Dataset,
    options: &StaticOptions,
    progress: &dyn Progress,
) -> Result<BTreeMap<String, crate::quant::gptq::Rounded>> {
    let qtype = weight_qtype(options);
    let grid_for = |layer: &crate::layerwise::Layer| {
        Some(crate::quant::gptq::Grid::per_row(&layer.rows, qtype, true, options.reduce_range))
    };
    crate::quant::gptq::round_layers(model, &options.exclude, calib, &grid_for, progress)
}

/// Symmetric int8 (uint8 around 128 with `unsigned_weights`) per channel along
/// `axis` (per tensor without one); `None` for
/// tensors left float: not float32, fewer than 16 values, or not finite.
pub(in crate::quant) fn int8_weight(
    t: &Tensor,
    axis: Option<usize>,
    options: &StaticOptions,
) -> Result<Option<Int8Weight>> {
    if t.dtype != DataType::FLOAT || t.numel().unwrap_or(0) < 16 {
        return Ok(None);
    }
    let wf = t.to_f32()?;
    if wf.iter().any(|v| !v.is_finite()) {
        return Ok(None);
    }
    let granularity = axis.map_or(Granularity::PerTensor, |axis| Granularity::PerChannel { axis });
    let qtype = weight_qtype(options);
    let scheme = QScheme { qtype, symmetric: true, granularity, reduce_range: options.reduce_range };
    // GPTQ's integers where it rounded this weight per output channel on this type's grid.
    let rounded = options.rounded.as_ref().and_then(|r| r.get(&t.name)).filter(|r| {
        axis.is_some() && r.grid.scale.ncols() == 1 && (r.grid.qmin, r.grid.qmax) == qtype.range(options.reduce_range)
    });
    if let Some(r) = rounded {
        let q = r.layer.restore(&r.q.mapv(|v| v as f32))?.mapv(|v| v as i32);
        if q.shape() == wf.shape() {
            let params = QParams {
                scale: r.grid.scale.column(0).to_owned().into_dyn(),
                zero_point: r.grid.zero.column(0).to_owned().into_dyn(),
            };
            return Ok(Some(Int8Weight { shape: wf.shape().to_vec(), q, params, scheme, gptq: true }));
        }
    }
    let (q, params) = scheme.quantize_weight(&wf)?;
    Ok(Some(Int8Weight { shape: wf.shape().to_vec(), q, params, scheme, gptq: false }))
}

/// Bias as int32 with scale s_x · s_w per output channel, zero point 0.
pub(super) fn quantize_bias(
    model: &mut Model,
    name: &str,
    input_scale: f32,
    weight: &QParams,
    report: &mut QuantReport,
) -> Result<()> {
    let Some(Ok(t)) = model.graph.constant(name) else { return Ok(()) };
    let b = t.to_f32()?;
    if b.ndim() != 1 || b.len() != weight.scale.len() {
        return Ok(());
    }
    let scale: ArrayD<f32> = weight.scale.mapv(|s| s * input_scale);
    let q: Vec<i64> =
        b.iter().zip(scale.iter()).map(|(&v, &s)| (v as f64 / s as f64).round_ties_even() as i64).collect();
    if q.iter().any(|v| i32::try_from(*v).is_err()) || scale.iter().any(|s| !s.is_normal()) {
        report.skipped.push(Skipped::new(name, "bias does not fit int32 at scale s_x·s_w".into()));
        return Ok(());
    }
    let qb = ArrayD::from_shape_vec(vec![q.len()], q.iter().map(|&v| v as i32).collect()).expect("1-d");
    let p = QParams { scale, zero_point: ArrayD::zeros(vec![q.len()]) };
    let qt = int_tensor(&format!("{name}_quantized"), &qb, QType::Int32);
    replace_with_dequantize(model, name, qt, &p, QType::Int32, Granularity::PerChannel { axis: 0 })?;
    let scheme = QScheme {
        qtype: QType::Int32,
        symmetric: true,
        granularity: Granularity::PerChannel { axis: 0 },
        reduce_range: false,
    };
    report.tensors.push(TensorRecord::new(name, &scheme, &p, t.byte_size(), b.shape()));
    Ok(())
}

/// A Q→DQ pair after each tensor with parameters; its consumers read the DQ output.
pub(super) fn insert_qdq(model: &mut Model, params: &BTreeMap<String, (f32, i32)>, qtype: QType) -> Result<()> {
    let g = &mut model.graph;
    let mut added = vec![];
    for (t, &(s, z)) in params {
        let (sname, zname) = (format!("{t}_scale"), format!("{t}_zero_point"));
        let (qname, dqname) = (format!("{t}_quantized"), format!("{t}_dequantized"));
        g.initializers.push(Tensor::scalar(&sname, s));
        g.initializers.push(int_tensor(&zname, &ArrayD::from_elem(vec![], z), qtype));
        for node in g.nodes.iter_mut() {
            for i in node.inputs.iter_mut().filter(|i| *i == t) {
                *i = dqname.clone();
            }
        }
        let node = |op: &str, input: &str, output: &str| Node {
            name: format!("{output}_{op}"),
            op_type: op.into(),
            inputs: vec![input.into(), sname.clone(), zname.clone()],
            outputs: vec![output.into()],
            ..Default::default()
        };
        added.push(node("QuantizeLinear", t, &qname));
        added.push(node("DequantizeLinear", &qname, &dqname));
    }
    g.nodes.extend(added);
    Ok(())
}
