//! `eval` and `compare` on the shared models and data.

mod common;

use prunq::data::Dataset;
use prunq::eval::{compare, evaluate, RunOptions};
use prunq::measure::Silent;

#[test]
fn eval_reproduces_the_published_digits_accuracies() {
    let data = Dataset::open(common::data("digits_test.npz")).unwrap();
    for (model, acc) in [
        ("digits_mlp.onnx", 0.974),
        ("digits_cnn.onnx", 0.998),
        ("digits_resnet.onnx", 0.994),
        ("digits_vit.onnx", 0.968),
    ] {
        let m = prunq::onnx::load(common::model(model)).unwrap();
        let r = evaluate(&m, &data, &RunOptions::default(), &Silent).unwrap();
        assert_eq!(r.samples, 500);
        assert!((r.accuracy.unwrap() - acc).abs() < 1e-9, "{model}: {:?}", r.accuracy);
        assert!(r.latency_ms_median > 0.0 && r.throughput_per_s > 0.0);
    }
}

#[test]
fn batch_size_does_not_change_accuracy() {
    let data = Dataset::open(common::data("digits_test.npz")).unwrap();
    let m = prunq::onnx::load(common::model("digits_resnet.onnx")).unwrap();
    for bs in [1, 7, 500] {
        let r = evaluate(&m, &data, &RunOptions { batch_size: bs, labels: Some("label".into()), texts: None }, &Silent)
            .unwrap();
        assert!((r.accuracy.unwrap() - 0.994).abs() < 1e-9, "batch {bs}");
    }
}

#[test]
fn a_model_compared_with_itself_agrees_fully() {
    for (model, data) in [("digits_vit.onnx", "digits_test.npz"), ("minilm_l6.onnx", "sentences_test.npz")] {
        let m = prunq::onnx::load(common::model(model)).unwrap();
        let d = Dataset::open(common::data(data)).unwrap();
        let r = compare(&m, &m, &d, &RunOptions::default(), &Silent).unwrap();
        let o = &r.outputs[0];
        assert_eq!((o.top1_agreement, o.max_abs_error), (1.0, 0.0), "{model}");
        assert!(o.sqnr_db.is_infinite() && o.cosine_min > 0.999999, "{model}");
        assert_eq!(o.nn_agreement, Some(1.0), "{model}");
    }
}

/// Adding 50 to one class's bias: that logit moves by exactly 50, and class 0
/// now wins almost everywhere.
#[test]
fn compare_sees_a_perturbed_weight() {
    let path = common::model("digits_mlp.onnx");
    let m = prunq::onnx::load(&path).unwrap();
    let mut worse = m.clone();
    let last = worse.graph.initializers.iter().rev().find(|t| t.dims.len() == 1).unwrap().clone();
    let mut b = last.to_f32().unwrap();
    b[[0]] += 50.0;
    worse.graph.set_constant(&last.name, prunq::ir::Tensor::from_array(&last.name, &b)).unwrap();
    let d = Dataset::open(common::data("digits_test.npz")).unwrap();
    let r = compare(&m, &worse, &d, &RunOptions::default(), &Silent).unwrap();
    let o = &r.outputs[0];
    assert!(o.top1_agreement < 0.2, "{}", o.top1_agreement);
    assert!((o.max_abs_error - 50.0).abs() < 1e-3, "{}", o.max_abs_error);
    assert!(o.sqnr_db.is_finite() && o.sqnr_db < 10.0, "{}", o.sqnr_db);
}

#[test]
fn data_that_does_not_fit_names_the_input_and_both_shapes() {
    let dir = common::tempdir();
    let path = dir.path().join("small.npz");
    let a = prunq::data::Array::F32(ndarray::ArrayD::zeros(ndarray::IxDyn(&[4, 1, 8, 8])));
    prunq::data::npz::write(&path, &[("input".to_string(), a)].into()).unwrap();
    let m = prunq::onnx::load(common::model("digits_cnn.onnx")).unwrap();
    let e = evaluate(&m, &Dataset::open(&path).unwrap(), &RunOptions::default(), &Silent).unwrap_err().to_string();
    assert!(
        e.contains("small.npz")
            && e.contains("'input'")
            && e.contains("[batch, 1, 16, 16]")
            && e.contains("[4, 1, 8, 8]"),
        "{e}"
    );
    let ids = prunq::data::Array::F32(ndarray::ArrayD::zeros(ndarray::IxDyn(&[4, 64])));
    prunq::data::npz::write(&path, &[("input_ids".to_string(), ids)].into()).unwrap();
    let m = prunq::onnx::load(common::model("minilm_l6.onnx")).unwrap();
    let e = evaluate(&m, &Dataset::open(&path).unwrap(), &RunOptions::default(), &Silent).unwrap_err().to_string();
    assert!(e.contains("no array for model input 'attention_mask'"), "{e}");
}

/// `compare --per-layer` finds the culprit: one conv of digits_cnn with its
/// weights scaled by 0.3 is where the error starts, everything before it is exact.
#[test]
fn per_layer_comparison_points_at_the_layer_that_was_changed() {
    let original = prunq::onnx::load(common::model("digits_cnn.onnx")).unwrap();
    let convs: Vec<usize> =
        (0..original.graph.nodes.len()).filter(|&i| original.graph.nodes[i].op_type == "Conv").collect();
    let culprit = convs[2];
    let mut changed = original.clone();
    let weight = changed.graph.nodes[culprit].inputs[1].clone();
    let slot = changed.graph.initializers.iter_mut().find(|t| t.name == weight).unwrap();
    *slot = prunq::ir::Tensor::from_array(&weight, &(slot.to_f32().unwrap() * 0.3));
    let data = Dataset::open(common::data("digits_test.npz")).unwrap();
    let r = prunq::eval::compare_layers(&original, &changed, &data, &RunOptions::default(), &Silent).unwrap();
    assert_eq!(r.samples, 500);
    let out = &changed.graph.nodes[culprit].outputs[0];
    let first = r.first_below(20.0).unwrap();
    assert_eq!(&first.name, out);
    assert!(first.sqnr_db.is_finite() && first.sqnr_db < 10.0, "{}", first.sqnr_db);
    assert!(r.layers.windows(2).all(|w| w[0].sqnr_db <= w[1].sqnr_db), "sorted worst first");
    for l in r.layers.iter().filter(|l| l.position < culprit) {
        assert!(l.sqnr_db.is_infinite() && l.sqnr_db > 0.0, "{} before the culprit: {} dB", l.name, l.sqnr_db);
    }
    assert!(r.layers.len() >= 10, "{} tensors", r.layers.len());
}

/// A structured-pruned candidate: tensors whose channel count changed are named as
/// not compared; the output still is.
#[test]
fn per_layer_comparison_names_tensors_whose_shape_changed() {
    let dir = common::tempdir();
    let pruned = dir.path().join("p.onnx");
    let (model, test) = (common::model("digits_cnn.onnx"), common::data("digits_test.npz"));
    let bin = env!("CARGO_BIN_EXE_prunq");
    let run = |args: &[&std::ffi::OsStr]| std::process::Command::new(bin).arg("-q").args(args).output().unwrap();
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    let r = run(&[
        os("prune"),
        model.as_os_str(),
        os("-o"),
        pruned.as_os_str(),
        os("--structured"),
        os("--ratio"),
        os("0.25"),
        os("--calib"),
        common::data("digits_calib.npz").as_os_str(),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let r =
        run(&[os("compare"), model.as_os_str(), pruned.as_os_str(), os("--data"), test.as_os_str(), os("--per-layer")]);
    let text = String::from_utf8_lossy(&r.stdout);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(text.contains("not compared: ") && text.contains("in the candidate"), "{text}");
    let r = run(&[
        os("compare"),
        model.as_os_str(),
        pruned.as_os_str(),
        os("--data"),
        test.as_os_str(),
        os("--per-layer"),
        os("--json"),
    ]);
    let json: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    let output = &prunq::onnx::load(&model).unwrap().graph.outputs[0].name;
    assert!(json["layers"].as_array().unwrap().iter().any(|l| &l["name"] == output), "the output is compared");
}
