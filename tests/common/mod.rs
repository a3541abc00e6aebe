//! Helpers shared by the integration tests: where the shared models and data
//! are, and a Python with ONNX Runtime to cross-check outputs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// `../shared` beside the project root (or `$PRUNQ_SHARED`).
pub fn shared() -> PathBuf {
    std::env::var_os("PRUNQ_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"))
}

pub fn model(name: &str) -> PathBuf {
    shared().join("models").join(name)
}

pub fn data(name: &str) -> PathBuf {
    shared().join("data").join(name)
}

pub const ALL_MODELS: [&str; 7] = [
    "digits_mlp.onnx",
    "digits_cnn.onnx",
    "digits_resnet.onnx",
    "digits_vit.onnx",
    "ppocr_cls_v2.onnx",
    "ppocr_rec_v4.onnx",
    "minilm_l6.onnx",
];

/// The Python that has onnxruntime: `$PRUNQ_PYTHON`, else the project's `.venv`.
pub fn python() -> PathBuf {
    std::env::var_os("PRUNQ_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"))
}

/// Runs `tests/ort/<script>` with ONNX Runtime; panics with its stderr on failure.
pub fn ort(script: &str, args: &[&std::ffi::OsStr]) -> String {
    let py = python();
    assert!(
        py.exists(),
        "{} not found: run `bash scripts/test` (it creates the venv) or set PRUNQ_PYTHON",
        py.display()
    );
    let out = Command::new(&py)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ort").join(script))
        .args(args)
        .output()
        .expect("python runs");
    assert!(out.status.success(), "{script} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether static and dynamic weights are uint8 here by default (what the CLI's
/// `--weight-type auto` chooses): on x86 without VNNI ONNX Runtime's u8×s8
/// kernels saturate on int8 weights (measured on an AVX2-only EPYC: digits_cnn
/// static 99.8 → 98.4 % in ORT, exact in tract), its u8×u8 kernels do not.
pub fn unsigned_weights_here() -> bool {
    prunq::runtime::int8_pairs_saturate()
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary folder")
}

/// Outputs of `model` in ONNX Runtime on the first `rows` rows of `data`, by output name.
pub fn ort_outputs(model: &Path, data: &Path, rows: usize) -> std::collections::BTreeMap<String, prunq::data::Array> {
    ort_outputs_with(model, data, rows, &[])
}

/// [`ort_outputs`] with more `run.py` flags (e.g. `--unoptimized`).
pub fn ort_outputs_with(
    model: &Path,
    data: &Path,
    rows: usize,
    flags: &[&str],
) -> std::collections::BTreeMap<String, prunq::data::Array> {
    let dir = tempdir();
    let out = dir.path().join("out.npz");
    let rows = rows.to_string();
    let mut args = vec![model.as_os_str(), data.as_os_str(), out.as_os_str(), "--rows".as_ref(), rows.as_ref()];
    args.extend(flags.iter().map(|f| std::ffi::OsStr::new(*f)));
    ort("run.py", &args);
    prunq::data::npz::read(&out).expect("run.py wrote an npz")
}

/// Outputs of `model` in tract on the first `rows` rows of `data`, by output name.
pub fn tract_outputs(
    model: &prunq::ir::Model,
    data: &Path,
    rows: usize,
) -> std::collections::BTreeMap<String, prunq::data::Array> {
    let ds = prunq::data::Dataset::open(data).expect("data opens");
    let bound = ds.bind(&prunq::runtime::feed_inputs(model), None).expect("data fits the model");
    let (_, inputs) = bound.batches(rows).next().expect("data has rows").expect("data decodes");
    let options =
        prunq::runtime::SessionOptions { backend: Some(prunq::runtime::Backend::Tract), ..Default::default() };
    let session = prunq::runtime::Session::new(model, &options).expect("tract loads the model");
    let outputs = session.run(&inputs).expect("tract runs the model");
    session.outputs.iter().cloned().zip(outputs).collect()
}

/// The data set each shared model is run on in tests.
pub fn data_for(model: &str) -> PathBuf {
    data(match model {
        m if m.starts_with("digits") => "digits_test.npz",
        "ppocr_cls_v2.onnx" => "ocr_cls_test.npz",
        "ppocr_rec_v4.onnx" => "ocr_lines_test.npz",
        _ => "sentences_test.npz",
    })
}

/// Asserts two runtimes' outputs agree to float rounding: cosine ≥ 0.99999 per
/// sample and max |Δ| within 1e-3 of the output's range.
pub fn assert_close(what: &str, a: &prunq::data::Array, b: &prunq::data::Array) {
    let (a, b) = (a.to_f32(), b.to_f32());
    assert_eq!(a.shape(), b.shape(), "{what}: shapes differ");
    let mut cmp = prunq::eval::OutputComparison::new();
    cmp.update(&a, &b);
    let m = cmp.finish(what);
    let range = a.iter().fold(0f32, |r, v| r.max(v.abs())) as f64;
    assert!(m.cosine_min >= 0.99999, "{what}: cosine {} ", m.cosine_min);
    assert!(m.max_abs_error <= 1e-3 * range.max(1.0), "{what}: max |err| {} (range {range})", m.max_abs_error);
}

/// Top-1 accuracy of a classifier in ONNX Runtime on a labelled .npz.
pub fn accuracy_in_ort(model: &std::path::Path, data: &std::path::Path) -> f64 {
    let out = ort_outputs(model, data, usize::MAX);
    let labels = prunq::data::npz::read(data).unwrap()["label"].to_i64().unwrap();
    let logits = out.values().next().unwrap().to_f32();
    let hits = logits.outer_iter().zip(labels.iter()).filter(|(row, l)| prunq::eval::argmax(row.iter()) as i64 == **l);
    hits.count() as f64 / labels.len() as f64
}

/// Exact-line match of a text recogniser on ocr_lines_test, decoded in ONNX Runtime.
pub fn ocr_exact_lines_in_ort(model: &std::path::Path) -> f64 {
    let (lines, texts) = (data("ocr_lines_test.npz"), data("ocr_lines_test.txt"));
    let args = [model.as_os_str(), lines.as_os_str(), texts.as_os_str()];
    let out: serde_json::Value = serde_json::from_str(&ort("ocr_eval.py", &args)).unwrap();
    out["exact_match"].as_f64().unwrap()
}

/// The same in tract, through `prunq eval`'s CTC decoding.
pub fn ocr_exact_lines_in_tract(model: &prunq::ir::Model) -> f64 {
    let texts: Vec<String> =
        std::fs::read_to_string(data("ocr_lines_test.txt")).unwrap().lines().map(str::to_string).collect();
    let data = prunq::data::Dataset::open(data("ocr_lines_test.npz")).unwrap();
    let options = prunq::eval::RunOptions { texts: Some(texts), ..Default::default() };
    prunq::eval::evaluate(model, &data, &options, &prunq::measure::Silent).unwrap().exact_match.unwrap()
}

/// Top-1 accuracy of a classifier in tract on a labelled .npz.
pub fn accuracy_in_tract(model: &prunq::ir::Model, data: &std::path::Path) -> f64 {
    let ds = prunq::data::Dataset::open(data).unwrap();
    prunq::eval::evaluate(model, &ds, &Default::default(), &prunq::measure::Silent).unwrap().accuracy.unwrap()
}

/// Runs the prunq binary quietly with ONNX Runtime from the test venv.
pub fn prunq_quiet(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_prunq"))
        .arg("-q")
        .args(args)
        .env("VIRTUAL_ENV", python().parent().and_then(Path::parent).expect("venv"))
        .output()
        .expect("prunq runs")
}

pub fn os(s: &str) -> &std::ffi::OsStr {
    s.as_ref()
}

/// `prunq optimize` on digits_cnn with accuracy kept within half a point, writing `out`,
/// with more flags (`--report R`, `--save-recipe R`); its output.
pub fn optimize_digits_cnn(out: &Path, extra: &[&std::ffi::OsStr]) -> std::process::Output {
    let (model, calib, test) = (model("digits_cnn.onnx"), data("digits_calib.npz"), data("digits_test.npz"));
    let mut args = vec![os("optimize"), model.as_os_str(), os("-o"), out.as_os_str(), os("--calib")];
    args.extend([calib.as_os_str(), os("--val"), test.as_os_str(), os("--max-drop"), os("0.5")]);
    args.extend(extra);
    let r = prunq_quiet(&args);
    assert!(r.status.success(), "optimize: {}", String::from_utf8_lossy(&r.stderr));
    r
}

/// `prunq apply RECIPE MODEL -o OUT --calib CALIB --no-latency-check`, which must succeed: the
/// written file's bytes (a recipe's replay, compared with what wrote the recipe).
pub fn replayed(recipe: &Path, model: &Path, out: &Path, calib: &Path) -> Vec<u8> {
    let mut args = vec![os("apply"), recipe.as_os_str(), model.as_os_str(), os("-o"), out.as_os_str()];
    args.extend([os("--calib"), calib.as_os_str(), os("--no-latency-check")]);
    let r = prunq_quiet(&args);
    assert!(r.status.success(), "apply: {}", String::from_utf8_lossy(&r.stderr));
    std::fs::read(out).expect("apply wrote its output")
}
