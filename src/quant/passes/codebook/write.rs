//! Writing coded weights as standard ONNX: packed indices, float16 tables, and the Cast +
//! GatherElements that restore each weight under its old name at load.

use super::*;

/// Replaces constant `name` (of `shape`, channel `axis` first in `codes`) by its
/// indices and tables and the ops that restore it: once, folded at load, or
/// after each of `gathers` on the rows read.
#[allow(clippy::too_many_arguments)]
pub(super) fn write(
    model: &mut Model,
    name: &str,
    shape: &[usize],
    axis: usize,
    encoded: &Encoded,
    k: usize,
    gathers: Option<&[usize]>,
) -> Result<()> {
    let (codes, tables) = (&encoded.codes, &encoded.tables);
    let g = &mut model.graph;
    g.remove_constant(name)?;
    let n = |s: &str| format!("{name}_codebook_{s}");
    let (rows, cols) = codes.dim();
    let packed = k <= 16;
    let stored: Vec<u8> = match packed {
        true => {
            codes.axis_iter(Axis(0)).flat_map(|r| crate::quant::pack::nibbles(r.iter().map(|&c| c as i32))).collect()
        }
        false => codes.iter().copied().collect(),
    };
    let row_bytes = stored.len() / rows.max(1);
    g.initializers.push(Tensor::from_bytes(
        n("indices"),
        DataType::UINT8,
        vec![rows as i64, row_bytes as i64],
        stored.into(),
    ));
    let table16: Vec<u8> = tables.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect();
    let (trows, tk) = tables.dim();
    g.initializers.push(Tensor::from_bytes(
        n("table"),
        DataType::FLOAT16,
        vec![trows as i64, tk as i64],
        table16.into(),
    ));
    let int64 = |v: Vec<i64>| ArrayD::from_shape_vec(IxDyn(&[v.len()]), v).expect("1-d");
    g.initializers.push(Tensor::from_array(n("last_axis"), &int64(vec![-1])));
    if packed {
        g.initializers.push(Tensor::scalar(n("mask"), 15u8));
        g.initializers.push(Tensor::scalar(n("shift"), 4u8));
        g.initializers.push(Tensor::from_array(n("starts"), &int64(vec![0])));
        g.initializers.push(Tensor::from_array(n("ends"), &int64(vec![cols as i64])));
    }
    let shared = trows == 1 && rows > 1;
    let to_float = || vec![attr("to", AttrValue::Int(DataType::FLOAT.0 as i64))];
    let mut added = vec![node(&n("table32"), "Cast", &[&n("table")], to_float())];
    if let Some(scales) = &encoded.scales {
        let s16: Vec<u8> = scales.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect();
        g.initializers.push(Tensor::from_bytes(n("scale"), DataType::FLOAT16, vec![rows as i64, 1], s16.into()));
        added.push(node(&n("scale32"), "Cast", &[&n("scale")], to_float()));
    }
    // Indices [rows, bytes] → each value's index [rows, cols] as int32, looked up in
    // `table` (float): [1, K] shared by all, or [rows, K] one per row.
    let lookup = |codes_in: &str, table: &str, per_row: bool, o: &dyn Fn(&str) -> String, out: &str| -> Vec<Node> {
        let mut nodes = vec![];
        let mut idx = codes_in.to_string();
        if packed {
            nodes.extend([
                node(&o("low"), "BitwiseAnd", &[&idx, &n("mask")], vec![]),
                node(
                    &o("high"),
                    "BitShift",
                    &[&idx, &n("shift")],
                    vec![attr("direction", AttrValue::String(b"RIGHT".to_vec()))],
                ),
                node(&o("low2"), "Unsqueeze", &[&o("low"), &n("last_axis")], vec![]),
                node(&o("high2"), "Unsqueeze", &[&o("high"), &n("last_axis")], vec![]),
                node(&o("pairs"), "Concat", &[&o("low2"), &o("high2")], vec![attr("axis", AttrValue::Int(-1))]),
                node(&o("flat"), "Flatten", &[&o("pairs")], vec![attr("axis", AttrValue::Int(-2))]),
            ]);
            idx = o("flat");
        }
        nodes.push(node(&o("ids"), "Cast", &[&idx], vec![attr("to", AttrValue::Int(DataType::INT32.0 as i64))]));
        let mut ids = o("ids");
        if packed {
            nodes.push(node(&o("cut"), "Slice", &[&ids, &n("starts"), &n("ends"), &n("last_axis")], vec![]));
            ids = o("cut");
        }
        let (op, inputs, attributes) = match per_row {
            false => ("Gather", vec![o("table_flat"), ids], vec![]),
            true => ("GatherElements", vec![table.to_string(), ids], vec![attr("axis", AttrValue::Int(-1))]),
        };
        if !per_row {
            nodes.push(node(&o("table_flat"), "Reshape", &[table, &n("last_axis")], vec![]));
        }
        nodes.push(Node {
            name: o(op),
            op_type: op.into(),
            inputs,
            outputs: vec![out.to_string()],
            attributes,
            ..Default::default()
        });
        nodes
    };
    match gathers {
        // Rows looked up first (indices and, per row, their tables), then decoded.
        Some(gathers) => {
            for &i in gathers {
                let gather = &mut g.nodes[i];
                let out = gather.outputs[0].clone();
                let ids = gather.inputs[1].clone();
                let o = |s: &str| format!("{out}_codebook_{s}");
                gather.inputs[0] = n("indices");
                gather.outputs[0] = o("indices");
                // Looked-up rows [ids…, bytes] flattened to [rows, bytes], decoded, then shaped [ids…, cols].
                let flat = vec![attr("axis", AttrValue::Int(-1))];
                added.push(node(&o("indices_flat"), "Flatten", &[&o("indices")], flat.clone()));
                // The rows' own tables, looked up with the same ids: [rows read, K].
                let table = match (shared, encoded.scales.is_some()) {
                    (true, false) => n("table32"),
                    (false, _) => {
                        added.push(node(&o("rows_table"), "Gather", &[&n("table32"), &ids], vec![]));
                        added.push(node(&o("rows_table_flat"), "Flatten", &[&o("rows_table")], flat.clone()));
                        o("rows_table_flat")
                    }
                    (true, true) => {
                        added.push(node(&o("rows_scale"), "Gather", &[&n("scale32"), &ids], vec![]));
                        added.push(node(&o("rows_scale_flat"), "Flatten", &[&o("rows_scale")], flat.clone()));
                        added.push(node(&o("rows_table"), "Mul", &[&o("rows_scale_flat"), &n("table32")], vec![]));
                        o("rows_table")
                    }
                };
                let per_row = !shared || encoded.scales.is_some();
                added.extend(lookup(&o("indices_flat"), &table, per_row, &o, &o("decoded")));
                added.push(node(&o("ids_shape"), "Shape", &[&ids], vec![]));
                added.push(node(
                    &o("shape"),
                    "Concat",
                    &[&o("ids_shape"), &n("cols")],
                    vec![attr("axis", AttrValue::Int(0))],
                ));
                added.push(node_named(&out, "Reshape", &[&o("decoded"), &o("shape")], vec![], &o("Reshape")));
            }
            g.initializers.push(Tensor::from_array(n("cols"), &int64(vec![cols as i64])));
        }
        None => {
            let o = |s: &str| n(s);
            let mut moved: Vec<usize> = moved_order(shape.len(), axis).iter().map(|&a| shape[a]).collect();
            if moved.is_empty() {
                moved.push(1);
            }
            let decoded = if moved.len() == 2 && axis == 0 { name.to_string() } else { n("rows") };
            // Per row: the rows' tables, or the shared one times each row's scale ([rows, K], folded at load).
            if encoded.scales.is_some() {
                added.push(node(&n("rows_table"), "Mul", &[&n("scale32"), &n("table32")], vec![]));
            }
            let (table, per_row) = match (shared, encoded.scales.is_some()) {
                (true, false) => (n("table32"), false),
                (false, _) => (n("table32"), true),
                (true, true) => (n("rows_table"), true),
            };
            added.extend(lookup(&n("indices"), &table, per_row, &o, &decoded));
            if decoded != name {
                g.initializers.push(Tensor::from_array(n("shape"), &int64(moved.iter().map(|&d| d as i64).collect())));
                let reshaped = if axis == 0 { name.to_string() } else { n("moved") };
                added.push(node_named(&reshaped, "Reshape", &[&decoded, &n("shape")], vec![], &n("Reshape")));
                if axis != 0 {
                    // Back from channel-first to the weight's own axis order.
                    let order = moved_order(shape.len(), axis);
                    let mut inverse = vec![0i64; order.len()];
                    for (i, &a) in order.iter().enumerate() {
                        inverse[a] = i as i64;
                    }
                    added.push(node_named(
                        name,
                        "Transpose",
                        &[&reshaped],
                        vec![attr("perm", AttrValue::Ints(inverse))],
                        &n("Transpose"),
                    ));
                }
            }
        }
    }
    g.nodes.extend(added);
    Ok(())
}

pub(super) fn attr(name: &str, value: AttrValue) -> Attribute {
    Attribute::new(name, value)
}

pub(super) fn node(output: &str, op: &str, inputs: &[&str], attributes: Vec<Attribute>) -> Node {
    Node::single(output, op, inputs, attributes)
}

/// [`node`] under another name than `{output}_{op}`.
pub(super) fn node_named(output: &str, op: &str, inputs: &[&str], attributes: Vec<Attribute>, name: &str) -> Node {
    Node { name: name.into(), ..Node::single(output, op, inputs, attributes) }
}
