//! Hostile and broken inputs: every one is a clear error (or is carried
//! through untouched), never a crash, a hang, a runaway allocation or a
//! truncated output; and the output never depends on the thread count.

mod common;

use prost::Message;
use prunq::proto;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn prunq(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prunq")).arg("-q").args(args).output().unwrap()
}

/// Runs prunq; asserts exit code 1 with a one-line error that is not a crash, and returns it.
fn fails(args: &[&std::ffi::OsStr]) -> String {
    let o = prunq(args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
    assert!(err.starts_with("error: ") && !err.contains("internal error"), "{args:?}: {err}");
    err
}

fn os(s: &str) -> &std::ffi::OsStr {
    s.as_ref()
}

fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> proto::NodeProto {
    proto::NodeProto {
        op_type: Some(op.into()),
        name: Some(format!("{op}_{}", outputs.first().unwrap_or(&""))),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn value(name: &str, elem: i32, dims: &[i64]) -> proto::ValueInfoProto {
    use proto::tensor_shape_proto::{dimension::Value, Dimension};
    let shape = proto::TensorShapeProto {
        dim: dims.iter().map(|&d| Dimension { value: Some(Value::DimValue(d)), ..Default::default() }).collect(),
    };
    proto::ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(proto::TypeProto {
            value: Some(proto::type_proto::Value::TensorType(proto::type_proto::Tensor {
                elem_type: Some(elem),
                shape: Some(shape),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn floats(name: &str, dims: &[i64], values: &[f32]) -> proto::TensorProto {
    proto::TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(1),
        raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>().into()),
        ..Default::default()
    }
}

fn int64s(name: &str, values: &[i64]) -> proto::TensorProto {
    proto::TensorProto {
        name: Some(name.into()),
        dims: vec![values.len() as i64],
        data_type: Some(7),
        raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>().into()),
        ..Default::default()
    }
}

fn graph(nodes: Vec<proto::NodeProto>, init: Vec<proto::TensorProto>, x: &[i64], y: &str) -> proto::GraphProto {
    proto::GraphProto {
        name: Some("g".into()),
        node: nodes,
        initializer: init,
        input: vec![value("x", 1, x)],
        output: vec![proto::ValueInfoProto { name: Some(y.into()), ..Default::default() }],
        ..Default::default()
    }
}

fn write(dir: &Path, name: &str, g: proto::GraphProto) -> PathBuf {
    let m = proto::ModelProto {
        ir_version: Some(8),
        opset_import: vec![proto::OperatorSetIdProto { domain: None, version: Some(17) }],
        graph: Some(g),
        ..Default::default()
    };
    let path = dir.join(name);
    std::fs::write(&path, m.encode_to_vec()).unwrap();
    path
}

#[test]
fn broken_graphs_are_errors_that_name_the_tensor() {
    let dir = common::tempdir();
    let d = dir.path();
    let twice = write(
        d,
        "twice.onnx",
        graph(vec![node("Relu", &["x"], &["y"]), node("Sigmoid", &["x"], &["y"])], vec![], &[1, 4], "y"),
    );
    let e = fails(&[os("inspect"), twice.as_os_str()]);
    assert!(e.contains("twice.onnx") && e.contains("'y' is produced twice"), "{e}");

    let mut g = graph(vec![node("Add", &["x", "w"], &["y"])], vec![floats("w", &[4], &[1.0; 4])], &[1, 4], "y");
    g.value_info.push(value("w", 7, &[4]));
    let e = fails(&[os("inspect"), write(d, "types.onnx", g).as_os_str()]);
    assert!(e.contains("initializer 'w'") && e.contains("declared int64"), "{e}");

    let ghost = write(d, "ghost.onnx", graph(vec![node("Relu", &["nobody"], &["y"])], vec![], &[1, 4], "y"));
    let e = fails(&[os("inspect"), ghost.as_os_str()]);
    assert!(e.contains("'nobody'"), "{e}");

    let cycle = write(
        d,
        "cycle.onnx",
        graph(vec![node("Add", &["x", "b"], &["a"]), node("Relu", &["a"], &["b"])], vec![], &[1, 4], "b"),
    );
    let e = fails(&[os("inspect"), cycle.as_os_str()]);
    assert!(e.contains("cycle"), "{e}");
}

#[test]
fn small_files_cannot_claim_huge_tensors() {
    let dir = common::tempdir();
    let d = dir.path();
    // A 1 KB file whose initializer claims 10¹² floats.
    let mut w = floats("w", &[1_000_000, 1_000_000], &[0.0]);
    w.raw_data = Some(vec![0u8; 4].into());
    let huge = write(d, "huge.onnx", graph(vec![node("Add", &["x", "w"], &["y"])], vec![w], &[1, 4], "y"));
    assert!(std::fs::metadata(&huge).unwrap().len() < 1024);
    let e = fails(&[os("inspect"), huge.as_os_str()]);
    assert!(e.contains("tensor 'w'") && e.contains("bytes of data"), "{e}");
    // A ConstantOfShape that would fill 8 TB from a 3-element shape.
    let shape = int64s("shape", &[100_000, 100_000, 100]);
    let g = graph(
        vec![node("ConstantOfShape", &["shape"], &["c"]), node("Add", &["x", "c"], &["y"])],
        vec![shape],
        &[1],
        "y",
    );
    let e = fails(&[os("inspect"), write(d, "fill.onnx", g).as_os_str()]);
    assert!(e.contains("ConstantOfShape") && e.contains("memory limit"), "{e}");
    // The limit is configurable.
    let g = graph(
        vec![node("ConstantOfShape", &["shape"], &["c"]), node("Add", &["x", "c"], &["y"])],
        vec![int64s("shape", &[4096])],
        &[1],
        "y",
    );
    let small = write(d, "small.onnx", g);
    assert!(prunq(&[os("inspect"), small.as_os_str()]).status.success());
    let e = fails(&[os("--memory-limit"), os("16K"), os("inspect"), small.as_os_str()]);
    assert!(e.contains("4096 elements"), "{e}");
}

#[test]
fn deep_nesting_and_long_chains_do_not_overflow_the_stack() {
    let dir = common::tempdir();
    let d = dir.path();
    // If inside If, 300 deep: protobuf's recursion limit stops it with an error.
    let mut inner = graph(vec![node("Identity", &["x"], &["y"])], vec![], &[1], "y");
    for _ in 0..300 {
        let mut n = node("If", &["x"], &["y"]);
        n.attribute.push(proto::AttributeProto {
            name: Some("then_branch".into()),
            r#type: Some(proto::attribute_proto::AttributeType::Graph as i32),
            g: Some(inner.clone()),
            ..Default::default()
        });
        inner = graph(vec![n], vec![], &[1], "y");
    }
    let e = fails(&[os("inspect"), write(d, "nested.onnx", inner).as_os_str()]);
    assert!(e.contains("nested.onnx") && e.contains("not a valid ONNX model"), "{e}");
    // A chain of 10,000 nodes is a model, not an attack.
    let n = 10_000;
    let names: Vec<String> = (0..=n).map(|i| if i == 0 { "x".into() } else { format!("t{i}") }).collect();
    let nodes = (0..n).map(|i| node("Relu", &[&names[i]], &[&names[i + 1]])).collect();
    let chain = write(d, "chain.onnx", graph(nodes, vec![], &[1, 4], &names[n]));
    let o = prunq(&[os("inspect"), chain.as_os_str()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn unknown_domains_are_carried_through_untouched() {
    let dir = common::tempdir();
    let d = dir.path();
    let mut frob = node("Frob", &["h"], &["y"]);
    frob.domain = Some("com.example".into());
    let w: Vec<f32> = (0..64).map(|i| (i as f32 * 0.37).sin()).collect();
    let mut g = graph(vec![node("MatMul", &["x", "w"], &["h"]), frob], vec![floats("w", &[8, 8], &w)], &[1, 8], "y");
    g.output[0] = value("y", 1, &[1, 8]);
    let m = proto::ModelProto {
        ir_version: Some(8),
        opset_import: vec![
            proto::OperatorSetIdProto { domain: None, version: Some(17) },
            proto::OperatorSetIdProto { domain: Some("com.example".into()), version: Some(1) },
        ],
        graph: Some(g),
        ..Default::default()
    };
    let src = d.join("custom.onnx");
    std::fs::write(&src, m.encode_to_vec()).unwrap();
    let loaded = prunq::onnx::load(&src).unwrap();
    let again = d.join("again.onnx");
    prunq::onnx::save(&loaded, &again, &Default::default()).unwrap();
    assert_eq!(std::fs::read(&src).unwrap(), std::fs::read(&again).unwrap(), "byte-identical round trip");
    // inspect still reports what it can; weight quantization keeps the custom node as it was.
    assert!(prunq(&[os("inspect"), src.as_os_str()]).status.success());
    let out = d.join("q.onnx");
    let o = prunq(&[os("quantize"), src.as_os_str(), os("-o"), out.as_os_str(), os("--mode"), os("weights")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // No runtime runs the custom op, so the output's speed is unknown: said, not an error.
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(said.contains("note: the output's speed was not measured") && said.contains("Frob"), "{said}");
    let q = prunq::onnx::load(&out).unwrap();
    let kept = q.graph.nodes.iter().find(|n| n.op_type == "Frob").unwrap();
    assert_eq!((kept.domain.as_str(), kept.inputs.as_slice()), ("com.example", &["h".to_string()][..]));
    assert!(q.graph.nodes.iter().any(|n| n.op_type == "Cast" && n.inputs[0] == "w_quantized"));
}

#[test]
fn zero_sized_weights_are_never_a_crash() {
    let dir = common::tempdir();
    let d = dir.path();
    let mut g = graph(vec![node("MatMul", &["x", "w"], &["y"])], vec![floats("w", &[4, 0], &[])], &[2, 4], "y");
    g.output[0] = value("y", 1, &[2, 0]);
    let src = write(d, "empty.onnx", g);
    let out = d.join("out.onnx");
    for mode in [
        &["quantize", "--mode", "weights"][..],
        &["quantize", "--mode", "fp16"],
        &["prune"],
        &["prune", "--structured"],
    ] {
        let mut args: Vec<&std::ffi::OsStr> = vec![os(mode[0]), src.as_os_str(), os("-o"), out.as_os_str()];
        args.extend(mode[1..].iter().map(|s| os(s)));
        let o = prunq(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.code().is_some_and(|c| c <= 1) && !err.contains("internal error"), "{mode:?}: {err}");
    }
}

#[test]
fn the_thread_count_never_changes_the_output() {
    let dir = common::tempdir();
    let d = dir.path();
    let (model, calib) = (common::model("digits_cnn.onnx"), common::data("digits_calib.npz"));
    let runs: [&[&str]; 3] = [
        // Static's speed trials choose by timing, which no thread count can pin.
        &["quantize", "--mode", "static", "--no-latency-check"],
        &["prune", "--method", "sparsegpt", "--sparsity", "0.6"],
        &["prune", "--structured", "--target-macs", "0.5"],
    ];
    for (k, run) in runs.iter().enumerate() {
        let mut outputs = vec![];
        for threads in ["1", "2", "2"] {
            let out = d.join(format!("{k}-{threads}-{}.onnx", outputs.len()));
            let mut args: Vec<&std::ffi::OsStr> = vec![os("--threads"), os(threads), os(run[0]), model.as_os_str()];
            args.extend([os("-o"), out.as_os_str(), os("--calib"), calib.as_os_str()]);
            args.extend(run[1..].iter().map(|s| os(s)));
            let o = prunq(&args);
            assert!(o.status.success(), "{run:?}: {}", String::from_utf8_lossy(&o.stderr));
            outputs.push(std::fs::read(&out).unwrap());
        }
        assert!(outputs.windows(2).all(|w| w[0] == w[1]), "{run:?}: outputs differ between runs");
    }
}

/// Initializer names and bytes, and op types: what must match one whole model.
fn fingerprint(m: &prunq::ir::Model) -> (Vec<(String, Vec<u8>)>, Vec<String>) {
    let t = m.graph.initializers.iter().map(|t| (t.name.clone(), t.bytes().map(|b| b.to_vec()).unwrap_or_default()));
    (t.collect(), m.graph.nodes.iter().map(|n| n.op_type.clone()).collect())
}

#[test]
fn kill_9_never_leaves_a_truncated_or_mixed_output() {
    let dir = common::tempdir();
    let src = common::model("minilm_l6.onnx");
    let run = |out: &Path, mode: &str| {
        Command::new(env!("CARGO_BIN_EXE_prunq"))
            .args(["-q", "quantize"])
            .arg(&src)
            .arg("-o")
            .arg(out)
            .args(["--mode", mode, "--external-data"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    // The two complete outputs a killed run may leave: the previous one (fp16) or the new one (int8).
    let reference = |mode: &str| {
        let d = dir.path().join(mode);
        std::fs::create_dir(&d).unwrap();
        assert!(run(&d.join("m.onnx"), mode).wait().unwrap().success());
        fingerprint(&prunq::onnx::load(d.join("m.onnx")).unwrap())
    };
    let (previous, new) = (reference("fp16"), reference("weights"));
    let target = dir.path().join("out");
    std::fs::create_dir(&target).unwrap();
    let out = target.join("out.onnx");
    let mut outcomes = vec![];
    for delay_ms in [5u64, 40, 150, 400, 800, 1500, 2500, 4000] {
        assert!(run(&out, "fp16").wait().unwrap().success());
        let mut child = run(&out, "weights");
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let now = prunq::onnx::load(&out).unwrap_or_else(|e| panic!("after kill -9 at {delay_ms} ms: {e}"));
        let f = fingerprint(&now);
        assert!(f == previous || f == new, "after kill -9 at {delay_ms} ms: a model mixing two writes");
        outcomes.push(f == new);
        let strays: Vec<_> = std::fs::read_dir(&target)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with("out.onnx") && !n.starts_with('.'))
            .collect();
        assert!(strays.is_empty(), "visible partial files: {strays:?}");
    }
    assert!(outcomes.contains(&false), "some kill landed before the new model was in place");
}

#[test]
fn fuzz_crash_inputs_stay_fixed() {
    // Minimized inputs from `fuzz/` runs that once crashed prunq; each must now load or fail cleanly.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    for entry in std::fs::read_dir(root.join("load_model")).into_iter().flatten().flatten() {
        let bytes = std::fs::read(entry.path()).unwrap();
        if let Ok(model) = prunq::onnx::decode(bytes) {
            let _ = prunq::analysis::summarize(&model, &Default::default(), None);
            let _ = prunq::prune::structured::channel_groups(&mut model.clone(), &Default::default());
        }
    }
    for entry in std::fs::read_dir(root.join("read_npz")).into_iter().flatten().flatten() {
        let bytes = std::fs::read(entry.path()).unwrap();
        let _ = prunq::data::npz::read_bytes(&bytes, "crash.npz");
        let _ = prunq::data::npy::parse(&bytes, "crash.npy");
    }
}

#[test]
fn sparse_initializers_load_dense_and_bad_indices_are_errors() {
    let dir = common::tempdir();
    let sparse = |indices: &[i64], dims: &[i64]| proto::SparseTensorProto {
        values: Some(floats("w", &[2], &[1.5, -2.0])),
        indices: Some(int64s("w_indices", indices)),
        dims: dims.to_vec(),
    };
    let with = |name: &str, s: proto::SparseTensorProto| {
        let mut g = graph(vec![node("MatMul", &["x", "w"], &["y"])], vec![], &[1, 4], "y");
        g.sparse_initializer = vec![s];
        write(dir.path(), name, g)
    };
    // w = [[0, 1.5, 0], [0, 0, 0], [0, 0, 0], [0, 0, -2]]: held dense, run by tract, counted by inspect.
    let good = with("good.onnx", sparse(&[1, 11], &[4, 3]));
    let m = prunq::onnx::load(&good).unwrap();
    let w = m.graph.constant("w").unwrap().unwrap().to_f32().unwrap();
    assert_eq!(w.as_slice().unwrap(), &[0.0, 1.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -2.0]);
    let s = prunq::analysis::summarize(&m, &Default::default(), None).unwrap();
    assert_eq!(s.layers[0].macs, Some(12), "a MatMul on the graph input is counted");
    let x = prunq::data::Array::F32(ndarray::ArrayD::from_elem(ndarray::IxDyn(&[1, 4]), 1.0));
    let y = prunq::runtime::Session::new(&m, &Default::default()).unwrap().run(&[x]).unwrap();
    assert_eq!(y[0].to_f32().as_slice().unwrap(), &[0.0, 1.5, -2.0]);
    // Out of the shape, negative, or more values than indices: a clear error naming the tensor.
    for (name, s) in [
        ("outside.onnx", sparse(&[1, 12], &[4, 3])),
        ("negative.onnx", sparse(&[-1, 3], &[4, 3])),
        ("short.onnx", sparse(&[1], &[4, 3])),
        ("huge.onnx", sparse(&[1, 2], &[1 << 40, 1 << 20])),
    ] {
        let err = fails(&[os("inspect"), with(name, s).as_os_str()]);
        assert!(err.contains("sparse tensor 'w'"), "{name}: {err}");
    }
}
