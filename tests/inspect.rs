//! `inspect` numbers against an independent count (the onnx package for
//! parameters, shapes from ONNX Runtime's own run for MACs).

mod common;

use std::collections::BTreeMap;

fn summary(model: &str, shapes: &[(&str, Vec<usize>)]) -> prunq::analysis::Summary {
    let path = common::model(model);
    let m = prunq::onnx::load(&path).unwrap();
    let shapes: BTreeMap<String, Vec<usize>> = shapes.iter().map(|(n, s)| (n.to_string(), s.clone())).collect();
    prunq::analysis::summarize(&m, &shapes, None).unwrap()
}

#[test]
fn digits_cnn_has_the_published_counts() {
    let s = summary("digits_cnn.onnx", &[]);
    assert_eq!((s.parameters, s.macs), (249_162, 11_879_040));
    assert!(s.macs_complete);
    assert_eq!(s.ops["Conv"], 4);
    assert_eq!(s.layers.len(), 6);
    assert_eq!(s.sparsity, 0.0);
}

#[test]
fn every_model_matches_an_independent_count() {
    type Shapes<'a> = &'a [(&'a str, Vec<usize>)];
    let cases: [(&str, Shapes); 7] = [
        ("digits_mlp.onnx", &[]),
        ("digits_cnn.onnx", &[("input", vec![2, 1, 16, 16])]),
        ("digits_resnet.onnx", &[]),
        ("digits_vit.onnx", &[]),
        ("ppocr_cls_v2.onnx", &[("x", vec![1, 3, 48, 192])]),
        ("ppocr_rec_v4.onnx", &[("x", vec![1, 3, 48, 320])]),
        (
            "minilm_l6.onnx",
            &[("input_ids", vec![1, 64]), ("attention_mask", vec![1, 64]), ("token_type_ids", vec![1, 64])],
        ),
    ];
    for (model, shapes) in cases {
        let s = summary(model, shapes);
        let mut args: Vec<std::ffi::OsString> = vec![common::model(model).into()];
        args.extend(
            shapes
                .iter()
                .map(|(n, d)| format!("{n}={}", d.iter().map(usize::to_string).collect::<Vec<_>>().join("x")).into()),
        );
        let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let want: serde_json::Value = serde_json::from_str(&common::ort("count.py", &refs)).unwrap();
        assert_eq!(s.parameters, want["parameters"].as_u64().unwrap(), "{model} parameters");
        assert_eq!(s.macs, want["macs"].as_u64().unwrap(), "{model} MACs");
        assert!(s.macs_complete, "{model}: some layers without MACs");
    }
}

#[test]
fn sparsity_counts_zeroed_weights() {
    let mut m = prunq::onnx::load(common::model("digits_mlp.onnx")).unwrap();
    let w = m.graph.initializers.iter().find(|t| t.dims.len() == 2).unwrap().clone();
    let mut a = w.to_f32().unwrap();
    let n = a.len();
    a.iter_mut().take(n / 4).for_each(|v| *v = 0.0);
    m.graph.set_constant(&w.name.clone(), prunq::ir::Tensor::from_array(&w.name, &a)).unwrap();
    let s = prunq::analysis::summarize(&m, &Default::default(), None).unwrap();
    let ws = s.weights.iter().find(|x| x.name == w.name).unwrap();
    assert_eq!(ws.zeros as usize, n / 4);
    let layer = s.layers.iter().find(|l| l.weight.as_deref() == Some(&w.name)).unwrap();
    assert!((layer.sparsity.unwrap() - 0.25).abs() < 1e-3);
}
