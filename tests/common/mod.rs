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
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/ort")
                .join(script),
        )
        .args(args)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{script} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary folder")
}
