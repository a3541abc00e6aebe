//! The `prunq` binary: output, JSON keys, exit codes, one-line errors.

mod common;

use std::process::{Command, Output};

fn prunq(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prunq")).args(args).output().expect("prunq runs")
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn inspect_json_has_the_documented_keys() {
    let m = common::model("digits_cnn.onnx");
    let o = prunq(&["inspect", m.to_str().unwrap(), "--json"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["parameters"], 249_162);
    assert_eq!(v["macs"], 11_879_040);
    assert_eq!(v["size_bytes"], std::fs::metadata(&m).unwrap().len());
    assert_eq!(v["ops"]["Conv"], 4);
    assert_eq!(v["layers"].as_array().unwrap().len(), 6);
}

#[test]
fn inspect_takes_input_shapes() {
    let m = common::model("digits_cnn.onnx");
    let o = prunq(&["inspect", m.to_str().unwrap(), "--shape", "input=4x1x16x16"]);
    let (out, _) = text(&o);
    assert!(o.status.success());
    assert!(out.contains("MACs 47,516,160"), "{out}");
}

#[test]
fn eval_and_compare_print_json() {
    let (m, d) = (common::model("digits_mlp.onnx"), common::data("digits_test.npz"));
    let o = prunq(&["eval", m.to_str().unwrap(), "--data", d.to_str().unwrap(), "--json", "--quiet"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!((v["accuracy"].as_f64().unwrap() - 0.974).abs() < 1e-9);
    let o = prunq(&["compare", m.to_str().unwrap(), m.to_str().unwrap(), "--data", d.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["outputs"][0]["top1_agreement"], 1.0);
    assert_eq!(v["outputs"][0]["sqnr_db"], "inf");
}

#[test]
fn errors_are_one_line_with_exit_code_1() {
    let dir = common::tempdir();
    let bad = dir.path().join("bad.onnx");
    std::fs::write(&bad, b"not a model at all").unwrap();
    for args in [
        vec!["inspect", bad.to_str().unwrap()],
        vec!["inspect", "/no/such/model.onnx"],
        vec!["eval", common::model("digits_cnn.onnx").to_str().unwrap(), "--data", bad.to_str().unwrap()],
    ] {
        let o = prunq(&args);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("error: ") && (err.contains("bad.onnx") || err.contains("model.onnx")), "{err}");
    }
}

#[test]
fn bad_usage_exits_2() {
    assert_eq!(prunq(&["inspect"]).status.code(), Some(2));
    assert_eq!(prunq(&["frobnicate"]).status.code(), Some(2));
    let m = common::model("digits_cnn.onnx");
    assert_eq!(prunq(&["inspect", m.to_str().unwrap(), "--shape", "input=axb"]).status.code(), Some(2));
}

#[test]
fn demo_runs_with_no_arguments() {
    let o = prunq(&["demo"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("accuracy    99.80 %"), "{out}");
    assert!(out.contains("byte-identical to the original: yes"), "{out}");
    assert!(out.contains("MACs 11,879,040 -> 5,354,112 (-54.9 %)"), "{out}");
    // Each step is its command's job: checked (a quality line) and compared before the next.
    assert_eq!(out.matches("quality on 32 rows of the validation data in").count(), 4, "{out}");
}

#[test]
fn a_closed_output_pipe_stops_quietly_like_other_unix_tools() {
    // `prunq inspect m | head -0`: the reader is gone before prunq writes (loading the recogniser
    // takes far longer than closing the pipe). The shell's status for a writer killed by SIGPIPE.
    let mut child = Command::new(env!("CARGO_BIN_EXE_prunq"))
        .args(["inspect", common::model("ppocr_rec_v4.onnx").to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(141), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "no internal error: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn outputs_get_the_permissions_the_umask_gives_new_files() {
    // Written through a temporary file and renamed: the temporary file's private 0600 must not
    // survive into the output. Run under two umasks so the mode is seen to follow it.
    use std::os::unix::fs::PermissionsExt;
    let dir = common::tempdir();
    for (umask, mode) in [("022", 0o644), ("077", 0o600)] {
        let out = dir.path().join(format!("m{umask}.onnx"));
        let script = format!("umask {umask} && exec \"$0\" quantize \"$1\" -o \"$2\" -q");
        let o = Command::new("sh")
            .args(["-c", &script, env!("CARGO_BIN_EXE_prunq")])
            .arg(common::model("digits_mlp.onnx"))
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o).1);
        let got = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
        assert_eq!(got, mode, "umask {umask}: mode {got:o}");
    }
}
