//! LiteRT: `.tflite` files written from the IR and run in LiteRT (libLiteRt.so of the
//! ai-edge-litert wheel in the test venv), judged against ONNX Runtime on the same inputs.

mod common;

use prunq::data::{Array, Dataset};
use prunq::litert::{convert, ConvertOptions};
use prunq::runtime::{feed_inputs, Backend, Session, SessionOptions};
use std::collections::BTreeMap;
use std::path::Path;

/// The first `rows` rows of `data` for `model`, one row per batch (the converted model's batch).
fn rows(model: &prunq::ir::Model, data: &Path, rows: usize) -> Vec<Vec<Array>> {
    let data = Dataset::open(data).unwrap();
    let bound = data.bind(&feed_inputs(model), None).unwrap();
    bound.batches_upto(1, rows).map(|b| b.unwrap().1).collect()
}

/// Converts `model` at the size of `batches`' rows, runs it in LiteRT and the original in ONNX
/// Runtime, and asserts every output within `1e-4` of the output's largest magnitude.
fn assert_converts_exactly(what: &str, model: &prunq::ir::Model, batches: &[Vec<Array>]) -> usize {
    let shapes: BTreeMap<String, Vec<usize>> =
        feed_inputs(model).into_iter().zip(&batches[0]).map(|(i, a)| (i.name, a.shape().to_vec())).collect();
    let converted = convert(model, &ConvertOptions { input_shapes: shapes, ..Default::default() })
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let feeds: Vec<String> = feed_inputs(model).into_iter().map(|i| i.name).collect();
    let lite = Session::litert(converted.bytes.clone(), Some(&feeds), &SessionOptions::default())
        .unwrap_or_else(|e| panic!("{what}: LiteRT: {e}"));
    let ort = Session::new(model, &SessionOptions { backend: Some(Backend::Ort), ..Default::default() }).unwrap();
    for batch in batches {
        let (a, b) = (ort.run(batch).unwrap(), lite.run(batch).unwrap());
        for ((x, y), name) in a.iter().zip(&b).zip(&ort.outputs) {
            let (x, y) = (x.to_f32(), y.to_f32());
            assert_eq!(x.shape(), y.shape(), "{what} {name}");
            let scale = x.iter().fold(0f32, |m, v| m.max(v.abs())).max(f32::MIN_POSITIVE);
            let worst = x.iter().zip(&y).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
            assert!(worst <= 1e-4 * scale, "{what} {name}: max |Δ| {worst} against a scale of {scale}");
        }
    }
    converted.bytes.len()
}

#[test]
fn every_shared_model_converts_within_1e4_of_onnx_runtime() {
    for name in common::ALL_MODELS {
        let model = prunq::onnx::load(common::model(name)).unwrap();
        let batches = rows(&model, &common::data_for(name), 4);
        let bytes = assert_converts_exactly(name, &model, &batches);
        // Float32 weights either way: the file is the model's size, give or take its graph (ONNX's
        // graph is a good part of a small model's file: digits_vit's .tflite is 0.94× its ONNX file).
        let onnx = std::fs::metadata(common::model(name)).unwrap().len() as f64;
        let ratio = bytes as f64 / onnx;
        assert!((0.85..1.1).contains(&ratio), "{name}: {bytes} bytes against {onnx}");
    }
}

#[test]
fn layout_traps_convert_exactly() {
    let dir = common::tempdir();
    common::ort("litert_layouts.py", &[dir.path().as_os_str()]);
    let mut seen = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let model = prunq::onnx::load(&path).unwrap();
        let shape: Vec<usize> = feed_inputs(&model)[0]
            .shape()
            .unwrap()
            .iter()
            .map(|d| match d {
                prunq::ir::Dim::Fixed(n) => *n as usize,
                _ => 1,
            })
            .collect();
        let batches: Vec<Vec<Array>> = (0..3)
            .map(|k| {
                let n: usize = shape.iter().product();
                let values = (0..n).map(|i| ((i * 7 + k * 13) % 23) as f32 / 11.0 - 1.0).collect();
                vec![Array::F32(ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&shape), values).unwrap())]
            })
            .collect();
        assert_converts_exactly(&path.display().to_string(), &model, &batches);
        seen += 1;
    }
    assert_eq!(seen, 7);
}

fn prunq(args: &[&std::ffi::OsStr]) -> std::process::Output {
    common::prunq_quiet(args)
}

/// `prunq quantize MODEL -o OUT --mode MODE --calib CALIB` with `extra` options.
fn quantize(model: &Path, out: &Path, mode: &str, calib: &Path, extra: &[&std::ffi::OsStr]) -> std::process::Output {
    use common::os;
    let args = [os("quantize"), model.as_os_str(), os("-o"), out.as_os_str(), os("--mode"), os(mode), os("--calib")];
    let args: Vec<&std::ffi::OsStr> =
        args.into_iter().chain([calib.as_os_str()]).chain(extra.iter().copied()).collect();
    prunq(&args)
}

#[test]
fn convert_checks_in_litert_before_writing_and_is_deterministic() {
    use common::os;
    let dir = common::tempdir();
    let (model, test) = (common::model("digits_cnn.onnx"), common::data("digits_test.npz"));
    let out = dir.path().join("cnn.tflite");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_prunq"))
        .args([os("convert"), model.as_os_str(), os("-o"), out.as_os_str(), os("--val"), test.as_os_str()])
        .env("VIRTUAL_ENV", common::python().parent().and_then(Path::parent).unwrap())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{said}{}", String::from_utf8_lossy(&run.stderr));
    assert!(
        said.contains(
            "quality on 32 rows of the validation data in litert vs onnxruntime: output 'output': top-1 agreement 100.00 %"
        ),
        "{said}"
    );
    // LiteRT's own INFO lines stay off the terminal.
    assert!(!String::from_utf8_lossy(&run.stderr).contains("XNNPACK"), "{}", String::from_utf8_lossy(&run.stderr));
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(&bytes[4..8], b"TFL3");
    let again = dir.path().join("again.tflite");
    assert!(prunq(&[os("convert"), model.as_os_str(), os("-o"), again.as_os_str()]).status.success());
    assert_eq!(bytes, std::fs::read(&again).unwrap(), "same input and options, same bytes");

    // The written file is judged, evaluated and timed beside the ONNX model, in LiteRT.
    let run = prunq(&[os("compare"), model.as_os_str(), out.as_os_str(), os("--data"), test.as_os_str()]);
    let table = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(table.contains("candidate in litert") && table.contains("100.00 %"), "{table}");
    let run = prunq(&[os("eval"), out.as_os_str(), os("--data"), test.as_os_str(), os("--labels"), os("label")]);
    let said = String::from_utf8_lossy(&run.stdout);
    assert!(said.contains("litert") && said.contains("accuracy    99.80 %"), "{said}");
    let run = prunq(&[
        os("bench"),
        model.as_os_str(),
        out.as_os_str(),
        os("--data"),
        test.as_os_str(),
        os("--runs"),
        os("5"),
    ]);
    let said = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success() && said.contains("cnn.tflite (in litert)"), "{said}");

    // An op without a LiteRT form: refused naming the node and the op, nothing written.
    let mut odd = prunq::onnx::load(common::model("digits_mlp.onnx")).unwrap();
    let relu = odd.graph.nodes.iter_mut().find(|n| n.op_type == "Relu").unwrap();
    relu.op_type = "Softsign".into();
    let label = relu.label();
    let odd_path = dir.path().join("odd.onnx");
    prunq::onnx::save(&odd, &odd_path, &Default::default()).unwrap();
    let refused = dir.path().join("odd.tflite");
    let run = prunq(&[os("convert"), odd_path.as_os_str(), os("-o"), refused.as_os_str()]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("node {label} (Softsign): Softsign has no LiteRT mapping")), "{err}");
    assert!(!refused.exists());

    // Dynamic sizes besides the batch need a size: said, with the way to give one.
    let rec = common::model("ppocr_rec_v4.onnx");
    let run = prunq(&[os("convert"), rec.as_os_str(), os("-o"), dir.path().join("rec.tflite").as_os_str()]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{err}");
    assert!(err.contains("input x has a dynamic size on axis 2") && err.contains("input-shape x="), "{err}");
}

#[test]
fn fp16_halves_the_file_and_keeps_the_outputs() {
    for (name, min_db) in [("digits_cnn.onnx", 60.0), ("ppocr_rec_v4.onnx", 35.0), ("minilm_l6.onnx", 60.0)] {
        let model = prunq::onnx::load(common::model(name)).unwrap();
        let batches = rows(&model, &common::data_for(name), 4);
        let shapes =
            feed_inputs(&model).into_iter().zip(&batches[0]).map(|(i, a)| (i.name, a.shape().to_vec())).collect();
        let full = convert(&model, &ConvertOptions { input_shapes: shapes, ..Default::default() }).unwrap();
        let options = ConvertOptions { input_shapes: full.input_shapes.clone(), fp16: true, ..Default::default() };
        let half = convert(&model, &options).unwrap();
        let ratio = half.bytes.len() as f64 / full.bytes.len() as f64;
        assert!(ratio < 0.52, "{name}: fp16 file {ratio:.3}× the float32 one");
        let check = prunq::eval::check_converted(&model, &half.bytes, &batches, Backend::Ort, Some(4)).unwrap();
        for o in &check.outputs {
            assert!(o.sqnr_db >= min_db && o.turned_non_finite == 0, "{name}: {}", o.quality());
        }
    }
}

/// Top-1 accuracy of a LiteRT model on a labelled .npz, through the library.
fn litert_accuracy(bytes: &[u8], data: &Path) -> f64 {
    let data = Dataset::open(data).unwrap();
    let options = prunq::eval::RunOptions { labels: Some("label".into()), ..Default::default() };
    prunq::eval::evaluate(prunq::runtime::Runnable::LiteRt(bytes), &data, &options, &prunq::measure::Silent)
        .unwrap()
        .accuracy
        .unwrap()
}

/// How many of a LiteRT model's tensors are int8.
fn int8_tensors(bytes: &[u8]) -> usize {
    use prunq_litert_schema::planus::ReadAsRoot;
    let model = prunq_litert_schema::ModelRef::read_as_root(bytes).unwrap();
    let graph = model.subgraphs().unwrap().unwrap().get(0).unwrap().unwrap();
    graph
        .tensors()
        .unwrap()
        .unwrap()
        .iter()
        .filter(|t| t.as_ref().unwrap().type_().unwrap() == prunq_litert_schema::TensorType::Int8)
        .count()
}

#[test]
fn static_int8_keeps_the_digits_accuracy_in_litert() {
    use common::os;
    let dir = common::tempdir();
    let (calib, test) = (common::data("digits_calib.npz"), common::data("digits_test.npz"));
    for name in ["digits_cnn", "digits_resnet"] {
        let model = common::model(&format!("{name}.onnx"));
        // In one step: quantize writes the .tflite, checked and timed in LiteRT.
        let out = dir.path().join(format!("{name}.int8.tflite"));
        let run = quantize(&model, &out, "static", &calib, &[os("--val"), test.as_os_str()]);
        let said = String::from_utf8_lossy(&run.stdout);
        assert!(run.status.success(), "{said}{}", String::from_utf8_lossy(&run.stderr));
        assert!(said.contains("in litert vs onnxruntime") && said.contains("; litert "), "{said}");
        // The fallback's choice was judged in LiteRT as well, not only in ONNX Runtime.
        let checked = |l: &str| l.contains("checked in LiteRT") || l.contains("meets the target in LiteRT too");
        assert!(said.lines().any(|l| l.starts_with("note:") && checked(l)), "{said}");
        let int8 = std::fs::read(&out).unwrap();
        let float = convert(&prunq::onnx::load(&model).unwrap(), &ConvertOptions::default()).unwrap().bytes;
        let (a8, a32) = (litert_accuracy(&int8, &test), litert_accuracy(&float, &test));
        assert!(a8 >= a32 - 0.005, "{name}: int8 {a8} against float32 {a32} in LiteRT");
        assert!(int8_tensors(&int8) >= 10, "{name}: {} int8 tensors", int8_tensors(&int8));
        assert!(
            (int8.len() as f64) < 0.45 * float.len() as f64,
            "{name}: {} bytes against {}",
            int8.len(),
            float.len()
        );
    }
    // LiteRT's int8 kernels take int8 weights: uint8 ones (ONNX Runtime's remedy on x86 without
    // VNNI, chosen by default there for ONNX outputs) are refused for a .tflite, naming why.
    let model = common::model("digits_mlp.onnx");
    let out = dir.path().join("mlp.tflite");
    let run = quantize(&model, &out, "static", &calib, &[os("--weight-type"), os("uint8")]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{err}");
    assert!(err.contains("LiteRT's int8 kernels take int8 weights") && !out.exists(), "{err}");
}

#[test]
fn static_int8_ppocr_rec_reads_the_lines_in_litert() {
    let dir = common::tempdir();
    let (calib, test) = (common::data("ocr_lines_calib.npz"), common::data("ocr_lines_test.npz"));
    let rec = common::model("ppocr_rec_v4.onnx");
    let qdq = dir.path().join("rec.int8.onnx");
    let run = quantize(&rec, &qdq, "static", &calib, &[]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let original = prunq::onnx::load(&rec).unwrap();
    let options =
        ConvertOptions { input_shapes: [("x".to_string(), vec![1, 3, 48, 320])].into(), ..Default::default() };
    let bytes = convert(&prunq::onnx::load(&qdq).unwrap(), &options).unwrap().bytes;
    assert!(int8_tensors(&bytes) > 50);
    let session = Session::litert(bytes, None, &SessionOptions::default()).unwrap();
    let decoder = prunq::eval::CtcDecoder::from_model(&original).unwrap();
    let texts: Vec<String> =
        std::fs::read_to_string(common::data("ocr_lines_test.txt")).unwrap().lines().map(str::to_string).collect();
    let mut exact = 0;
    for (k, batch) in rows(&original, &test, 128).iter().enumerate() {
        let read = decoder.decode(&session.run(batch).unwrap()[0]).unwrap();
        exact += usize::from(prunq::eval::score_line(&read[0], &texts[k]).0);
    }
    let share = exact as f64 / texts.len() as f64;
    eprintln!("ppocr_rec_v4 static int8 in LiteRT: {:.1} % exact lines", 100.0 * share);
    assert!(share >= 0.80, "{:.1} % exact lines", 100.0 * share);
}

#[test]
fn runtime_litert_runs_onnx_models_converted() {
    use common::os;
    let (rec, test, texts) =
        (common::model("ppocr_rec_v4.onnx"), common::data("ocr_lines_test.npz"), common::data("ocr_lines_test.txt"));
    let eval = |runtime: &str| {
        let run = prunq(&[
            os("--runtime"),
            os(runtime),
            os("eval"),
            rec.as_os_str(),
            os("--data"),
            test.as_os_str(),
            os("--text"),
            texts.as_os_str(),
        ]);
        let said = String::from_utf8_lossy(&run.stdout).to_string();
        assert!(run.status.success(), "{said}{}", String::from_utf8_lossy(&run.stderr));
        said
    };
    // Converted at the data's size, run in LiteRT, the lines decoded with the alphabet the
    // converter carried into the .tflite's metadata: the lines ONNX Runtime reads.
    let (litert, ort) = (eval("litert"), eval("ort"));
    let lines = |s: &str| s.lines().find(|l| l.starts_with("exact lines")).map(str::to_string);
    assert!(litert.contains("litert 2.") && litert.contains("batch size 1"), "{litert}");
    assert!(lines(&litert).is_some() && lines(&litert) == lines(&ort), "{litert}\n{ort}");

    let mlp = common::model("digits_mlp.onnx");
    let digits = common::data("digits_test.npz");
    let run = prunq(&[
        os("--runtime"),
        os("litert"),
        os("bench"),
        mlp.as_os_str(),
        os("--data"),
        digits.as_os_str(),
        os("--runs"),
        os("3"),
    ]);
    let said = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success() && said.starts_with("litert 2."), "{said}");
    // A writing command checks in LiteRT only what it writes as LiteRT.
    let dir = common::tempdir();
    let onnx_out = dir.path().join("mlp.onnx");
    let run = prunq(&[os("--runtime"), os("litert"), os("quantize"), mlp.as_os_str(), os("-o"), onnx_out.as_os_str()]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{err}");
    assert!(err.contains("name it with .tflite"), "{err}");
}

#[test]
fn optimize_judges_and_times_candidates_as_tflite_files() {
    use common::os;
    let dir = common::tempdir();
    let (model, calib, test) =
        (common::model("digits_cnn.onnx"), common::data("digits_calib.npz"), common::data("digits_test.npz"));
    let (out, recipe) = (dir.path().join("cnn.tflite"), dir.path().join("r.toml"));
    let run = prunq(&[
        os("optimize"),
        model.as_os_str(),
        os("-o"),
        out.as_os_str(),
        os("--calib"),
        calib.as_os_str(),
        os("--val"),
        test.as_os_str(),
        os("--time-budget"),
        os("20s"),
        os("--save-recipe"),
        recipe.as_os_str(),
    ]);
    let said = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{said}{}", String::from_utf8_lossy(&run.stderr));
    // Only what a LiteRT model holds was tried, each candidate measured there.
    assert!(said.contains("dynamic, 4-bit, codebook and fp16 quantization were not tried"), "{said}");
    assert!(!said.contains("trying dynamic") && said.contains("trying static"), "{said}");
    assert!(said.contains("; measured in litert 2."), "{said}");
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(&bytes[4..8], b"TFL3");
    // The winner keeps the default budget (one point of accuracy) in LiteRT.
    let float = convert(&prunq::onnx::load(&model).unwrap(), &ConvertOptions::default()).unwrap().bytes;
    let (won, original) = (litert_accuracy(&bytes, &test), litert_accuracy(&float, &test));
    assert!(won >= original - 0.01, "{won} against {original}");
    // Its recipe replays to the same file when `apply` writes a .tflite too (its quantize steps
    // then write what the converter reads, as optimize's did).
    let again = common::replayed(&recipe, &model, &dir.path().join("again.tflite"), &calib);
    assert!(again == bytes, "apply of the saved recipe differs from optimize's .tflite");
}

#[test]
fn minilm_int8_tflite_keeps_its_cosine_with_dynamic_range_layers() {
    use common::os;
    let dir = common::tempdir();
    let (model, calib, test) =
        (common::model("minilm_l6.onnx"), common::data("sentences_calib.npz"), common::data("sentences_test.npz"));
    for mode in ["static", "weights"] {
        let (out, report) = (dir.path().join(format!("{mode}.tflite")), dir.path().join(format!("{mode}.json")));
        let run = quantize(
            &model,
            &out,
            mode,
            &calib,
            &[os("--val"), test.as_os_str(), os("--report"), report.as_os_str(), os("--no-latency-check")],
        );
        let said = String::from_utf8_lossy(&run.stdout);
        assert!(run.status.success(), "{said}{}", String::from_utf8_lossy(&run.stderr));
        // The layers left float compute from their int8 weights in LiteRT's dynamic-range form,
        // said, and the embedding keeps the floor (cosine ≥ 0.99 with the float model).
        assert!(
            said.contains("fully connected layers with float activations and int8 weights run in LiteRT's"),
            "{said}"
        );
        let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        let cosine = r["comparison"]["outputs"][0]["cosine_mean"].as_f64().unwrap();
        assert!(cosine >= 0.99, "{mode}: cosine {cosine}");
        let bytes = std::fs::metadata(&out).unwrap().len() as f64;
        let onnx = std::fs::metadata(&model).unwrap().len() as f64;
        assert!(bytes < 0.3 * onnx, "{mode}: {bytes} bytes against {onnx}");
    }
}

/// A MatMul quantized at run time (DynamicQuantizeLinear → MatMulInteger → Cast → Mul by the two
/// scales, as `--mode dynamic` and static's dynamic-MatMul trials write it) is LiteRT's
/// dynamic-range FULLY_CONNECTED: the same computation with a per-row activation scale, so the
/// converted model follows ONNX Runtime's closely; any other reader of its output is refused,
/// naming it.
#[test]
fn dynamic_matmuls_become_dynamic_range_fully_connected() {
    use common::os;
    let dir = common::tempdir();
    let (model, test) = (common::model("digits_mlp.onnx"), common::data("digits_test.npz"));
    let out = dir.path().join("mlp.dynamic.onnx");
    let run = prunq(&[
        os("quantize"),
        model.as_os_str(),
        os("-o"),
        out.as_os_str(),
        os("--mode"),
        os("dynamic"),
        os("--no-latency-check"),
    ]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let dynamic = prunq::onnx::load(&out).unwrap();
    let batches = rows(&dynamic, &test, 64);
    let shapes: BTreeMap<String, Vec<usize>> =
        feed_inputs(&dynamic).into_iter().zip(&batches[0]).map(|(i, a)| (i.name, a.shape().to_vec())).collect();
    let options = ConvertOptions { input_shapes: shapes, ..Default::default() };
    let converted = convert(&dynamic, &options).unwrap();
    assert_eq!(converted.dynamic_range_layers, 3);
    let lite = Session::litert(converted.bytes, None, &SessionOptions::default()).unwrap();
    let ort = Session::new(&dynamic, &SessionOptions { backend: Some(Backend::Ort), ..Default::default() }).unwrap();
    let (mut signal, mut noise, mut agree) = (0f64, 0f64, 0);
    for batch in &batches {
        let (a, b) = (ort.run(batch).unwrap()[0].to_f32(), lite.run(batch).unwrap()[0].to_f32());
        signal += a.iter().map(|v| f64::from(v * v)).sum::<f64>();
        noise += a.iter().zip(&b).map(|(p, q)| f64::from((p - q) * (p - q))).sum::<f64>();
        agree += usize::from(prunq::eval::argmax(a.iter()) == prunq::eval::argmax(b.iter()));
    }
    let sqnr = 10.0 * (signal / noise).log10();
    assert!(sqnr >= 30.0 && agree >= 63, "LiteRT against ONNX Runtime: {sqnr:.1} dB, {agree} of 64 agree");
    let mut odd = dynamic.clone();
    let k = odd.graph.nodes.iter().position(|n| n.op_type == "MatMulInteger").unwrap();
    odd.graph.nodes[k].op_type = "ConvInteger".into();
    let Err(err) = convert(&odd, &options) else { panic!("a DynamicQuantizeLinear read by ConvInteger converted") };
    let err = err.to_string();
    assert!(err.contains("DynamicQuantizeLinear is converted only where it feeds MatMulInteger"), "{err}");
    assert!(err.contains(&odd.graph.nodes[k].label()), "{err}");
}
