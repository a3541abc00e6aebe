//! ONNX in and out: lossless round trips checked in tract and ONNX Runtime,
//! external data, and bad files with clear errors.

mod common;

use prost::Message;
use prunq::onnx::{self, ExternalMode, SaveOptions};
use prunq::proto;

#[test]
fn every_shared_model_round_trips_byte_identical() {
    let dir = common::tempdir();
    for name in common::ALL_MODELS {
        let input = common::model(name);
        let model = onnx::load(&input).unwrap_or_else(|e| panic!("{name}: {e}"));
        let out = dir.path().join(name);
        onnx::save(&model, &out, &Default::default()).unwrap();
        let (a, b) = (std::fs::read(&input).unwrap(), std::fs::read(&out).unwrap());
        assert_eq!(a.len(), b.len(), "{name}: size differs");
        assert!(a == b, "{name}: bytes differ");
    }
}

/// The re-saved model gives exactly the original's outputs in ONNX Runtime and
/// in tract, and tract agrees with ONNX Runtime.
#[test]
fn round_tripped_models_run_the_same_in_tract_and_onnx_runtime() {
    let dir = common::tempdir();
    for name in common::ALL_MODELS {
        let input = common::model(name);
        let data = common::data_for(name);
        let model = onnx::load(&input).unwrap();
        let out = dir.path().join(name);
        onnx::save(&model, &out, &Default::default()).unwrap();
        let rows = 4;
        let ort_a = common::ort_outputs(&input, &data, rows);
        let ort_b = common::ort_outputs(&out, &data, rows);
        assert_eq!(ort_a, ort_b, "{name}: ONNX Runtime outputs differ after the round trip");
        let tract_a = common::tract_outputs(&model, &data, rows);
        let tract_b = common::tract_outputs(&onnx::load(&out).unwrap(), &data, rows);
        assert_eq!(tract_a, tract_b, "{name}: tract outputs differ after the round trip");
        for (k, v) in &ort_a {
            common::assert_close(&format!("{name} {k} tract vs ORT"), &tract_a[k], v);
        }
    }
}

#[test]
fn external_data_is_written_beside_the_model_and_read_back() {
    let dir = common::tempdir();
    let input = common::model("digits_cnn.onnx");
    let model = onnx::load(&input).unwrap();
    let out = dir.path().join("cnn.onnx");
    onnx::save(&model, &out, &SaveOptions { external: ExternalMode::Always }).unwrap();
    let data_file = data_file_of(dir.path(), "cnn.onnx");
    assert!(std::fs::metadata(&out).unwrap().len() < 20_000, "weights left the protobuf");
    assert!(std::fs::metadata(&data_file).unwrap().len() > 990_000);
    let back = onnx::load(&out).unwrap();
    for (a, b) in model.graph.initializers.iter().zip(&back.graph.initializers) {
        assert_eq!((&a.name, &a.data), (&b.name, &b.data));
    }
    let data = common::data_for("digits_cnn.onnx");
    assert_eq!(common::ort_outputs(&input, &data, 8), common::ort_outputs(&out, &data, 8));
    // Saved again with the default mode, external tensors stay external.
    let again = dir.path().join("again.onnx");
    onnx::save(&back, &again, &Default::default()).unwrap();
    assert!(data_file_of(dir.path(), "again.onnx").exists());
    // Saving over it writes a new content-named data file and removes the stale one.
    let old = data_file_of(dir.path(), "again.onnx");
    onnx::save(&back, &again, &SaveOptions { external: ExternalMode::Always }).unwrap();
    assert_eq!(data_file_of(dir.path(), "again.onnx"), old, "same content, same name");
    let mut other = back;
    other.graph.initializers.retain(|t| t.byte_size() < 400_000);
    other.graph.nodes.clear();
    other.graph.outputs.clear();
    onnx::save(&other, &again, &SaveOptions { external: ExternalMode::Always }).unwrap();
    assert!(!old.exists(), "the stale data file is gone");
    assert!(onnx::load(&again).is_ok());
}

/// The one `<name>.<hash>.data` file beside a saved model.
fn data_file_of(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let f = p.file_name().unwrap().to_string_lossy().into_owned();
            f.starts_with(&format!("{name}.")) && f.ends_with(".data")
        })
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

fn err_of(path: &std::path::Path) -> String {
    onnx::load(path).expect_err("loading must fail").to_string()
}

#[test]
fn a_truncated_file_is_a_clear_error() {
    let dir = common::tempdir();
    let bytes = std::fs::read(common::model("digits_mlp.onnx")).unwrap();
    let path = dir.path().join("cut.onnx");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let e = err_of(&path);
    assert!(e.contains("cut.onnx") && e.contains("not a valid ONNX model"), "{e}");
}

#[test]
fn random_bytes_are_a_clear_error() {
    let dir = common::tempdir();
    let mut state = 0x2545F4914F6CDD1Du64;
    let bytes: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let path = dir.path().join("noise.onnx");
    std::fs::write(&path, bytes).unwrap();
    let e = err_of(&path);
    assert!(e.contains("noise.onnx"), "{e}");
}

#[test]
fn a_node_reading_a_missing_tensor_is_named() {
    let dir = common::tempdir();
    let mut model = onnx::load(common::model("digits_mlp.onnx")).unwrap();
    let node = model.graph.nodes.iter_mut().find(|n| n.op_type == "Gemm").unwrap();
    node.inputs[0] = "nowhere".into();
    let label = node.name.clone();
    let path = dir.path().join("broken.onnx");
    onnx::save(&model, &path, &Default::default()).unwrap();
    let e = err_of(&path);
    assert!(e.contains("broken.onnx") && e.contains(&label) && e.contains("'nowhere'"), "{e}");
}

#[test]
fn a_cycle_is_an_error() {
    let mut model = onnx::load(common::model("digits_mlp.onnx")).unwrap();
    // The second node now reads the last node's output, which depends on it.
    let last_out = model.graph.nodes.last().unwrap().outputs[0].clone();
    model.graph.nodes[1].inputs[0] = last_out;
    let e = model.graph.validate(&Default::default()).unwrap_err().to_string();
    assert!(e.contains("cycle"), "{e}");
}

/// A model whose one initializer lives at `location` in external data.
fn model_with_external(dir: &std::path::Path, location: &str) -> std::path::PathBuf {
    let t = proto::TensorProto {
        name: Some("w".into()),
        dims: vec![4],
        data_type: Some(1),
        data_location: Some(proto::tensor_proto::DataLocation::External as i32),
        external_data: vec![proto::StringStringEntryProto {
            key: Some("location".into()),
            value: Some(location.into()),
        }],
        ..Default::default()
    };
    let m = proto::ModelProto {
        ir_version: Some(8),
        opset_import: vec![proto::OperatorSetIdProto { domain: None, version: Some(17) }],
        graph: Some(proto::GraphProto {
            name: Some("g".into()),
            initializer: vec![t],
            output: vec![proto::ValueInfoProto { name: Some("w".into()), ..Default::default() }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let path = dir.join("ext.onnx");
    std::fs::write(&path, m.encode_to_vec()).unwrap();
    path
}

#[test]
fn external_data_outside_the_model_folder_is_refused() {
    let root = common::tempdir();
    let dir = root.path().join("model");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(root.path().join("secret.bin"), [7u8; 16]).unwrap();
    std::fs::write(dir.join("ok.bin"), [0u8; 16]).unwrap();
    let ok = model_with_external(&dir, "ok.bin");
    assert_eq!(onnx::load(&ok).unwrap().graph.initializers[0].byte_size(), 16);
    for (location, why) in [
        ("../secret.bin", "leaves the model's folder"),
        (root.path().join("secret.bin").to_str().unwrap(), "is absolute"),
        ("missing.bin", "does not exist"),
    ] {
        let path = model_with_external(&dir, location);
        let e = err_of(&path);
        assert!(e.contains("ext.onnx") && e.contains("'w'") && e.contains(why), "{location}: {e}");
    }
    std::os::unix::fs::symlink(root.path().join("secret.bin"), dir.join("link.bin")).unwrap();
    let e = err_of(&model_with_external(&dir, "link.bin"));
    assert!(e.contains("outside the model's folder"), "{e}");
    std::fs::write(dir.join("short.bin"), [0u8; 8]).unwrap();
    let e = err_of(&model_with_external(&dir, "short.bin"));
    assert!(e.contains("does not match its shape"), "{e}");
}

#[test]
fn the_input_is_never_the_output() {
    let input = common::model("digits_mlp.onnx");
    let e = onnx::ensure_not_input(&input, &input).unwrap_err().to_string();
    assert!(e.contains("refusing to overwrite the input"), "{e}");
    let dir = common::tempdir();
    assert!(onnx::ensure_not_input(&input, &dir.path().join("out.onnx")).is_ok());
}
