//! Quantization passes on the shared models, checked in tract and ONNX Runtime.

mod common;

use prunq::data::Dataset;
use prunq::eval::{evaluate, RunOptions};
use prunq::measure::Silent;
use prunq::quant::{quantize_weights, QType, QuantReport, WeightOptions};

#[test]
fn int8_weights_keep_digits_accuracy_in_both_runtimes() {
    let dir = common::tempdir();
    let data = common::data("digits_test.npz");
    for (name, fp32) in [
        ("digits_mlp.onnx", 0.974),
        ("digits_cnn.onnx", 0.998),
        ("digits_resnet.onnx", 0.994),
        ("digits_vit.onnx", 0.968),
    ] {
        let mut m = prunq::onnx::load(common::model(name)).unwrap();
        let mut report = QuantReport::default();
        quantize_weights(&mut m, &WeightOptions::default(), &mut report).unwrap();
        assert!(!report.tensors.is_empty(), "{name}: nothing quantized");
        // The portable form: int8 initializers cast and scaled by ops runtimes fold at load, no
        // DequantizeLinear (which ONNX Runtime would run on every inference).
        assert!(!m.graph.nodes.iter().any(|n| n.op_type == "DequantizeLinear"), "{name}");
        assert!(m.graph.nodes.iter().any(|n| n.op_type == "Cast"
            && m.graph.constant(&n.inputs[0]).is_some_and(|t| t.unwrap().dtype == prunq::ir::DataType::INT8)));
        let out = dir.path().join(name);
        prunq::onnx::save(&m, &out, &Default::default()).unwrap();
        let ratio = std::fs::metadata(&out).unwrap().len() as f64
            / std::fs::metadata(common::model(name)).unwrap().len() as f64;
        assert!(ratio < 0.4, "{name}: size ratio {ratio}");
        let tract =
            evaluate(&m, &Dataset::open(&data).unwrap(), &RunOptions::default(), &Silent).unwrap().accuracy.unwrap();
        let ort = common::accuracy_in_ort(&out, &data);
        assert!(fp32 - tract <= 0.004 + 1e-9, "{name}: tract accuracy {tract}");
        assert!(fp32 - ort <= 0.004 + 1e-9, "{name}: ORT accuracy {ort}");
    }
}

#[test]
fn paddle_constant_node_weights_are_quantized_at_the_models_own_opset() {
    let dir = common::tempdir();
    let src = common::model("ppocr_cls_v2.onnx");
    let mut m = prunq::onnx::load(&src).unwrap();
    assert!(m.graph.initializers.is_empty(), "Paddle keeps weights in Constant nodes");
    let mut report = QuantReport::default();
    quantize_weights(&mut m, &WeightOptions::default(), &mut report).unwrap();
    // Cast and Mul need no newer opset (DequantizeLinear's per-channel axis would need 13).
    assert_eq!(m.onnx_opset(), Some(11));
    assert!(report.tensors.len() >= 50, "{} weights quantized", report.tensors.len());
    let out = dir.path().join("cls.onnx");
    prunq::onnx::save(&m, &out, &Default::default()).unwrap();
    let ratio = std::fs::metadata(&out).unwrap().len() as f64 / std::fs::metadata(&src).unwrap().len() as f64;
    assert!(ratio < 0.45, "size ratio {ratio}");
    let data = common::data_for("ppocr_cls_v2.onnx");
    let ort = common::ort_outputs(&out, &data, 8);
    let tract = common::tract_outputs(&m, &data, 8);
    for (k, v) in &ort {
        common::assert_close(k, &tract[k], v);
    }
}

#[test]
fn opset_upgrade_keeps_outputs_identical() {
    for name in ["ppocr_cls_v2.onnx", "ppocr_rec_v4.onnx"] {
        let original = prunq::onnx::load(common::model(name)).unwrap();
        let mut m = original.clone();
        let ranks = prunq::analysis::rank_lookup(&m);
        assert!(prunq::transform::upgrade_opset(&mut m, 13, &|n| ranks.get(n).copied()).unwrap());
        assert_eq!(m.onnx_opset(), Some(13));
        assert!(m.graph.nodes.iter().filter(|n| n.op_type == "Squeeze").all(|n| n.attr("axes").is_none()));
        let data = common::data_for(name);
        assert_eq!(common::tract_outputs(&original, &data, 2), common::tract_outputs(&m, &data, 2), "{name} in tract");
        let dir = common::tempdir();
        let out = dir.path().join(name);
        prunq::onnx::save(&m, &out, &Default::default()).unwrap();
        assert_eq!(
            common::ort_outputs(&common::model(name), &data, 2),
            common::ort_outputs(&out, &data, 2),
            "{name} in ORT"
        );
    }
}

#[test]
fn weights_with_nan_are_left_float_and_reported() {
    let mut m = prunq::onnx::load(common::model("digits_mlp.onnx")).unwrap();
    let w = m.graph.initializers.iter().find(|t| t.dims.len() == 2).unwrap().clone();
    let mut a = w.to_f32().unwrap();
    a[[0, 0]] = f32::NAN;
    m.graph.set_constant(&w.name, prunq::ir::Tensor::from_array(&w.name, &a)).unwrap();
    let mut report = QuantReport::default();
    quantize_weights(&mut m, &WeightOptions::default(), &mut report).unwrap();
    assert!(report.skipped.iter().any(|s| s.name == w.name && s.reason.contains("NaN")));
    assert!(report.tensors.iter().all(|t| t.name != w.name));
    assert!(m.graph.initializers.iter().any(|t| t.name == w.name), "left in place");
}

#[test]
fn ocr_weights_int8_reads_text_in_both_runtimes() {
    let dir = common::tempdir();
    let mut m = prunq::onnx::load(common::model("ppocr_rec_v4.onnx")).unwrap();
    let mut report = QuantReport::default();
    quantize_weights(&mut m, &WeightOptions { qtype: QType::Int8, ..Default::default() }, &mut report).unwrap();
    let out = dir.path().join("rec.onnx");
    prunq::onnx::save(&m, &out, &Default::default()).unwrap();
    let tract_exact = common::ocr_exact_lines_in_tract(&m);
    let ort_exact = common::ocr_exact_lines_in_ort(&out);
    assert!((tract_exact - ort_exact).abs() <= 1.0 / 64.0, "tract {tract_exact} vs ORT {ort_exact}");
    // The floor is 80 % (fp32 82.8 %); data-free, thanks to sum-keeping rounding (78.1 % without).
    assert!(tract_exact >= 0.80 && ort_exact >= 0.80, "exact lines: tract {tract_exact}, ORT {ort_exact}");
}

fn ort_static_size(model: &std::path::Path, calib: &std::path::Path, dir: &std::path::Path) -> u64 {
    let out = dir.join("ort_static.onnx");
    common::ort("ort_quantize.py", &["static".as_ref(), model.as_os_str(), out.as_os_str(), calib.as_os_str()]);
    std::fs::metadata(out).unwrap().len()
}

fn quantize_static_file(src: &std::path::Path, calib: &std::path::Path, out: &std::path::Path) -> prunq::ir::Model {
    let mut m = prunq::onnx::load(src).unwrap();
    let data = Dataset::open(calib).unwrap();
    let mut report = QuantReport::default();
    // uint8 weights where ONNX Runtime's u8×s8 kernels would saturate (x86 without VNNI), as the
    // CLI chooses there: the ORT floors below are judged on this CPU.
    let options =
        prunq::quant::StaticOptions { unsigned_weights: common::unsigned_weights_here(), ..Default::default() };
    prunq::quant::quantize_static(&mut m, &data, &options, &mut report, &Silent).unwrap();
    prunq::onnx::save(&m, out, &Default::default()).unwrap();
    m
}

#[test]
fn static_digits_keep_accuracy_and_are_no_larger_than_onnx_runtime_s() {
    let dir = common::tempdir();
    let (calib, test) = (common::data("digits_calib.npz"), common::data("digits_test.npz"));
    for (name, fp32) in [
        ("digits_mlp.onnx", 0.974),
        ("digits_cnn.onnx", 0.998),
        ("digits_resnet.onnx", 0.994),
        ("digits_vit.onnx", 0.968),
    ] {
        let out = dir.path().join(name);
        let m = quantize_static_file(&common::model(name), &calib, &out);
        assert!(m.graph.nodes.iter().any(|n| n.op_type == "QuantizeLinear"), "{name}: no QDQ");
        let tract =
            evaluate(&m, &Dataset::open(&test).unwrap(), &RunOptions::default(), &Silent).unwrap().accuracy.unwrap();
        let ort = common::accuracy_in_ort(&out, &test);
        assert!(fp32 - tract <= 0.004 + 1e-9, "{name}: tract accuracy {tract}");
        assert!(fp32 - ort <= 0.004 + 1e-9, "{name}: ORT accuracy {ort}");
        let (ours, theirs) =
            (std::fs::metadata(&out).unwrap().len(), ort_static_size(&common::model(name), &calib, dir.path()));
        assert!(ours <= theirs, "{name}: {ours} bytes, ONNX Runtime's static output {theirs}");
    }
}

/// Through the CLI with its default runtime: calibration and the float fallback
/// measured in ONNX Runtime, where the file is deployed. (On an AVX2-only x86
/// with 7-bit weights, measured: 97.7 % agreement in both runtimes; the same
/// options measured in tract chose other layers and read 96.9 %.)
#[test]
fn static_ppocr_cls_agrees_with_fp32() {
    let dir = common::tempdir();
    let out = dir.path().join("cls.onnx");
    let src = common::model("ppocr_cls_v2.onnx");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_prunq"));
    cmd.args(["--quiet", "quantize"]).arg(&src).arg("-o").arg(&out).args(["--mode", "static", "--calib"]);
    cmd.arg(common::data("ocr_cls_calib.npz"));
    let run = cmd.output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(String::from_utf8_lossy(&run.stdout).contains("measured in onnxruntime"));
    let m = prunq::onnx::load(&out).unwrap();
    let test = common::data("ocr_cls_test.npz");
    let original = prunq::onnx::load(&src).unwrap();
    let r =
        prunq::eval::compare(&original, &m, &Dataset::open(&test).unwrap(), &RunOptions::default(), &Silent).unwrap();
    assert!(r.outputs[0].top1_agreement >= 0.97, "tract agreement {}", r.outputs[0].top1_agreement);
    let (a, b) = (common::ort_outputs(&src, &test, 128), common::ort_outputs(&out, &test, 128));
    let (a, b) = (a.values().next().unwrap().to_f32(), b.values().next().unwrap().to_f32());
    let agree = a
        .outer_iter()
        .zip(b.outer_iter())
        .filter(|(x, y)| prunq::eval::argmax(x.iter()) == prunq::eval::argmax(y.iter()))
        .count();
    assert!(agree as f64 / 128.0 >= 0.97, "ORT agreement {agree}/128");
}

/// Embedding fidelity in ONNX Runtime: mean cosine and nearest-neighbour agreement.
fn embedding_fidelity_in_ort(reference: &std::path::Path, candidate: &std::path::Path) -> (f64, f64) {
    let data = common::data("sentences_test.npz");
    let a = common::ort_outputs(reference, &data, 256)["embedding"].to_f32();
    let b = common::ort_outputs(candidate, &data, 256)["embedding"].to_f32();
    let mut cmp = prunq::eval::OutputComparison::new();
    cmp.update(&a, &b);
    let m = cmp.finish("embedding");
    (m.cosine_mean, m.nn_agreement.unwrap())
}

#[test]
fn static_minilm_meets_its_floors_with_sensitive_layers_kept_float() {
    let dir = common::tempdir();
    let out = dir.path().join("minilm.onnx");
    let src = common::model("minilm_l6.onnx");
    quantize_static_file(&src, &common::data("sentences_calib.npz"), &out);
    let ratio = std::fs::metadata(&out).unwrap().len() as f64 / std::fs::metadata(&src).unwrap().len() as f64;
    assert!(ratio <= 0.35, "size ratio {ratio}");
    let (cos, nn) = embedding_fidelity_in_ort(&src, &out);
    assert!(cos >= 0.98 && nn >= 0.85, "ORT: cosine {cos}, NN agreement {nn}");
}

#[test]
fn dynamic_minilm_runs_matmul_integer_in_both_runtimes() {
    let dir = common::tempdir();
    let src = common::model("minilm_l6.onnx");
    let mut m = prunq::onnx::load(&src).unwrap();
    let mut report = QuantReport::default();
    let options =
        prunq::quant::DynamicOptions { unsigned_weights: common::unsigned_weights_here(), ..Default::default() };
    prunq::quant::quantize_dynamic(&mut m, &options, &mut report).unwrap();
    assert_eq!(m.graph.nodes.iter().filter(|n| n.op_type == "MatMulInteger").count(), 36);
    let out = dir.path().join("dyn.onnx");
    prunq::onnx::save(&m, &out, &Default::default()).unwrap();
    // The floor is ONNX Runtime's own dynamic quantization as the issue measured it (cosine 0.993,
    // NN 87.5 %), one sentence at a time as a server would run it. Measured: 0.9932 / 87.9 %. On an
    // x86 without VNNI ORT's u8×s8 kernels saturate (AVX2-only EPYC, ORT 1.32: 0.9915 / 86.7 % with
    // int8 weights, 7-bit or not); with the uint8 weights prunq writes there the floor holds too.
    let data = common::data("sentences_test.npz");
    let a = common::ort_outputs(&src, &data, 256)["embedding"].to_f32();
    let b = common::ort_outputs_with(&out, &data, 256, &["--batch", "1"])["embedding"].to_f32();
    let mut cmp = prunq::eval::OutputComparison::new();
    cmp.update(&a, &b);
    let m1 = cmp.finish("embedding");
    let (cos, nn) = (m1.cosine_mean, m1.nn_agreement.unwrap());
    assert!(cos >= 0.993 && nn >= 0.875, "ORT batch 1: cosine {cos}, NN agreement {nn}");
    let original = prunq::onnx::load(&src).unwrap();
    let r = prunq::eval::compare(
        &original,
        &m,
        &Dataset::open(common::data("sentences_test.npz")).unwrap(),
        &RunOptions::default(),
        &Silent,
    )
    .unwrap();
    assert!(r.outputs[0].cosine_mean >= 0.99, "tract: cosine {}", r.outputs[0].cosine_mean);
}

#[test]
fn portable_int4_minilm_runs_in_both_runtimes_at_a_fifth_of_the_size() {
    let dir = common::tempdir();
    let src = common::model("minilm_l6.onnx");
    let mut m = prunq::onnx::load(&src).unwrap();
    let options = WeightOptions { qtype: QType::Int4, block_size: Some(32), ..Default::default() };
    quantize_weights(&mut m, &options, &mut QuantReport::default()).unwrap();
    assert!(m.graph.nodes.iter().any(|n| n.op_type == "BitShift"), "packed nibbles are unpacked by plain ops");
    let out = dir.path().join("int4.onnx");
    prunq::onnx::save(&m, &out, &Default::default()).unwrap();
    let ratio = std::fs::metadata(&out).unwrap().len() as f64 / std::fs::metadata(&src).unwrap().len() as f64;
    assert!(ratio <= 0.2, "size ratio {ratio}");
    let (cos, _) = embedding_fidelity_in_ort(&src, &out);
    assert!(cos >= 0.95, "ORT cosine {cos}");
    let original = prunq::onnx::load(&src).unwrap();
    let data = Dataset::open(common::data("sentences_test.npz")).unwrap();
    let r = prunq::eval::compare(&original, &m, &data, &RunOptions::default(), &Silent).unwrap();
    assert!(r.outputs[0].cosine_mean >= 0.95, "tract cosine {}", r.outputs[0].cosine_mean);
}

#[test]
fn fp16_halves_the_size_and_keeps_float32_edges() {
    let dir = common::tempdir();
    // digits_vit: ONNX Runtime 1.32 segfaults on a float16 Transpose → MatMul at its default
    // optimization level; the pass swaps them (transform::transpose_after_matmul), so it runs.
    for (name, data) in [
        ("digits_cnn.onnx", "digits_test.npz"),
        ("digits_resnet.onnx", "digits_test.npz"),
        ("digits_vit.onnx", "digits_test.npz"),
        ("ppocr_cls_v2.onnx", "ocr_cls_test.npz"),
    ] {
        let src = common::model(name);
        let original = prunq::onnx::load(&src).unwrap();
        let mut m = original.clone();
        prunq::quant::convert_fp16(&mut m, &Default::default(), None, &mut QuantReport::default()).unwrap();
        assert_eq!(m.graph.inputs[0].dtype(), Some(prunq::ir::DataType::FLOAT), "{name}: input stays float32");
        let out = dir.path().join(name);
        prunq::onnx::save(&m, &out, &Default::default()).unwrap();
        let ratio = std::fs::metadata(&out).unwrap().len() as f64 / std::fs::metadata(&src).unwrap().len() as f64;
        assert!(ratio < 0.6, "{name}: size ratio {ratio}");
        let data = common::data(data);
        // tract runs float16 matmuls in its generic software kernel on x86 (minutes for 500
        // rows): tract judges the first 16 rows (top-1 agreement over 0.99 there is every row
        // agreeing with fp32); ONNX Runtime's accuracy floor below takes them all.
        let arrays = prunq::data::npz::read(&data).unwrap();
        let first = arrays.into_iter().map(|(k, a)| (k, a.rows(0, 16.min(a.row_count())))).collect();
        let first = Dataset::from_arrays("the first 16 rows", first);
        let r = prunq::eval::compare(&original, &m, &first, &RunOptions::default(), &Silent).unwrap();
        assert!(
            r.outputs[0].cosine_min > 0.999 && r.outputs[0].top1_agreement > 0.99,
            "{name} in tract: {:?}",
            r.outputs[0]
        );
        let (a, b) = (common::ort_outputs(&src, &data, 16), common::ort_outputs(&out, &data, 16));
        for (k, v) in &a {
            let mut cmp = prunq::eval::OutputComparison::new();
            cmp.update(&v.to_f32(), &b[k].to_f32());
            assert!(cmp.finish(k).cosine_min > 0.999, "{name} in ORT");
        }
        // Issue 13's floor: within half a point of fp32's accuracy where there are labels (the
        // digits splits; ppocr_cls's are unlabelled and judged by agreement above).
        if name.starts_with("digits") {
            let (fp32, fp16) = (common::accuracy_in_ort(&src, &data), common::accuracy_in_ort(&out, &data));
            assert!(fp16 >= fp32 - 0.005, "{name}: accuracy {fp16} in ORT against fp32's {fp32}");
        }
    }
}

#[test]
fn static_ppocr_rec_reads_three_quarters_of_the_lines_at_a_third_of_the_size() {
    let dir = common::tempdir();
    let out = dir.path().join("rec.onnx");
    let src = common::model("ppocr_rec_v4.onnx");
    let m = quantize_static_file(&src, &common::data("ocr_lines_calib.npz"), &out);
    let ratio = std::fs::metadata(&out).unwrap().len() as f64 / std::fs::metadata(&src).unwrap().len() as f64;
    assert!(ratio <= 0.35, "size ratio {ratio}");
    let ort_exact = common::ocr_exact_lines_in_ort(&out);
    assert!(ort_exact >= 0.75, "ORT exact lines {ort_exact}");
    let tract_exact = common::ocr_exact_lines_in_tract(&m);
    assert!(tract_exact >= 0.75, "tract exact lines {tract_exact}");
}

#[test]
fn dynamic_minilm_with_calibration_beats_onnx_runtime_s_dynamic() {
    let dir = common::tempdir();
    let src = common::model("minilm_l6.onnx");
    let mut m = prunq::onnx::load(&src).unwrap();
    let calib = Dataset::open(common::data("sentences_calib.npz")).unwrap();
    let mut report = QuantReport::default();
    let target = prunq::quant::DEFAULT_FALLBACK_SQNR_DB;
    // The weight type the CLI picks here (uint8 where ONNX Runtime's int8 kernels saturate).
    let options =
        prunq::quant::DynamicOptions { unsigned_weights: common::unsigned_weights_here(), ..Default::default() };
    prunq::quant::quantize_dynamic_with_fallback(&mut m, &options, &calib, target, &mut report, &Silent).unwrap();
    assert!(report.skipped.iter().any(|s| s.reason.starts_with("kept float")), "some layer fell back");
    let out = dir.path().join("dyn.onnx");
    prunq::onnx::save(&m, &out, &Default::default()).unwrap();
    let ratio = std::fs::metadata(&out).unwrap().len() as f64 / std::fs::metadata(&src).unwrap().len() as f64;
    assert!(ratio <= 0.3, "size ratio {ratio}");
    // ONNX Runtime's own quantize_dynamic: cosine 0.993, nearest-neighbour agreement 87.5 %.
    let (cos, nn) = embedding_fidelity_in_ort(&src, &out);
    assert!(cos >= 0.993 && nn >= 0.875, "ORT: cosine {cos}, NN agreement {nn}");
}

#[test]
fn int16_activations_run_in_onnx_runtime_and_are_emulated_exactly_for_tract() {
    let dir = common::tempdir();
    let src = prunq::onnx::load(common::model("digits_vit.onnx")).unwrap();
    let calib = Dataset::open(common::data("digits_calib.npz")).unwrap();
    let test = common::data("digits_test.npz");
    let sqnr = |activation_type, symmetric_activations| {
        let mut m = src.clone();
        let options = prunq::quant::StaticOptions {
            activation_type,
            symmetric_activations,
            fallback_sqnr_db: None,
            ..Default::default()
        };
        prunq::quant::quantize_static(&mut m, &calib, &options, &mut QuantReport::default(), &Silent).unwrap();
        let cmp = prunq::eval::compare(&src, &m, &Dataset::open(&test).unwrap(), &RunOptions::default(), &Silent);
        (m, cmp.unwrap().outputs[0].sqnr_db)
    };
    let (_, u8_sqnr) = sqnr(QType::UInt8, false);
    let (m, s16_sqnr) = sqnr(QType::Int16, true);
    // Measured: 34.4 dB with uint8 activations, 49.4 dB with int16 (weights int8 in both).
    assert!(s16_sqnr > u8_sqnr + 10.0, "int16 {s16_sqnr} dB vs uint8 {u8_sqnr} dB");
    assert!(m.opset_import.iter().any(|o| o.domain.as_deref().unwrap_or("").is_empty() && o.version >= 21));
    let int16_pairs = m
        .graph
        .nodes
        .iter()
        .filter(|n| n.op_type == "QuantizeLinear")
        .filter(|n| m.graph.constant(n.input(2).unwrap()).unwrap().unwrap().dtype == prunq::ir::DataType::INT16)
        .count();
    assert!(int16_pairs >= 10, "{int16_pairs} int16 QuantizeLinear nodes");
    // ONNX Runtime runs the 16-bit Q/DQ natively; prunq's tract run emulates it in float: the graph
    // as written gives the same outputs in both.
    let out = dir.path().join("vit.s16.onnx");
    prunq::onnx::save(&m, &out, &Default::default()).unwrap();
    let tract = common::tract_outputs(&m, &test, 500);
    let unoptimized = common::ort_outputs_with(&out, &test, 500, &["--unoptimized"]);
    common::assert_close("int16 ViT", &unoptimized["output"], &tract["output"]);
    // ONNX Runtime's fused kernels at its default level round differently (measured: 46.2 dB against
    // fp32 instead of 49.4) but still far better than 8 bits, and read the same digits.
    let optimized = common::ort_outputs(&out, &test, 500);
    let mut cmp = prunq::eval::OutputComparison::new();
    cmp.update(&optimized["output"].to_f32(), &tract["output"].to_f32());
    assert!(cmp.finish("output").top1_agreement >= 0.99);
}

#[test]
fn reduce_range_keeps_weights_to_seven_bits_and_the_accuracy() {
    let dir = common::tempdir();
    let mut m = prunq::onnx::load(common::model("digits_cnn.onnx")).unwrap();
    let calib = Dataset::open(common::data("digits_calib.npz")).unwrap();
    let options = prunq::quant::StaticOptions { reduce_range: true, ..Default::default() };
    prunq::quant::quantize_static(&mut m, &calib, &options, &mut QuantReport::default(), &Silent).unwrap();
    let weights: Vec<_> =
        m.graph.initializers.iter().filter(|t| t.dtype == prunq::ir::DataType::INT8 && t.dims.len() > 1).collect();
    assert!(weights.len() >= 4, "{} int8 weights", weights.len());
    for t in weights {
        let q = t.to_array::<i8>().unwrap();
        assert!(q.iter().all(|&v| (-63..=63).contains(&v)), "{} uses more than 7 bits", t.name);
        assert!(q.iter().any(|&v| v.abs() == 63), "{}: the 7-bit range is used to its end", t.name);
    }
    let out = dir.path().join("cnn.rr.onnx");
    prunq::onnx::save(&m, &out, &Default::default()).unwrap();
    let acc = common::accuracy_in_ort(&out, &common::data("digits_test.npz"));
    assert!(0.998 - acc <= 0.004 + 1e-9, "ORT accuracy {acc}");
}

/// The sensitivity trials of static quantization run simulated in one session (tract here, the
/// library's default); the layers they keep float must make the result closer to float than
/// quantizing everything, judged on held-out data.
#[test]
fn static_fallback_trials_are_simulated_and_keep_the_noisiest_layers_float() {
    let src = prunq::onnx::load(common::model("digits_resnet.onnx")).unwrap();
    let (calib, test) = (common::data("digits_calib.npz"), common::data("digits_test.npz"));
    let calib = Dataset::open(calib).unwrap();
    let quantize = |target: Option<f64>| {
        let (mut m, mut report) = (src.clone(), QuantReport::default());
        let options = prunq::quant::StaticOptions { fallback_sqnr_db: target, ..Default::default() };
        prunq::quant::quantize_static(&mut m, &calib, &options, &mut report, &Silent).unwrap();
        (m, report)
    };
    // A target no int8 model meets: the quarter of the groups that is allowed falls back.
    let (fallback, report) = quantize(Some(60.0));
    let kept: Vec<_> = report.skipped.iter().filter(|s| s.reason.starts_with("kept float")).collect();
    assert!(!kept.is_empty(), "something fell back");
    assert!(kept.iter().all(|s| s.reason.contains("simulated on")), "{:?}", kept[0].reason);
    let (everything, _) = quantize(None);
    let test = Dataset::open(test).unwrap();
    let sqnr = |m: &prunq::ir::Model| {
        let r = prunq::eval::compare(&src, m, &test, &Default::default(), &Silent).unwrap();
        r.outputs[0].sqnr_db
    };
    let (with, without) = (sqnr(&fallback), sqnr(&everything));
    // digits_resnet's noise is spread over many layers: a quarter of them float gains 1 dB here.
    assert!(with > without + 0.5, "SQNR with the fallback {with:.1} dB, everything quantized {without:.1} dB");
}

#[test]
fn matmul_nbits_weights_stay_packed_and_compute_what_the_portable_form_does_in_onnx_runtime() {
    use prunq::quant::WeightFormat;
    let dir = common::tempdir();
    let (name, fp32) = ("digits_vit.onnx", 0.968);
    let data = common::data("digits_test.npz");
    let original = prunq::onnx::load(common::model(name)).unwrap();
    let weight_matmuls = original
        .graph
        .nodes
        .iter()
        .filter(|n| n.op_type == "MatMul" && original.graph.constant(&n.inputs[1]).is_some())
        .count();
    assert!(weight_matmuls >= 4, "{weight_matmuls} MatMuls with constant weights");
    for (qtype, symmetric) in [(QType::Int4, true), (QType::Int8, true), (QType::UInt4, false)] {
        let mut outputs = vec![];
        for format in [WeightFormat::Portable, WeightFormat::MatMulNBits] {
            let mut m = original.clone();
            let options = WeightOptions { qtype, symmetric, block_size: Some(32), format, ..Default::default() };
            quantize_weights(&mut m, &options, &mut QuantReport::default()).unwrap();
            let out = dir.path().join(format!("{format:?}.onnx"));
            prunq::onnx::save(&m, &out, &Default::default()).unwrap();
            if format == WeightFormat::MatMulNBits {
                let nbits: Vec<_> = m.graph.nodes.iter().filter(|n| n.op_type == "MatMulNBits").collect();
                assert_eq!(nbits.len(), weight_matmuls, "{qtype:?}: every weight MatMul packed");
                assert!(m.opset_import.iter().any(|o| o.domain.as_deref() == Some("com.microsoft")));
                let bits = qtype.bits() as i64;
                for n in &nbits {
                    assert_eq!(
                        (n.domain.as_str(), n.attr_int("bits"), n.attr_int("block_size")),
                        ("com.microsoft", Some(bits), Some(32))
                    );
                    let (k, big_n) = (n.attr_int("K").unwrap(), n.attr_int("N").unwrap());
                    let b = m.graph.constant(&n.inputs[1]).unwrap().unwrap();
                    assert_eq!(b.dims, [big_n, (k + 31) / 32, 32 * bits / 8], "{}", n.name);
                    assert_eq!(n.inputs.len(), if symmetric { 3 } else { 4 }, "zero points only when asymmetric");
                }
                let ort = common::accuracy_in_ort(&out, &data);
                let floor = if bits == 4 { 0.02 } else { 0.004 };
                assert!(fp32 - ort <= floor + 1e-9, "{qtype:?}: accuracy {ort} in ONNX Runtime");
                // tract 0.23 runs 4-bit MatMulNBits, with the same outputs, and refuses 8-bit naming the op.
                if bits == 4 {
                    let (ort, tract) = (common::ort_outputs(&out, &data, 64), common::tract_outputs(&m, &data, 64));
                    for (k, v) in &ort {
                        common::assert_close(&format!("{qtype:?} {k} in tract"), v, &tract[k]);
                    }
                } else {
                    let options = RunOptions::default();
                    let Err(err) = evaluate(&m, &Dataset::open(&data).unwrap(), &options, &Silent) else {
                        panic!("tract ran 8-bit MatMulNBits")
                    };
                    assert!(err.to_string().contains("MatMulNBits"), "{err}");
                }
            }
            outputs.push(common::ort_outputs(&out, &data, 64));
        }
        // The same rounding (the portable int4 form is symmetric), unpacked at load or inside
        // the kernel: the same outputs.
        if !symmetric {
            continue;
        }
        for (k, v) in &outputs[0] {
            common::assert_close(&format!("{qtype:?} {k}"), v, &outputs[1][k]);
        }
    }
}

#[test]
fn fp16_ppocr_rec_reads_every_line_fp32_reads_in_onnx_runtime() {
    // Checked in ONNX Runtime (the library's default backends list is the process's
    // runtime; the tests run it explicitly). The floor is 0.5 pt, less than one
    // line of 128: no line may be lost. Rounding the weights alone to float16 lost one
    // (82.0 % against 82.8 %); the layers whose float16 weights cost the output most
    // now stay float32, and it reads every line.
    let dir = common::tempdir();
    let src = common::model("ppocr_rec_v4.onnx");
    let mut m = prunq::onnx::load(&src).unwrap();
    let calib = Dataset::open(common::data("ocr_lines_calib.npz")).unwrap();
    let options = prunq::quant::Fp16Options { backends: vec![prunq::runtime::Backend::Ort], ..Default::default() };
    let mut report = QuantReport::default();
    prunq::quant::convert_fp16(&mut m, &options, Some(&calib), &mut report).unwrap();
    let out = dir.path().join("rec_fp16.onnx");
    prunq::onnx::save(&m, &out, &Default::default()).unwrap();
    let (fp32, fp16) = (common::ocr_exact_lines_in_ort(&src), common::ocr_exact_lines_in_ort(&out));
    assert!(fp16 >= fp32 - 1e-9, "exact lines: fp32 {fp32}, fp16 {fp16} ({:?})", report.skipped);
    let weights_kept = report.skipped.iter().filter(|s| s.reason.contains("float16 weights alone cost")).count();
    assert!((1..=8).contains(&weights_kept), "{:?}", report.skipped);
    let ratio = std::fs::metadata(&out).unwrap().len() as f64 / std::fs::metadata(&src).unwrap().len() as f64;
    assert!(ratio < 0.55, "size ratio {ratio}");
}
