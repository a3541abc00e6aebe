//! Post-training algorithms beyond round-to-nearest (issue 15): k-means
//! codebooks, log2 levels and GPTQ, judged in ONNX Runtime and tract on the
//! shared models.

mod common;

use std::path::Path;

use common::{os, prunq_quiet as prunq};

fn quantize(model: &Path, out: &Path, extra: &[&str]) {
    let mut args = vec![os("quantize"), model.as_os_str(), os("-o"), out.as_os_str(), os("--mode"), os("weights")];
    args.extend(extra.iter().map(|s| os(s)));
    args.push(os("--no-latency-check"));
    let r = prunq(&args);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
}

/// `prunq quantize MODEL -o OUT --mode static --calib CALIB EXTRA… --no-latency-check --report`;
/// the report, as JSON.
fn quantize_static(model: &Path, out: &Path, calib: &Path, extra: &[&str]) -> serde_json::Value {
    let report = out.with_extension("json");
    let mut args = vec![os("quantize"), model.as_os_str(), os("-o"), out.as_os_str(), os("--mode"), os("static")];
    args.extend([os("--calib"), calib.as_os_str()]);
    args.extend(extra.iter().map(|s| os(s)));
    args.extend([os("--no-latency-check"), os("--report"), report.as_os_str()]);
    let r = prunq(&args);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap()
}

/// minilm_l6, its test sentences and its calibration sentences.
fn minilm() -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    (common::model("minilm_l6.onnx"), common::data("sentences_test.npz"), common::data("sentences_calib.npz"))
}

/// A comparison's mean cosine and nearest-neighbour agreement.
fn cosine_and_nn(c: &serde_json::Value) -> (f64, f64) {
    (c["cosine_mean"].as_f64().unwrap(), c["nn_agreement"].as_f64().unwrap())
}

/// The first output's comparison with the original in `runtime`, as JSON.
fn compared(runtime: &str, original: &Path, candidate: &Path, data: &Path) -> serde_json::Value {
    let r = prunq(&[
        os("--runtime"),
        os(runtime),
        os("compare"),
        original.as_os_str(),
        candidate.as_os_str(),
        os("--data"),
        data.as_os_str(),
        os("--json"),
    ]);
    assert!(r.status.success(), "{runtime}: {}", String::from_utf8_lossy(&r.stderr));
    serde_json::from_slice::<serde_json::Value>(&r.stdout).unwrap()["outputs"][0].clone()
}

fn size_ratio(a: &Path, b: &Path) -> f64 {
    std::fs::metadata(b).unwrap().len() as f64 / std::fs::metadata(a).unwrap().len() as f64
}

/// minilm_l6 with K = 256 (a shared table per tensor, a scale per row) beats linear int8's
/// quality (cosine 0.9993), and K = 16 (a table per row, indices packed two per byte) holds
/// linear int4's cosine at its size; with calibration data (k-means weighted by activation
/// energy, indices chosen with GPTQ's error feedback, every layer coded) K = 16 reaches 0.975 —
/// the same in both runtimes. With the default fallback (int8 for the layers 4 bits cost most
/// noise per byte) 4-bit stays 4-bit: ≤ 0.2× at cosine ≥ 0.975 (measured 0.17×, 0.996).
#[test]
fn minilm_codebooks_meet_the_floors_in_both_runtimes() {
    let dir = common::tempdir();
    let (model, data) = (common::model("minilm_l6.onnx"), common::data("sentences_test.npz"));
    let calib = common::data("sentences_calib.npz");
    let calibrated = ["--codebook", "16", "--calib", calib.to_str().unwrap(), "--target-sqnr", "0"];
    let mixed = ["--codebook", "16", "--calib", calib.to_str().unwrap()];
    for (name, args, min_cosine, max_ratio) in [
        ("k256", &["--codebook", "256"][..], 0.9995, 0.26),
        ("k16", &["--codebook", "16"], 0.96, 0.16),
        ("k16-calib", &calibrated, 0.975, 0.16),
        ("k16-default-fallback", &mixed, 0.975, 0.2),
    ] {
        let out = dir.path().join(format!("{name}.onnx"));
        quantize(&model, &out, args);
        let ratio = size_ratio(&model, &out);
        assert!(ratio <= max_ratio, "{name}: {ratio:.3}× the size");
        let m = prunq::onnx::load(&out).unwrap();
        assert!(m.graph.nodes.iter().any(|n| n.op_type == "GatherElements"), "{name}: decoded by GatherElements");
        for runtime in ["ort", "tract"] {
            let c = compared(runtime, &model, &out, &data);
            let cosine = c["cosine_mean"].as_f64().unwrap();
            assert!(cosine >= min_cosine, "{name} in {runtime}: cosine {cosine}");
        }
    }
}

#[test]
fn log2_weights_keep_digits_cnn_within_a_point() {
    let dir = common::tempdir();
    let (model, test) = (common::model("digits_cnn.onnx"), common::data("digits_test.npz"));
    let out = dir.path().join("log2.onnx");
    quantize(&model, &out, &["--scheme", "log2", "--bits", "4"]);
    assert!(size_ratio(&model, &out) < 0.16);
    let ort = common::accuracy_in_ort(&out, &test);
    let tract = common::accuracy_in_tract(&prunq::onnx::load(&out).unwrap(), &test);
    assert!(ort >= 0.988 && tract >= 0.988, "log2 4-bit: {ort} in ONNX Runtime, {tract} in tract (fp32 0.998)");
    // The levels really are signed powers of two of each channel's scale.
    let m = prunq::onnx::load(&out).unwrap();
    let table = m.graph.initializers.iter().find(|t| t.name.ends_with("_codebook_table")).unwrap();
    let levels: Vec<f32> = table.to_f32().unwrap().iter().copied().filter(|v| *v != 0.0).collect();
    assert!(levels.iter().all(|v| v.abs().log2().fract() == 0.0), "{levels:?}");
}

/// With calibration data the codebooks weigh values by their input's energy and the
/// sensitivity fallback keeps the costliest layers float; bad values are usage errors.
#[test]
fn codebook_options_are_checked_and_calibration_is_used() {
    let dir = common::tempdir();
    let (model, calib) = (common::model("digits_mlp.onnx"), common::data("digits_calib.npz"));
    let out = dir.path().join("k.onnx");
    let report = dir.path().join("r.json");
    quantize(
        &model,
        &out,
        &["--codebook", "16", "--calib", calib.to_str().unwrap(), "--report", report.to_str().unwrap()],
    );
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let tensors = r["tensors"].as_array().unwrap();
    assert!(tensors.iter().all(|t| t["codebook"] == "k-means, 16 values"), "{tensors:?}");
    assert!(r["quantized_sqnr_db"].is_number(), "the fallback measured the result");
    for bad in [
        &["--codebook", "300"][..],
        &["--codebook", "16", "--scheme", "log2"],
        &["--scheme", "log2", "--mode", "static"],
    ] {
        let mut args = vec![os("quantize"), model.as_os_str(), os("-o"), out.as_os_str()];
        args.extend(bad.iter().map(|s| os(s)));
        let r = prunq(&args);
        assert_eq!(r.status.code(), Some(2), "{bad:?}: {}", String::from_utf8_lossy(&r.stderr));
    }
}

/// GPTQ on minilm_l6 (calibrated on sentences_calib): int4 blocks of 32 clearly beat
/// round-to-nearest at the same 0.14× size (cosine 0.960 → 0.987), and int8 per channel
/// reaches cosine 0.9997 — in both runtimes. With the default fallback (int8 for the layers
/// 4 bits cost most output noise per byte) 4-bit stays 4-bit: ≤ 0.2× at cosine ≥ 0.985
/// (measured 0.17×, 0.996).
#[test]
fn gptq_beats_rounding_to_nearest_on_minilm() {
    let dir = common::tempdir();
    let (model, data, calib) = minilm();
    let calib = calib.to_str().unwrap();
    let int4 = dir.path().join("gptq4.onnx");
    quantize(&model, &int4, &["--bits", "4", "--algorithm", "gptq", "--calib", calib, "--target-sqnr", "0"]);
    assert!(size_ratio(&model, &int4) <= 0.15);
    let m = prunq::onnx::load(&int4).unwrap();
    assert!(m.graph.initializers.iter().any(|t| t.name.ends_with("_int4_packed")), "portable int4");
    let mixed = dir.path().join("gptq4_default.onnx");
    quantize(&model, &mixed, &["--bits", "4", "--algorithm", "gptq", "--calib", calib]);
    let (cosine, _) = cosine_and_nn(&compared("ort", &model, &mixed, &data));
    assert!(
        size_ratio(&model, &mixed) <= 0.2 && cosine >= 0.985,
        "{:.3}×, cosine {cosine}",
        size_ratio(&model, &mixed)
    );
    let int8 = dir.path().join("gptq8.onnx");
    quantize(&model, &int8, &["--algorithm", "gptq", "--calib", calib, "--target-sqnr", "0"]);
    for runtime in ["ort", "tract"] {
        let c = compared(runtime, &model, &int4, &data);
        let (cosine, nn) = cosine_and_nn(&c);
        assert!(cosine >= 0.985 && nn >= 0.85, "int4 GPTQ in {runtime}: cosine {cosine}, NN {nn}");
        let c = compared(runtime, &model, &int8, &data);
        let cosine = c["cosine_mean"].as_f64().unwrap();
        assert!(cosine >= 0.9997, "int8 GPTQ in {runtime}: cosine {cosine}");
    }
    // GPTQ needs the layers' inputs.
    let r = prunq(&[os("quantize"), model.as_os_str(), os("-o"), int8.as_os_str(), os("--algorithm"), os("gptq")]);
    assert_eq!(r.status.code(), Some(2), "{}", String::from_utf8_lossy(&r.stderr));
}

/// ppocr_rec_v4 with every layer int8 (`--target-sqnr 0`) and bias correction (each Conv's mean
/// output drift taken out of its bias, layer by layer) reads at least 78 % of the test lines in
/// both runtimes (lines with their ends trimmed; fp32 88.3 %). Measured on an AVX-512 VNNI Xeon
/// since static folds the affine blocks into their Convs: 79.7 % in ONNX Runtime, 78.9 % in tract —
/// without bias correction 82.8 % / 83.6 % (65.6 % before the fold), so it no longer lifts rec;
/// the test keeps the corrected model reading. The speed search is off: where no int8 kernel
/// beats float (an AVX2-only EPYC) it keeps every layer float, and nothing is left to correct.
#[test]
fn bias_correction_recovers_ppocr_static_without_fallback() {
    let dir = common::tempdir();
    let (model, calib) = (common::model("ppocr_rec_v4.onnx"), common::data("ocr_lines_calib.npz"));
    let out = dir.path().join("rec.onnx");
    let json = quantize_static(&model, &out, &calib, &["--target-sqnr", "0", "--bias-correction"]);
    assert!(json["bias_correction"].as_array().is_some_and(|b| b.len() >= 20), "layers corrected");
    let ort = common::ocr_exact_lines_in_ort(&out);
    let tract = common::ocr_exact_lines_in_tract(&prunq::onnx::load(&out).unwrap());
    assert!(ort >= 0.78 && tract >= 0.78, "exact lines: {ort} in ONNX Runtime, {tract} in tract");
}

/// ppocr_rec_v4 static with the defaults (ranges `auto`, the 23 dB fallback, affine blocks folded)
/// reads ≥ 85 % of the test lines in both runtimes (ends trimmed; fp32 88.3 %; measured 88.3 % in
/// ONNX Runtime, 89.1 % in tract on an AVX-512 VNNI Xeon). The speed search is off, as above
/// (the CLI's default with it reads 88.3 % in ONNX Runtime on that Xeon).
#[test]
fn ppocr_static_with_defaults_reads_85_percent_of_lines() {
    let dir = common::tempdir();
    let (model, calib) = (common::model("ppocr_rec_v4.onnx"), common::data("ocr_lines_calib.npz"));
    let out = dir.path().join("rec.onnx");
    let json = quantize_static(&model, &out, &calib, &[]);
    let notes = json["notes"].as_array().unwrap();
    // The recipe records the choice the note names (percentile since the affine blocks are
    // folded: 10.1 dB against 9.0 with min-max, everything int8; min-max before).
    let said = notes.iter().filter_map(|n| n.as_str()?.strip_prefix("activation ranges: ")).next().expect("said");
    let recorded = json["decided"]["ranges"].as_str().expect("recorded");
    assert!(said.starts_with(if recorded == "minmax" { "min-max" } else { recorded }), "{said} / {recorded}");
    let ort = common::ocr_exact_lines_in_ort(&out);
    let tract = common::ocr_exact_lines_in_tract(&prunq::onnx::load(&out).unwrap());
    assert!(ort >= 0.85 && tract >= 0.85, "exact lines: {ort} in ONNX Runtime, {tract} in tract");
}

/// SmoothQuant before static quantization of minilm_l6 (α 0.6, the float fallback aiming at
/// 25 dB): cosine ≥ 0.998 and nearest-neighbour agreement ≥ 93 % at ≤ 0.26× the size with at
/// most 4 of its 36 weight MatMuls float, where without SmoothQuant static reads 0.9958 / 89.8 %
/// — judged in ONNX Runtime, and run in tract too.
#[test]
fn smoothquant_lifts_minilm_static() {
    let dir = common::tempdir();
    let (model, data, calib) = minilm();
    let out = dir.path().join("smooth.onnx");
    let report = quantize_static(&model, &out, &calib, &["--smooth", "0.6", "--target-sqnr", "25"]);
    assert!(report["notes"].to_string().contains("SmoothQuant"));
    assert!(size_ratio(&model, &out) <= 0.26);
    let groups = report["sensitivity"].as_array().expect("sensitivity measured");
    let layers: Vec<&serde_json::Value> = groups
        .iter()
        .map(|g| (g, g["group"].as_str().unwrap()))
        .filter(|(_, l)| l.ends_with("/MatMul"))
        .map(|(g, _)| g)
        .collect();
    let float = layers.iter().filter(|g| g["kept_float"].as_bool().unwrap()).count();
    assert_eq!(layers.len(), 36, "the weight MatMuls judged one by one");
    assert!(float <= 4, "{float} of 36 weight MatMuls kept float");
    let c = compared("ort", &model, &out, &data);
    let (cosine, nn) = cosine_and_nn(&c);
    assert!(cosine >= 0.998 && nn >= 0.93, "SmoothQuant static in ONNX Runtime: cosine {cosine}, NN {nn}");
    let c = compared("tract", &model, &out, &data);
    assert!(c["cosine_mean"].as_f64().unwrap() >= 0.99, "in tract: {c}");
}

/// Static's default SmoothQuant (`auto`) smooths only activations with outlier channels: on
/// minilm_l6 the LayerNorm outputs that feed Q/K/V and the FFN at α ≤ 0.6, and at 0.7–0.9 only
/// activations no α up to 0.6 smooths (GELU outputs, attention contexts); on digits_vit nothing.
/// minilm then reads cosine ≥ 0.997 and NN ≥ 93 % in ONNX Runtime (measured 0.9978 / 94.1 % on an
/// AVX-512 VNNI Xeon), above `--smooth off` (0.9967 / 92.2 %).
#[test]
fn static_default_smooths_only_outlier_activations() {
    let dir = common::tempdir();
    let (model, data, calib) = minilm();
    let (out, off) = (dir.path().join("default.onnx"), dir.path().join("off.onnx"));
    let report = quantize_static(&model, &out, &calib, &[]);
    let smoothed: Vec<(&str, f64)> = report["smoothing"]
        .as_array()
        .expect("smoothing")
        .iter()
        .map(|s| (s["activation"].as_str().unwrap(), s["alpha"].as_f64().unwrap()))
        .collect();
    let layer_norms = smoothed.iter().filter(|(a, _)| a.contains("LayerNorm")).count();
    assert!(layer_norms >= 7, "{smoothed:?}");
    // Past 0.6 only where nothing up to 0.6 smoothed: never a LayerNorm output here.
    assert!(smoothed.iter().all(|(a, alpha)| (*alpha <= 0.6) == a.contains("LayerNorm")), "{smoothed:?}");
    assert!(smoothed.iter().any(|(a, _)| a.contains("intermediate_act_fn")), "a GELU output past 0.6: {smoothed:?}");
    let unsmoothed = quantize_static(&model, &off, &calib, &["--smooth", "off"]);
    assert!(unsmoothed["smoothing"].as_array().is_none_or(|s| s.is_empty()));
    let (cosine, nn) = cosine_and_nn(&compared("ort", &model, &out, &data));
    let (cosine_off, _) = cosine_and_nn(&compared("ort", &model, &off, &data));
    assert!(cosine >= 0.997 && nn >= 0.93 && cosine > cosine_off, "{cosine} / {nn}; off: {cosine_off}");
    let (vit, calib) = (common::model("digits_vit.onnx"), common::data("digits_calib.npz"));
    let report = quantize_static(&vit, &dir.path().join("vit.onnx"), &calib, &[]);
    assert!(report["smoothing"].as_array().is_none_or(|s| s.is_empty()), "{}", report["smoothing"]);
}

/// int8 weight-only minilm_l6 at NNCF's `compress_weights` quality (0.9997 / 98.8 %): affine
/// per-channel weights rounded by GPTQ — cosine ≥ 0.9997 and nearest-neighbour agreement
/// ≥ 98 % in both runtimes (symmetric round-to-nearest reads 0.9995 / 97.7 %).
#[test]
fn affine_gptq_int8_weights_keep_minilm_at_the_peer_quality() {
    let dir = common::tempdir();
    let (model, data, calib) = minilm();
    let out = dir.path().join("w8.onnx");
    quantize(
        &model,
        &out,
        &["--asymmetric", "--algorithm", "gptq", "--calib", calib.to_str().unwrap(), "--target-sqnr", "0"],
    );
    assert!(size_ratio(&model, &out) <= 0.26);
    for runtime in ["ort", "tract"] {
        let c = compared(runtime, &model, &out, &data);
        let (cosine, nn) = cosine_and_nn(&c);
        assert!(cosine >= 0.9997 && nn >= 0.98, "{runtime}: cosine {cosine}, NN {nn}");
    }
}

/// GPTQ inside static quantization (`--mode static --algorithm gptq`): every Conv/Gemm weight of
/// digits_cnn rounded by GPTQ onto the grid round-to-nearest would use (so the written integers
/// differ from round-to-nearest's), everything int8, accuracy within half a point of fp32 in
/// both runtimes.
#[test]
fn gptq_rounds_the_weights_of_static_quantization() {
    let dir = common::tempdir();
    let (model, data, calib) =
        (common::model("digits_cnn.onnx"), common::data("digits_test.npz"), common::data("digits_calib.npz"));
    let mut written = vec![];
    for algorithm in ["rtn", "gptq"] {
        let out = dir.path().join(format!("{algorithm}.onnx"));
        let report = quantize_static(&model, &out, &calib, &["--algorithm", algorithm, "--target-sqnr", "0"]);
        let gptq = report["tensors"].as_array().unwrap().iter().filter(|t| t["gptq"] == true).count();
        assert_eq!(gptq, if algorithm == "gptq" { 6 } else { 0 }, "{algorithm}: weights rounded by GPTQ");
        let ort = common::accuracy_in_ort(&out, &data);
        let tract = common::accuracy_in_tract(&prunq::onnx::load(&out).unwrap(), &data);
        assert!(ort >= 0.993 && tract >= 0.993, "{algorithm}: accuracy {ort} in ONNX Runtime, {tract} in tract");
        written.push(std::fs::read(&out).unwrap());
    }
    assert_ne!(written[0], written[1], "GPTQ rounds some weights differently");
}

/// Mixed precision per layer, the default: 4-bit weights where they hold, int8 where the
/// fallback measures they do not. On digits_vit at 30 dB the float fallback (`--fallback-float`)
/// keeps layers float; by default every weight is quantized, smaller, within 0.5 pt of fp32 in
/// both runtimes.
#[test]
fn int8_fallback_mixes_weight_formats_per_layer() {
    let dir = common::tempdir();
    let (model, calib, test) =
        (common::model("digits_vit.onnx"), common::data("digits_calib.npz"), common::data("digits_test.npz"));
    let (float, mixed) = (dir.path().join("float.onnx"), dir.path().join("mixed.onnx"));
    let run = |out: &Path, extra: &[&str]| -> serde_json::Value {
        let report = out.with_extension("json");
        let args = ["--bits", "4", "--calib", calib.to_str().unwrap(), "--target-sqnr", "30", "--report"];
        let args: Vec<&str> =
            args.iter().copied().chain([report.to_str().unwrap()]).chain(extra.iter().copied()).collect();
        quantize(&model, out, &args);
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap()
    };
    let float_report = run(&float, &["--fallback-float"]);
    let mixed_report = run(&mixed, &[]);
    let kept = |r: &serde_json::Value| {
        r["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["reason"].as_str().unwrap().starts_with("kept float"))
            .count()
    };
    assert!(kept(&float_report) > 0, "the float fallback kept nothing: the test proves nothing");
    assert_eq!(kept(&mixed_report), 0, "{}", mixed_report["skipped"]);
    let int8 = mixed_report["tensors"].as_array().unwrap().iter().filter(|t| t["qtype"] == "int8").count();
    assert!(int8 >= kept(&float_report), "{}", mixed_report["tensors"]);
    assert!(size_ratio(&float, &mixed) < 0.85, "mixed {:.3}× the float fallback's size", size_ratio(&float, &mixed));
    let fp32 = common::accuracy_in_ort(&model, &test);
    let ort = common::accuracy_in_ort(&mixed, &test);
    let tract = common::accuracy_in_tract(&prunq::onnx::load(&mixed).unwrap(), &test);
    assert!(ort >= fp32 - 0.005 && tract >= fp32 - 0.005, "{ort} in ONNX Runtime, {tract} in tract; fp32 {fp32}");
}
