//! The programs in `examples/` run on the demo's model and do what they say
//! (`cargo test` builds them; these run them).

mod common;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `target/<profile>/examples/<name>`, beside this test's own binary in `deps/`.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    exe.parent().and_then(Path::parent).expect("target dir").join("examples").join(name)
}

fn run(name: &str, args: &[&str]) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(example(name)).args(args).current_dir(root).output().expect("example runs");
    assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn where_error_starts_lists_every_layer_in_graph_order() {
    let text = run("where_error_starts", &["demo/digits_cnn.onnx", "demo/digits_calib.npz"]);
    let rows: Vec<&str> = text.lines().skip(1).filter(|l| l.contains('/') || l.ends_with("output")).collect();
    assert!(rows.len() >= 15, "{text}");
    assert!(rows[0].contains("Conv"), "the first conv comes first: {text}");
    assert!(text.contains("every layer stays above 20 dB"), "{text}");
}

#[test]
fn prune_then_quantize_writes_a_smaller_model_that_agrees() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("small.onnx");
    let args = ["demo/digits_cnn.onnx", "demo/digits_calib.npz", "demo/digits_test.npz", out.to_str().expect("utf-8")];
    let text = run("prune_then_quantize", &args);
    assert!(text.contains("structured −50 % MACs + static"), "{text}");
    let size = std::fs::metadata(&out).expect("written").len();
    let original = std::fs::metadata(Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/digits_cnn.onnx")).unwrap().len();
    assert!(size * 4 < original, "{size} bytes of {original}");
    let model = prunq::onnx::load(&out).expect("loads");
    let test = prunq::data::Dataset::open(Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/digits_test.npz")).unwrap();
    let acc = prunq::eval::evaluate(&model, &test, &Default::default(), &prunq::measure::Silent).unwrap().accuracy;
    assert!(acc.expect("labelled") > 0.98, "tract: {acc:?}");
    let demo_test = Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/digits_test.npz");
    let in_ort = common::accuracy_in_ort(&out, &demo_test);
    assert!(in_ort > 0.98, "ONNX Runtime: {in_ort}");
}
