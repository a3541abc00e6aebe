//! ONNX Runtime's `MatMulNBits` (domain `com.microsoft`): a MatMul whose
//! constant weight stays packed in 4 or 8 bits in memory and is dequantized
//! block by block inside the kernel — the format ONNX Runtime's own LLM tooling
//! writes. Made for ONNX Runtime (tract 0.23 runs it too, slowly).
//!
//! Layout (ONNX Runtime's contrib op spec): the weight `[K, N]` is stored
//! transposed as `B: uint8 [N, ceil(K / block), block * bits / 8]`, element `k`
//! of a block in byte `k * bits / 8`, low nibble first for 4 bits; `scales`
//! float `[N * blocks]` row by row; unsigned values with the zero point
//! `2^(bits-1)` when `zero_points` is absent (symmetric), else `zero_points`
//! uint8, packed like `B` (`[N * ceil(blocks * bits / 8)]`). The tail of a last,
//! short block holds the zero point, so it dequantizes to 0.

use crate::ir::{Attribute, Model, Node, OpsetId, Tensor};
use crate::quant::report::TensorRecord;
use crate::quant::scheme::{Granularity, QParams, QScheme, QType};
use crate::Result;
use ndarray::{ArrayD, Ix2};

pub const DOMAIN: &str = "com.microsoft";

/// Whether `name` can be written as `MatMulNBits`: a 2-D float weight read
/// only as the right-hand side of standard MatMuls, and a block size the
/// kernel takes (a power of two, at least 16).
pub fn applies(model: &Model, name: &str, w: &ArrayD<f32>, uses: &[(usize, Option<usize>)], block: usize) -> bool {
    let g = &model.graph;
    let read_as_rhs = uses.iter().all(|&(n, _)| {
        let node = &g.nodes[n];
        node.op_type == "MatMul" && node.is_onnx_op() && node.input(1) == Some(name) && node.input(0) != Some(name)
    });
    let readers = g.nodes.iter().filter(|n| n.inputs.iter().any(|i| i == name)).count();
    w.ndim() == 2 && read_as_rhs && readers == uses.len() && block >= 16 && block.is_power_of_two()
}

/// Replaces every MatMul reading `name` by a `MatMulNBits` over the packed
/// weight; returns the tensor's record. `qtype` is Int4/UInt4/Int8/UInt8.
pub fn replace(model: &mut Model, name: &str, w: &ArrayD<f32>, qtype: QType, block: usize) -> Result<TensorRecord> {
    let bits = qtype.bits() as usize;
    let symmetric = qtype.signed();
    let scheme =
        QScheme { qtype, symmetric, granularity: Granularity::Block { axis: 0, size: block }, reduce_range: false };
    let w2 = w.view().into_dimensionality::<Ix2>().expect("2-D weight");
    let (k, n) = w2.dim();
    let blocks = k.div_ceil(block);
    // Unsigned values row by row (a row is an output column of the weight), each
    // row `blocks * block` long; a scale (and zero point) per block.
    let (values, scales, zero_points, params) = if qtype == QType::Int4 {
        // The int4 rounding the portable format uses: a searched scale per block, float16.
        let (values, scales) = crate::quant::portable::quantize_int4_rows(&w2.t().to_owned(), block);
        let scales: Vec<f32> = scales.iter().map(|s| s.to_f32()).collect();
        let (lo, hi) = scales.iter().fold((f32::INFINITY, 0f32), |(a, b), &s| (a.min(s), b.max(s)));
        let range =
            QParams { scale: ndarray::arr1(&[lo, hi]).into_dyn(), zero_point: ndarray::arr1(&[0, 0]).into_dyn() };
        (values.into_iter().map(|v| v as u8).collect::<Vec<u8>>(), scales, None, range)
    } else {
        let (q, params) = scheme.quantize_weight(w)?;
        // Signed values shift by the implicit zero point 2^(bits-1).
        let shift = if symmetric { 1i32 << (bits - 1) } else { 0 };
        let zero_point = |b: usize, col: usize| if symmetric { shift as u8 } else { params.zero_point[[b, col]] as u8 };
        let at =
            |row: usize, col: usize| if row < k { (q[[row, col]] + shift) as u8 } else { zero_point(row / block, col) };
        let values =
            (0..n).flat_map(|col| (0..blocks * block).map(move |row| (row, col))).map(|(r, c)| at(r, c)).collect();
        let per_row = |col: usize| (0..blocks).map(move |b| (b, col));
        let scales = (0..n).flat_map(per_row).map(|(b, col)| params.scale[[b, col]]).collect();
        let zps =
            (!symmetric).then(|| (0..n).flat_map(per_row).map(|(b, col)| zero_point(b, col)).collect::<Vec<u8>>());
        (values, scales, zps, params)
    };
    let blob = block * bits / 8;
    let mut packed = vec![0u8; n * blocks * blob];
    for (row, chunk) in values.chunks(block).enumerate() {
        write_packed(&mut packed[row * blob..][..blob], chunk.iter().copied(), bits);
    }
    let base = name.to_string();
    let b_name = format!("{base}_nbits");
    let s_name = format!("{base}_nbits_scales");
    let mut inputs = vec![b_name.clone(), s_name.clone()];
    let mut constants = vec![
        Tensor::from_bytes(
            &b_name,
            crate::ir::DataType::UINT8,
            vec![n as i64, blocks as i64, blob as i64],
            packed.into(),
        ),
        Tensor::from_array(&s_name, &ndarray::Array1::from(scales).into_dyn()),
    ];
    if let Some(zero_points) = zero_points {
        let per_row = (blocks * bits).div_ceil(8);
        let mut zps = vec![0u8; n * per_row];
        for (col, row) in zero_points.chunks(blocks).enumerate() {
            write_packed(&mut zps[col * per_row..][..per_row], row.iter().copied(), bits);
        }
        let z_name = format!("{base}_nbits_zero_points");
        inputs.push(z_name.clone());
        constants.push(Tensor::from_bytes(&z_name, crate::ir::DataType::UINT8, vec![zps.len() as i64], zps.into()));
    }
    let record = TensorRecord::new(name, &scheme, &params, w.len() * 4, w.shape());
    let g = &mut model.graph;
    for node in g.nodes.iter_mut().filter(|node| node.op_type == "MatMul" && node.input(1) == Some(name)) {
        let a = node.inputs[0].clone();
        *node = Node {
            name: node.name.clone(),
            op_type: "MatMulNBits".into(),
            domain: DOMAIN.into(),
            inputs: std::iter::once(a).chain(inputs.iter().cloned()).collect(),
            outputs: node.outputs.clone(),
            attributes: vec![
                Attribute::int("K", k as i64),
                Attribute::int("N", n as i64),
                Attribute::int("bits", bits as i64),
                Attribute::int("block_size", block as i64),
            ],
            ..Default::default()
        };
    }
    g.remove_constant(name)?;
    g.initializers.extend(constants);
    if !model.opset_import.iter().any(|o| o.domain.as_deref() == Some(DOMAIN)) {
        model.opset_import.push(OpsetId { domain: Some(DOMAIN.into()), version: 1 });
    }
    Ok(record)
}

/// `values` (each below 2^bits) into `out`, 8 bits a byte or two 4-bit values
/// a byte, the first in the low nibble.
fn write_packed(out: &mut [u8], values: impl Iterator<Item = u8>, bits: usize) {
    for (i, v) in values.enumerate() {
        match bits {
            8 => out[i] = v,
            _ => out[i / 2] |= (v & 0x0f) << (4 * (i % 2)),
        }
    }
}
