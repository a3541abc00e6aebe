//! Weight formats every runtime loads and folds back to float at load time, so
//! the file is small and inference runs at float speed:
//! - int8 (per tensor, channel or block): the integers, `Cast` to float, `Sub`
//!   the zero point (when there is one), `Mul` by the scale. ONNX Runtime does
//!   not constant-fold `DequantizeLinear` (it keeps it for its QDQ fusions), so a
//!   weight-only model written with it dequantizes every weight on every run;
//!   `Cast`/`Mul` of constants are folded by ONNX Runtime and tract alike.
//! - int4: two values packed per uint8 and unpacked by plain ONNX ops
//!   (BitwiseAnd, BitShift, Concat, Cast, Sub, Mul), one float16 scale per block.
//!   (The int4 type with blocked `DequantizeLinear`, opset 21, runs in ONNX
//!   Runtime only.)

use crate::ir::{AttrValue, Attribute, Graph, Model, Node, Tensor};
use crate::quant::pack::{int_tensor, nibbles};
use crate::quant::scheme::{params_for_range, Granularity, QParams, QType};
use crate::{Error, Result};
use ndarray::{Array2, ArrayD, Axis, Ix2, IxDyn};

/// The opset the unpacking needs (BitwiseAnd).
pub const PORTABLE_INT4_OPSET: i64 = 18;

/// Replaces constant `name` by its quantized integers `q` (of `qtype`, 8 or 16
/// bits) and the plain ops that restore the float tensor under its old name.
pub fn replace_with_folded(
    model: &mut Model,
    name: &str,
    q: &ArrayD<i32>,
    params: &QParams,
    qtype: QType,
    granularity: Granularity,
) -> Result<()> {
    let g = &mut model.graph;
    g.remove_constant(name)?;
    let n = |s: &str| format!("{name}_{s}");
    let rank = q.ndim();
    // Scales and zero points shaped to broadcast against the weight.
    let (shape, expand) = match granularity {
        Granularity::PerTensor => (vec![], None),
        // [C, 1, …, 1]: numpy broadcasting aligns trailing axes.
        Granularity::PerChannel { axis } => {
            (std::iter::once(q.shape()[axis]).chain(std::iter::repeat_n(1, rank - 1 - axis)).collect(), None)
        }
        // One value per block: repeated `size` times along the axis (and cut to
        // its length) by ops the runtime folds; the file holds one per block.
        Granularity::Block { axis, size } => (params.scale.shape().to_vec(), Some((axis, size))),
    };
    let shaped = |a: ArrayD<f32>| a.into_shape_with_order(IxDyn(&shape)).expect("same number of elements");
    let scale = shaped(params.scale.clone());
    let has_zero_point = params.zero_point.iter().any(|&z| z != 0);
    g.initializers.push(int_tensor(&n("quantized"), q, qtype));
    g.initializers.push(Tensor::from_array(n("scale"), &scale));
    let cast_to_float = vec![attr("to", AttrValue::Int(crate::ir::DataType::FLOAT.0 as i64))];
    let mut nodes = vec![node(&n("float"), "Cast", &[&n("quantized")], cast_to_float)];
    let mut value = n("float");
    let mut scale_name = n("scale");
    let mut zero_name = n("zero_point");
    if has_zero_point {
        g.initializers.push(Tensor::from_array(&zero_name, &shaped(params.zero_point.mapv(|z| z as f32))));
    }
    if let Some((axis, size)) = expand {
        let len = q.shape()[axis] as i64;
        let int64 = |v: Vec<i64>| ArrayD::from_shape_vec(IxDyn(&[v.len()]), v).expect("1-d");
        let mut repeated = shape.clone();
        repeated.insert(axis + 1, size);
        let mut merged: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        merged[axis] *= size as i64;
        g.initializers.push(Tensor::from_array(n("block_axis"), &int64(vec![axis as i64 + 1])));
        g.initializers
            .push(Tensor::from_array(n("repeated_shape"), &int64(repeated.iter().map(|&d| d as i64).collect())));
        g.initializers.push(Tensor::from_array(n("merged_shape"), &int64(merged)));
        for (what, of) in [("scale", &mut scale_name), ("zero_point", &mut zero_name)] {
            if what == "zero_point" && !has_zero_point {
                continue;
            }
            let k = |s: &str| format!("{name}_{what}_{s}");
            nodes.extend([
                node(&k("unsqueezed"), "Unsqueeze", &[of.as_str(), &n("block_axis")], vec![]),
                node(&k("repeated"), "Expand", &[&k("unsqueezed"), &n("repeated_shape")], vec![]),
                node(&k("merged"), "Reshape", &[&k("repeated"), &n("merged_shape")], vec![]),
            ]);
            *of = k("elementwise");
            nodes.push(node(of, "Slice", &[&k("merged"), &n("cut_start"), &n("cut_end"), &n("cut_axis")], vec![]));
        }
        g.initializers.push(Tensor::from_array(n("cut_start"), &int64(vec![0])));
        g.initializers.push(Tensor::from_array(n("cut_end"), &int64(vec![len])));
        g.initializers.push(Tensor::from_array(n("cut_axis"), &int64(vec![axis as i64])));
    }
    if has_zero_point {
        nodes.push(node(&n("centred"), "Sub", &[&value, &zero_name], vec![]));
        value = n("centred");
    }
    nodes.push(Node {
        name: n("Mul"),
        op_type: "Mul".into(),
        inputs: vec![value, scale_name],
        outputs: vec![name.to_string()],
        ..Default::default()
    });
    g.nodes.extend(nodes);
    Ok(())
}

/// The largest float tensor every runtime folds from constants at load: tract
/// 0.23 folds an op only when its output is no larger than its inputs or than
/// 4 MiB (`CONST_FOLD_MEM_BUDGET`); ONNX Runtime folds any size.
pub const FOLD_LIMIT_BYTES: usize = 4 << 20;

/// The Gathers to dequantize table `name` after, on the rows they look up:
/// when its float form (`float_bytes`) is past what runtimes fold at load and
/// Gathers are all that read it (`gather_only_readers`).
pub fn lookups_to_dequantize_after(g: &Graph, name: &str, float_bytes: usize) -> Option<Vec<usize>> {
    (float_bytes > FOLD_LIMIT_BYTES).then(|| gather_only_readers(g, name)).flatten()
}

/// The Gather nodes that read table `name` when they are its only readers (data
/// input, axis 0, not a graph output, no subgraph in the graph that could see it):
/// such a table can be dequantized after the lookup, on the rows it returns.
pub fn gather_only_readers(g: &Graph, name: &str) -> Option<Vec<usize>> {
    if g.outputs.iter().any(|o| o.name == name)
        || g.nodes
            .iter()
            .any(|n| n.attributes.iter().any(|a| matches!(a.value, AttrValue::Graph(_) | AttrValue::Graphs(_))))
    {
        return None;
    }
    let readers: Vec<usize> = (0..g.nodes.len()).filter(|&i| g.nodes[i].inputs.iter().any(|x| x == name)).collect();
    let gathers = readers.iter().all(|&i| {
        let n = &g.nodes[i];
        n.op_type == "Gather"
            && n.is_onnx_op()
            && n.attr_int("axis").unwrap_or(0) == 0
            && n.inputs[1..].iter().all(|x| x != name)
    });
    (gathers && !readers.is_empty()).then_some(readers)
}

/// Replaces table `name` (read only by the Gather nodes `gathers`, see
/// `gather_only_readers`) by its integers `q`: each Gather looks up integer rows,
/// which are cast and scaled (with each row's scale, looked up alike, when per
/// row). Every run dequantizes only the rows it reads, and no runtime holds the
/// float table: tract does not fold a float table four times the size of its
/// integers (its fold budget), so the folded form would cast the whole table on
/// every run there; ONNX Runtime would fold it, and hold it in float.
pub fn replace_gathered(
    model: &mut Model,
    name: &str,
    q: &ArrayD<i32>,
    params: &QParams,
    qtype: QType,
    granularity: Granularity,
    gathers: &[usize],
) -> Result<()> {
    let per_row = match granularity {
        Granularity::PerTensor => false,
        Granularity::PerChannel { axis: 0 } => true,
        _ => {
            return Err(Error::Model(format!(
                "'{name}': only per-tensor or per-row tables are dequantized after a Gather"
            )))
        }
    };
    let g = &mut model.graph;
    g.remove_constant(name)?;
    let n = |s: &str| format!("{name}_{s}");
    let rows = q.shape()[0];
    let column = |a: ArrayD<f32>| match per_row {
        true => a.into_shape_with_order(IxDyn(&[rows, 1])).expect("one per row"),
        false => a,
    };
    let has_zero_point = params.zero_point.iter().any(|&z| z != 0);
    g.initializers.push(int_tensor(&n("quantized"), q, qtype));
    g.initializers.push(Tensor::from_array(n("scale"), &column(params.scale.clone())));
    if has_zero_point {
        g.initializers.push(Tensor::from_array(n("zero_point"), &column(params.zero_point.mapv(|z| z as f32))));
    }
    let float = vec![attr("to", AttrValue::Int(crate::ir::DataType::FLOAT.0 as i64))];
    let mut added = vec![];
    for &i in gathers {
        let gather = &mut g.nodes[i];
        let out = gather.outputs[0].clone();
        let ids = gather.inputs[1].clone();
        let o = |s: &str| format!("{out}_lookup_{s}");
        gather.inputs[0] = n("quantized");
        gather.outputs[0] = o("quantized");
        added.push(node(&o("float"), "Cast", &[&o("quantized")], float.clone()));
        let mut value = o("float");
        // Per row: the rows' own scales (and zero points), looked up with the same ids.
        let lookup = |what: &str, added: &mut Vec<Node>| match per_row {
            true => {
                added.push(node(&o(what), "Gather", &[&n(what), &ids], vec![]));
                o(what)
            }
            false => n(what),
        };
        if has_zero_point {
            let zero = lookup("zero_point", &mut added);
            added.push(node(&o("centred"), "Sub", &[&value, &zero], vec![]));
            value = o("centred");
        }
        let scale = lookup("scale", &mut added);
        added.push(Node {
            name: o("Mul"),
            op_type: "Mul".into(),
            inputs: vec![value, scale],
            outputs: vec![out],
            ..Default::default()
        });
    }
    g.nodes.extend(added);
    Ok(())
}

/// Replaces the 2-D float weight `name` by its packed int4 form and the
/// unpacking ops; blocks of `block` run along `block_axis`. With `gathers` (see
/// `lookups_to_dequantize_after`; blocks must run along the rows) it is unpacked
/// after each of those lookups, on the rows read; else once, folded at load.
/// Returns the scales' (min, max).
pub fn replace_with_portable_int4(
    model: &mut Model,
    name: &str,
    w: &ArrayD<f32>,
    block_axis: usize,
    block: usize,
    gathers: Option<Vec<usize>>,
    rounded: Option<&crate::quant::gptq::Rounded>,
) -> Result<(f32, f32)> {
    let w2 = w.view().into_dimensionality::<Ix2>().map_err(|_| Error::Model(format!("'{name}' is not 2-D")))?;
    // Rows are output channels, blocks run along each row.
    let m: Array2<f32> = if block_axis == 1 { w2.to_owned() } else { w2.t().to_owned() };
    let (rows, len) = m.dim();
    let blocks = len.div_ceil(block);
    if (blocks * block) % 2 == 1 {
        return Err(Error::Model(format!(
            "'{name}': {blocks} block(s) of {block} make rows of an odd number of 4-bit values, which cannot be \
             packed row by row; use an even block-size"
        )));
    }
    let (stored, scales) = match rounded {
        Some(r) => stored_from_rounded(&r.q, &r.grid, block),
        None => quantize_int4_rows(&m, block),
    };
    let (smin, smax) = scales.iter().fold((f32::INFINITY, 0f32), |(a, b), s| (a.min(s.to_f32()), b.max(s.to_f32())));
    let gathers = gathers.filter(|_| block_axis == 1);
    model.graph.remove_constant(name)?;
    let n = |s: &str| format!("{name}_int4_{s}");
    let g = &mut model.graph;
    let packed = nibbles(stored.into_iter());
    let row_bytes = packed.len() / rows;
    g.initializers.push(Tensor::from_bytes(
        n("packed"),
        crate::ir::DataType::UINT8,
        vec![rows as i64, row_bytes as i64],
        packed.into(),
    ));
    let scale = ArrayD::from_shape_vec(IxDyn(&[rows, blocks, 1]), scales).expect("sized");
    g.initializers.push(Tensor::from_array(n("scale"), &scale));
    let int64 = |v: Vec<i64>| ArrayD::from_shape_vec(IxDyn(&[v.len()]), v).expect("1-d");
    g.initializers.push(Tensor::scalar(n("mask"), 15u8));
    g.initializers.push(Tensor::scalar(n("shift"), 4u8));
    g.initializers.push(Tensor::scalar(n("zero"), 8.0f32));
    g.initializers.push(Tensor::from_array(n("last_axis"), &int64(vec![-1])));
    g.initializers.push(Tensor::from_array(n("blocked_shape"), &int64(vec![-1, blocks as i64, block as i64])));
    g.initializers.push(Tensor::from_array(n("padded_shape"), &int64(vec![-1, (blocks * block) as i64])));
    g.initializers.push(Tensor::from_array(n("starts"), &int64(vec![0])));
    g.initializers.push(Tensor::from_array(n("ends"), &int64(vec![len as i64])));
    let unpacked_len = blocks * block;
    match gathers {
        Some(gathers) => {
            g.initializers.push(Tensor::from_array(n("flat"), &int64(vec![-1])));
            g.initializers.push(Tensor::from_array(n("row_len"), &int64(vec![len as i64])));
            let mut added = vec![];
            for i in gathers {
                let gather = &g.nodes[i];
                let (out, ids) = (gather.outputs[0].clone(), gather.inputs[1].clone());
                let o = |s: &str| format!("{out}_int4_{s}");
                // Every id on one axis, so the unpacking sees [ids, bytes] whatever the ids' shape.
                g.nodes[i].inputs = vec![n("packed"), o("ids")];
                g.nodes[i].outputs = vec![o("packed")];
                added.push(node(&o("ids"), "Reshape", &[&ids, &n("flat")], vec![]));
                added.push(node(&o("scale"), "Gather", &[&n("scale"), &o("ids")], vec![]));
                added.extend(unpack_int4(&n, &o, &o("packed"), &o("scale"), unpacked_len != len));
                added.push(node(&o("ids_shape"), "Shape", &[&ids], vec![]));
                added.push(node(
                    &o("shape"),
                    "Concat",
                    &[&o("ids_shape"), &n("row_len")],
                    vec![attr("axis", AttrValue::Int(0))],
                ));
                added.push(node(&out, "Reshape", &[&o("rows"), &o("shape")], vec![]));
            }
            g.nodes.extend(added);
        }
        None => {
            let mut nodes = unpack_int4(&n, &n, &n("packed"), &n("scale"), unpacked_len != len);
            nodes.push(match block_axis {
                1 => node(name, "Identity", &[&n("rows")], vec![]),
                _ => node(name, "Transpose", &[&n("rows")], vec![attr("perm", AttrValue::Ints(vec![1, 0]))]),
            });
            g.nodes.extend(nodes);
        }
    }
    Ok((smin, smax))
}

/// Each row of `m` in blocks of `block` (the last one padded with zeros): the
/// 4-bit values offset to 0..=15, and one float16 scale per block.
pub(in crate::quant) fn quantize_int4_rows(m: &Array2<f32>, block: usize) -> (Vec<i32>, Vec<half::f16>) {
    let (rows, len) = m.dim();
    let blocks = len.div_ceil(block);
    let grid = int4_block_grid(m, block);
    let mut stored = Vec::with_capacity(rows * blocks * block);
    for (r, row) in m.axis_iter(Axis(0)).enumerate() {
        for b in 0..blocks {
            let lane: Vec<f32> = (b * block..(b + 1) * block).map(|i| if i < len { row[i] } else { 0.0 }).collect();
            let q = crate::quant::scheme::quantize_lane_keeping_sum(&lane, grid.scale[[r, b]], 0, grid.qmin, grid.qmax);
            stored.extend(q.into_iter().map(|v| v + 8));
        }
    }
    (stored, grid.scale.iter().map(|s| half::f16::from_f32(*s)).collect())
}

/// The portable int4 grid of `m`: per row and block of `block` inputs, the
/// float16 scale with the least squared error ([`best_scale`]), zero point 0.
pub(in crate::quant) fn int4_block_grid(m: &Array2<f32>, block: usize) -> crate::quant::gptq::Grid {
    let (rows, len) = m.dim();
    let blocks = len.div_ceil(block);
    let (qmin, qmax) = QType::Int4.range(false);
    let scale = Array2::from_shape_fn((rows, blocks), |(r, b)| {
        let lane: Vec<f32> = (b * block..(b + 1) * block).map(|i| if i < len { m[[r, i]] } else { 0.0 }).collect();
        best_scale(&lane, qmin, qmax)
    });
    crate::quant::gptq::Grid { scale, zero: Array2::zeros((rows, blocks)), group: block, qmin, qmax }
}

/// GPTQ's integers as [`quantize_int4_rows`] stores them: blocks padded with 0, offset by 8.
fn stored_from_rounded(q: &Array2<i32>, grid: &crate::quant::gptq::Grid, block: usize) -> (Vec<i32>, Vec<half::f16>) {
    let (rows, len) = q.dim();
    let blocks = len.div_ceil(block);
    let mut stored = Vec::with_capacity(rows * blocks * block);
    for row in q.outer_iter() {
        stored.extend((0..blocks * block).map(|i| if i < len { row[i] + 8 } else { 8 }));
    }
    (stored, grid.scale.iter().map(|s| half::f16::from_f32(*s)).collect())
}

/// The ops that turn packed rows `packed` [R, bytes] and their block scales
/// `scale` [R, blocks, 1] (float16) into float rows `out("rows")` [R, len];
/// `constant` names the shared constants, `out` this unpacking's tensors.
fn unpack_int4(
    constant: &dyn Fn(&str) -> String,
    out: &dyn Fn(&str) -> String,
    packed: &str,
    scale: &str,
    cut: bool,
) -> Vec<Node> {
    let (c, o) = (constant, out);
    let mut nodes = vec![
        node(&o("low"), "BitwiseAnd", &[packed, &c("mask")], vec![]),
        node(
            &o("high"),
            "BitShift",
            &[packed, &c("shift")],
            vec![attr("direction", AttrValue::String(b"RIGHT".to_vec()))],
        ),
        node(&o("low2"), "Unsqueeze", &[&o("low"), &c("last_axis")], vec![]),
        node(&o("high2"), "Unsqueeze", &[&o("high"), &c("last_axis")], vec![]),
        node(&o("pairs"), "Concat", &[&o("low2"), &o("high2")], vec![attr("axis", AttrValue::Int(-1))]),
        node(&o("blocked"), "Reshape", &[&o("pairs"), &c("blocked_shape")], vec![]),
        node(&o("float"), "Cast", &[&o("blocked")], vec![attr("to", AttrValue::Int(1))]),
        node(&o("centred"), "Sub", &[&o("float"), &c("zero")], vec![]),
        node(&o("scale_f32"), "Cast", &[scale], vec![attr("to", AttrValue::Int(1))]),
        node(&o("scaled"), "Mul", &[&o("centred"), &o("scale_f32")], vec![]),
    ];
    let padded = if cut { o("padded") } else { o("rows") };
    nodes.push(node(&padded, "Reshape", &[&o("scaled"), &c("padded_shape")], vec![]));
    if cut {
        nodes.push(node(&o("rows"), "Slice", &[&padded, &c("starts"), &c("ends"), &c("last_axis")], vec![]));
    }
    nodes
}

/// With 16 levels, clipping a block's largest values a little often lowers its
/// total squared error: try scales from 70 % to 100 % of the min-max one and
/// keep the best (as stored, in float16).
fn best_scale(lane: &[f32], qmin: i32, qmax: i32) -> f32 {
    let (lo, hi) = crate::quant::scheme::finite_range(lane.iter());
    let (full, _) = params_for_range(lo, hi, QType::Int4, true, false);
    let error = |s: f32| -> f32 {
        lane.iter().map(|&x| (x - crate::quant::scheme::quantize_value(x, s, 0, qmin, qmax) as f32 * s).powi(2)).sum()
    };
    (70..=100)
        .step_by(2)
        .map(|pct| half::f16::from_f32(full * pct as f32 / 100.0).to_f32().max(f32::from(half::f16::MIN_POSITIVE)))
        .min_by(|a, b| error(*a).total_cmp(&error(*b)))
        .unwrap_or(1.0)
}

fn attr(name: &str, value: AttrValue) -> Attribute {
    Attribute::new(name, value)
}

fn node(output: &str, op: &str, inputs: &[&str], attributes: Vec<Attribute>) -> Node {
    Node::single(output, op, inputs, attributes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Array;
    use crate::ir::{DataType, Dim, Graph, ValueInfo};
    use crate::runtime::{Backend, Session, SessionOptions};
    use ndarray::arr2;

    fn model(nodes: Vec<Node>, table: ArrayD<f32>, inputs: Vec<ValueInfo>, output: &str) -> Model {
        let graph = Graph {
            nodes,
            initializers: vec![Tensor::from_array("w", &table)],
            inputs,
            outputs: vec![ValueInfo::tensor(output, Some(DataType::FLOAT), None)],
            ..Default::default()
        };
        Model::from_graph(graph, 18)
    }

    fn run(m: &Model, input: Array) -> ArrayD<f32> {
        let options = SessionOptions { backend: Some(Backend::Tract), ..Default::default() };
        Session::new(m, &options).unwrap().run(&[input]).unwrap().remove(0).to_f32()
    }

    fn table() -> ArrayD<f32> {
        ArrayD::from_shape_fn(IxDyn(&[7, 6]), |i| ((i[0] * 6 + i[1]) as f32 * 0.37).sin())
    }

    fn matmul_model() -> (Model, Array) {
        let x = ArrayD::from_shape_fn(IxDyn(&[2, 7]), |i| (i[0] + 2 * i[1]) as f32 * 0.1 - 0.4);
        let input = ValueInfo::tensor("x", Some(DataType::FLOAT), Some(&[Dim::Fixed(2), Dim::Fixed(7)]));
        (model(vec![node("y", "MatMul", &["x", "w"], vec![])], table(), vec![input], "y"), Array::F32(x))
    }

    fn gather_model() -> (Model, Array) {
        let ids = arr2(&[[0i64, 6, 3], [3, 1, 6]]).into_dyn();
        let input = ValueInfo::tensor("ids", Some(DataType::INT64), Some(&[Dim::Fixed(2), Dim::Fixed(3)]));
        (model(vec![node("y", "Gather", &["w", "ids"], vec![])], table(), vec![input], "y"), Array::I64(ids))
    }

    /// The float model with `w` replaced by its dequantized values: what the
    /// rewritten model must compute.
    fn expected(m: &Model, input: &Array, dequantized: ArrayD<f32>) -> ArrayD<f32> {
        let mut reference = m.clone();
        reference.graph.initializers = vec![Tensor::from_array("w", &dequantized)];
        run(&reference, input.clone())
    }

    fn assert_close(a: &ArrayD<f32>, b: &ArrayD<f32>) {
        assert_eq!(a.shape(), b.shape());
        assert!(a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5), "{a} vs {b}");
    }

    #[test]
    fn folded_int8_restores_the_dequantized_weight_for_every_granularity() {
        let (m, x) = matmul_model();
        for (granularity, symmetric) in [
            (Granularity::PerTensor, false),
            (Granularity::PerChannel { axis: 1 }, true),
            (Granularity::PerChannel { axis: 1 }, false),
            // 7 rows in blocks of 3: the last block is cut short.
            (Granularity::Block { axis: 0, size: 3 }, false),
        ] {
            let scheme = crate::quant::QScheme { qtype: QType::Int8, symmetric, granularity, reduce_range: false };
            let (q, params) = scheme.quantize_weight(&table()).unwrap();
            let mut folded = m.clone();
            replace_with_folded(&mut folded, "w", &q, &params, QType::Int8, granularity).unwrap();
            assert!(folded.graph.nodes.iter().all(|n| n.op_type != "DequantizeLinear"));
            let dequantized = crate::quant::scheme::dequantize(&q, &params, granularity);
            assert!(dequantized != table(), "the weight really is rounded");
            assert_close(&run(&folded, x.clone()), &expected(&m, &x, dequantized));
        }
    }

    #[test]
    fn gathered_tables_dequantize_only_the_rows_looked_up() {
        let (m, ids) = gather_model();
        assert_eq!(gather_only_readers(&m.graph, "w"), Some(vec![0]));
        for granularity in [Granularity::PerTensor, Granularity::PerChannel { axis: 0 }] {
            let scheme =
                crate::quant::QScheme { qtype: QType::UInt8, symmetric: false, granularity, reduce_range: false };
            let (q, params) = scheme.quantize_weight(&table()).unwrap();
            let mut gathered = m.clone();
            replace_gathered(&mut gathered, "w", &q, &params, QType::UInt8, granularity, &[0]).unwrap();
            let lookup = &gathered.graph.nodes[0];
            assert_eq!((lookup.op_type.as_str(), lookup.inputs[0].as_str()), ("Gather", "w_quantized"));
            assert_close(
                &run(&gathered, ids.clone()),
                &expected(&m, &ids, crate::quant::scheme::dequantize(&q, &params, granularity)),
            );
        }
        // A table something else reads too is not gathered.
        let (mut m, _) = gather_model();
        m.graph.outputs.push(ValueInfo::tensor("w", Some(DataType::FLOAT), None));
        assert_eq!(gather_only_readers(&m.graph, "w"), None);
    }

    #[test]
    fn portable_int4_unpacks_once_or_after_each_lookup_to_the_same_values() {
        // Rows of 7 or 6 in blocks of 4: the last block padded and cut off again.
        for block_axis in [0, 1] {
            let (mm, x) = matmul_model();
            let mut folded = mm.clone();
            replace_with_portable_int4(&mut folded, "w", &table(), block_axis, 4, None, None).unwrap();
            // The weight the unpacking makes, read back from the folded form.
            let mut alone = folded.clone();
            alone.graph.outputs = vec![ValueInfo::tensor("w", Some(DataType::FLOAT), None)];
            alone.graph.inputs.clear();
            alone.graph.nodes.retain(|n| n.op_type != "MatMul");
            let options = SessionOptions { backend: Some(Backend::Tract), ..Default::default() };
            let weight = Session::new(&alone, &options).unwrap().run(&[]).unwrap().remove(0).to_f32();
            let error = (&weight - &table()).mapv(f32::abs).fold(0f32, |a, &b| a.max(b));
            assert!(error > 0.0 && error < 0.15, "4-bit rounding error {error}");
            assert_close(&run(&folded, x.clone()), &expected(&mm, &x, weight.clone()));
            if block_axis == 1 {
                // Blocks along a table's rows: unpacked after the lookup, to the same values.
                let (gm, ids) = gather_model();
                let mut gathered = gm.clone();
                replace_with_portable_int4(&mut gathered, "w", &table(), block_axis, 4, Some(vec![0]), None).unwrap();
                let lookup = &gathered.graph.nodes[0];
                assert_eq!((lookup.op_type.as_str(), lookup.inputs[0].as_str()), ("Gather", "w_int4_packed"));
                assert_close(&run(&gathered, ids.clone()), &expected(&gm, &ids, weight));
            }
        }
    }
}
