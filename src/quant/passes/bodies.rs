//! Weights inside If/Loop/Scan bodies (a streaming model keeps all of them in one branch per sample
//! rate). The data-free form of each mode runs in every body, through `transform::for_each_body`:
//! weight-only and codebooks rounded to nearest, dynamic MatMuls, float16 storage. Statistics are
//! not gathered inside control flow, so nothing here is measured per layer; the job's check runs
//! the whole result beside the original. Static quantization needs a plain graph: `--fix-input`
//! specialises one (see `transform::fix_inputs`).

use super::codebook::quantize_codebook;
use super::{dynamic, weights};
use crate::ir::{Attribute, DataType, Model, Node};
use crate::measure::Progress;
use crate::quant::{QuantConfig, QuantMode, QuantReport, WeightScheme};
use crate::Result;

/// Float16 storage keeps weights of at least this many values; smaller ones stay float32.
const FP16_MIN_ELEMENTS: usize = 64;
/// The largest float16 value: weights past it stay float32.
const FP16_MAX: f32 = 65504.0;

/// Quantizes the weights inside every control-flow body of `model` as `config`'s mode does without
/// data; what was done is added to `report` (records, and a note per body). Static mode enters
/// no body.
pub fn quantize_bodies(
    model: &mut Model,
    config: &QuantConfig,
    report: &mut QuantReport,
    progress: &dyn Progress,
) -> Result<()> {
    if config.mode == QuantMode::Static || model.weights_in_subgraphs().is_empty() {
        return Ok(());
    }
    let mut said = vec![];
    crate::transform::for_each_body(model, &mut |body, label| {
        let mut inside = QuantReport::default();
        match config.mode {
            QuantMode::Weights if config.codebook.is_some() || config.scheme == WeightScheme::Log2 => {
                quantize_codebook(body, &config.codebook_options(), None, 0.0, &mut inside, progress)?
            }
            QuantMode::Weights => weights::quantize_weights(body, &config.weight_options(), &mut inside)?,
            QuantMode::Dynamic => dynamic::quantize_dynamic(body, &config.dynamic_options(), &mut inside)?,
            QuantMode::Fp16 => {
                let stored = store_float16(body, &config.exclude);
                if stored > 0 {
                    said.push(format!("inside {label}: {stored} weights stored as float16 (computed in float32)"));
                }
            }
            QuantMode::Static => {}
        }
        if !inside.tensors.is_empty() {
            said.push(format!(
                "inside {label}: {} weights quantized, rounded to nearest (no statistics are gathered inside control flow)",
                inside.tensors.len()
            ));
        }
        report.tensors.append(&mut inside.tensors);
        report.skipped.append(&mut inside.skipped);
        Ok(())
    })?;
    report.notes.extend(said);
    Ok(())
}

/// Each float32 weight of `body` that float16 holds (finite, within its range) stored as float16
/// and cast back under its old name, which runtimes fold at load: half the bytes, float32
/// arithmetic. Returns how many weights were stored so.
fn store_float16(body: &mut Model, exclude: &[String]) -> usize {
    let g = &mut body.graph;
    let excluded: std::collections::BTreeSet<String> =
        g.nodes.iter().filter(|n| n.is_any_of(exclude)).flat_map(|n| n.inputs.iter().cloned()).collect();
    let mut casts = vec![];
    for t in g.initializers.iter_mut() {
        let fits = t.dtype == DataType::FLOAT
            && t.numel().unwrap_or(0) >= FP16_MIN_ELEMENTS
            && !excluded.contains(&t.name)
            && t.to_f32().is_ok_and(|w| w.iter().all(|v| v.is_finite() && v.abs() <= FP16_MAX));
        if !fits {
            continue;
        }
        let Ok(w) = t.to_f32() else { continue };
        let name = t.name.clone();
        let half_name = format!("{name}_float16");
        *t = crate::ir::Tensor::from_array(&half_name, &w.mapv(half::f16::from_f32));
        casts.push(Node {
            name: format!("{name}_Cast"),
            ..Node::single(&name, "Cast", &[&half_name], vec![Attribute::int("to", DataType::FLOAT.0 as i64)])
        });
    }
    let stored = casts.len();
    g.nodes.splice(0..0, casts);
    stored
}

#[cfg(test)]
mod tests {
    use crate::data::Array;
    use crate::ir::DataType;
    use crate::measure::Silent;
    use crate::quant::{quantize, QuantConfig, QuantMode};
    use crate::runtime::{Backend, Session, SessionOptions};

    fn run(m: &crate::ir::Model, sr: i64) -> Vec<f32> {
        let x = Array::F32(ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[2, 8]), |i| {
            crate::ir::testing::wavy(i[0] * 8 + i[1])
        }));
        let sr = Array::I64(ndarray::arr0(sr).into_dyn());
        let options = SessionOptions { backend: Some(Backend::Tract), ..Default::default() };
        Session::new(m, &options).unwrap().run(&[x, sr]).unwrap().remove(0).to_f32().iter().copied().collect()
    }

    /// The types of the branches' constants of 64 values or more (the weights).
    fn body_weight_types(m: &crate::ir::Model) -> Vec<DataType> {
        let inside = m.graph.nodes.iter().flat_map(|n| n.subgraphs()).flat_map(|g| g.initializers.iter());
        inside.filter(|t| t.numel().unwrap_or(0) >= 64).map(|t| t.dtype).collect()
    }

    #[test]
    fn weights_inside_both_branches_are_quantized_and_the_opset_follows() {
        let original = crate::transform::specialise_tests_model();
        for (bits, opset) in [(8, 17), (4, crate::quant::portable::PORTABLE_INT4_OPSET)] {
            let mut m = original.clone();
            let config = QuantConfig { mode: QuantMode::Weights, bits, ..Default::default() };
            let report = quantize(&mut m, &config, None, &Silent).unwrap();
            assert_eq!(report.tensors.len(), 2, "{bits} bits: a and b");
            assert_eq!(report.notes.len(), 2, "{:?}", report.notes);
            let packed = if bits == 8 { DataType::INT8 } else { DataType::UINT8 };
            assert_eq!(body_weight_types(&m), [packed, packed], "{bits} bits");
            assert_eq!(m.onnx_opset(), Some(opset.max(17)));
            for sr in [16000, 8000] {
                let (a, b) = (run(&original, sr), run(&m, sr));
                let err = a.iter().zip(&b).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                assert!(err < if bits == 8 { 0.05 } else { 0.5 }, "{bits} bits, sr {sr}: {err}");
            }
        }
    }

    #[test]
    fn float16_storage_halves_the_branches_and_keeps_float32_arithmetic() {
        let original = crate::transform::specialise_tests_model();
        let mut m = original.clone();
        let config = QuantConfig { mode: QuantMode::Fp16, ..Default::default() };
        quantize(&mut m, &config, None, &Silent).unwrap();
        assert_eq!(body_weight_types(&m).iter().filter(|t| **t == DataType::FLOAT16).count(), 2);
        let (a, b) = (run(&original, 16000), run(&m, 16000));
        assert!(a.iter().zip(&b).all(|(a, b)| (a - b).abs() < 1e-2), "{a:?} {b:?}");
    }

    /// Every name defined anywhere in `g` (bodies included), with repeats.
    fn definitions(g: &crate::ir::Graph, out: &mut Vec<String>) {
        out.extend(g.initializers.iter().map(|t| t.name.clone()));
        for n in &g.nodes {
            out.extend(n.outputs.iter().filter(|o| !o.is_empty()).cloned());
            n.subgraphs().for_each(|b| definitions(b, out));
        }
    }

    #[test]
    fn a_name_both_the_main_graph_and_a_branch_make_is_defined_once() {
        // The main graph and both branches multiply `x`: dynamic quantization makes `x_dq` in each.
        let mut m = crate::transform::specialise_tests_model();
        m.graph.nodes.push(crate::ir::testing::node("MatMul", &["x", "w0"], "m", &[]));
        m.graph.initializers.push(crate::ir::testing::tensor("w0", &[8, 16], crate::ir::testing::wavy));
        m.graph.outputs.push(crate::ir::ValueInfo::tensor("m", Some(DataType::FLOAT), None));
        let original = m.clone();
        let config = QuantConfig { mode: QuantMode::Dynamic, ..Default::default() };
        quantize(&mut m, &config, None, &Silent).unwrap();
        let mut names = vec![];
        definitions(&m.graph, &mut names);
        let main: Vec<&String> = names.iter().filter(|n| n.starts_with("x_dq")).collect();
        assert!(main.len() >= 3, "x quantized in the main graph and in each branch: {main:?}");
        // Sibling branches may share names; the main graph's may not be redefined inside.
        let inside: Vec<String> = m
            .graph
            .nodes
            .iter()
            .flat_map(|n| n.subgraphs())
            .flat_map(|b| {
                let mut d = vec![];
                definitions(b, &mut d);
                d
            })
            .collect();
        let outer: Vec<&String> =
            m.graph.initializers.iter().map(|t| &t.name).chain(m.graph.nodes.iter().flat_map(|n| &n.outputs)).collect();
        assert!(inside.iter().all(|n| !outer.contains(&n)), "{inside:?}");
        assert!(m.graph.validate(&Default::default()).is_ok());
        let (a, b) = (run(&original, 16000), run(&m, 16000));
        assert!(a.iter().zip(&b).all(|(a, b)| (a - b).abs() < 0.05), "{a:?} {b:?}");
    }
}
