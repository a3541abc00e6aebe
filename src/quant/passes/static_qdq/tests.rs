//! Static QDQ on small graphs: placement, shared scales, biases, recorded decisions.

use crate::data::{Array, Dataset};
use crate::ir::testing::{int, ints, model, node, tensor, wavy};
use crate::ir::{GraphIndex, Model};
use crate::measure::Silent;
use crate::quant::{quantize, QuantConfig, QuantMode};
use ndarray::{ArrayD, IxDyn};

/// Conv → Relu → MaxPool → Flatten → Gemm → Softmax, as small classifiers are.
fn classifier() -> Model {
    let inits = vec![
        tensor("w", &[4, 3, 3, 3], wavy),
        tensor("b", &[4], wavy),
        tensor("fc", &[5, 16], wavy),
        tensor("fc.b", &[5], wavy),
    ];
    let nodes = vec![
        node("Conv", &["x", "w", "b"], "c", &[("pads", ints(&[1, 1, 1, 1]))]),
        node("Relu", &["c"], "r", &[]),
        node("MaxPool", &["r"], "p", &[("kernel_shape", ints(&[2, 2])), ("strides", ints(&[2, 2]))]),
        node("Flatten", &["p"], "f", &[("axis", int(1))]),
        node("Gemm", &["f", "fc", "fc.b"], "logits", &[("transB", int(1))]),
        node("Softmax", &["logits"], "y", &[("axis", int(1))]),
    ];
    model(nodes, inits, &[1, 3, 4, 4], &["y"], 13)
}

fn calibration() -> Dataset {
    let x = ArrayD::from_shape_vec(IxDyn(&[8, 3, 4, 4]), (0..384).map(|i| wavy(i * 3) * 2.0).collect()).unwrap();
    Dataset::from_arrays("calibration", [("x".to_string(), Array::F32(x))].into())
}

/// The op reading `tensor` (its only consumer).
fn reader<'a>(m: &'a Model, index: &GraphIndex, tensor: &str) -> &'a str {
    let [(c, _)] = index.consumers(tensor) else { panic!("'{tensor}' has one reader") };
    &m.graph.nodes[*c].op_type
}

/// `auto` keeps min-max or percentile ranges, whichever's all-int8 model is
/// closer to the original; it records the choice, and asking for that method
/// or replaying the record gives the same model (the other method does not).
#[test]
fn auto_ranges_are_one_of_the_two_and_replay() {
    use crate::ir::fingerprint;
    use crate::quant::calibrate::Method;
    // The 90th percentile: with a few hundred values per tensor, 99.999 would clip nothing.
    let auto = QuantConfig { mode: QuantMode::Static, target_sqnr: 0.0, percentile: 90.0, ..Default::default() };
    let run = |config: &QuantConfig| {
        let mut m = classifier();
        let report = quantize(&mut m, config, Some(&calibration()), &Silent).unwrap();
        (fingerprint(&m), report)
    };
    let (model, report) = run(&auto);
    let chosen = report.decided.as_ref().and_then(|d| d.ranges).expect("auto records its choice");
    assert!(report.notes.iter().any(|n| n.starts_with("activation ranges:")), "{:?}", report.notes);
    let other = if chosen == Method::MinMax { Method::Percentile } else { Method::MinMax };
    assert_eq!(run(&QuantConfig { method: chosen, ..auto.clone() }).0, model);
    assert_ne!(run(&QuantConfig { method: other, ..auto.clone() }).0, model, "the two differ here");
    assert_eq!(run(&QuantConfig { decided: report.decided.clone(), ..auto }).0, model);
}

/// A MatMul's output is quantized where a quantized op (Add) reads it, and left float where
/// a float one (Softmax) does: ONNX Runtime runs DQ → MatMul without Q as MatMulIntegerToFloat.
#[test]
fn matmul_outputs_are_quantized_only_for_quantized_readers() {
    let inits = vec![tensor("w1", &[8, 8], wavy), tensor("bias", &[8], wavy), tensor("w2", &[8, 4], wavy)];
    let nodes = vec![
        node("MatMul", &["x", "w1"], "a", &[]),
        node("Add", &["a", "bias"], "b", &[]),
        node("MatMul", &["b", "w2"], "l", &[]),
        node("Softmax", &["l"], "y", &[("axis", int(1))]),
    ];
    let mut m = model(nodes, inits, &[1, 8], &["y"], 13);
    let x = ArrayD::from_shape_vec(IxDyn(&[8, 8]), (0..64).map(|i| wavy(i * 5) * 3.0).collect()).unwrap();
    let calib = Dataset::from_arrays("calibration", [("x".to_string(), Array::F32(x))].into());
    let config = QuantConfig { mode: QuantMode::Static, target_sqnr: 0.0, ..Default::default() };
    quantize(&mut m, &config, Some(&calib), &Silent).unwrap();
    let index = GraphIndex::new(&m.graph);
    assert_eq!(reader(&m, &index, "a"), "QuantizeLinear", "the Add reads the first MatMul's output quantized");
    assert_eq!(reader(&m, &index, "l"), "Softmax", "the second MatMul writes float");
    let second = m.graph.nodes.iter().find(|n| n.op_type == "MatMul" && n.outputs[0] == "l").unwrap();
    let producer = |t: &str| index.producer(t).map(|p| m.graph.nodes[p].op_type.as_str());
    assert!(second.inputs.iter().all(|i| producer(i) == Some("DequantizeLinear")), "its inputs are int8");
}

#[test]
fn qdq_goes_where_runtimes_fuse_it() {
    let mut m = classifier();
    let config = QuantConfig { mode: QuantMode::Static, target_sqnr: 0.0, ..Default::default() };
    quantize(&mut m, &config, Some(&calibration()), &Silent).unwrap();
    let g = &m.graph;
    let index = GraphIndex::new(g);
    let producer = |t: &str| index.producer(t).map(|p| g.nodes[p].op_type.as_str());
    let count = |op: &str| g.nodes.iter().filter(|n| n.op_type == op).count();
    // The input, the activations after Relu and MaxPool, Flatten's output and the
    // logits: each quantized once.
    assert_eq!(reader(&m, &index, "x"), "QuantizeLinear");
    // The Relu is fused into the Conv: the Conv writes straight into it.
    assert_eq!(reader(&m, &index, "c"), "Relu");
    let conv = g.nodes.iter().find(|n| n.op_type == "Conv").unwrap();
    for input in &conv.inputs {
        assert_eq!(producer(input), Some("DequantizeLinear"), "Conv input '{input}' comes dequantized");
    }
    // MaxPool moves values: its output keeps its input's scale.
    let pool = g.nodes.iter().find(|n| n.op_type == "MaxPool").unwrap();
    let dq_in = &g.nodes[index.producer(&pool.inputs[0]).unwrap()];
    let q_out = &g.nodes[index.consumers(&pool.outputs[0])[0].0];
    assert_eq!(q_out.op_type, "QuantizeLinear");
    let value = |name: &str| g.constant(name).unwrap().unwrap().bytes().unwrap().to_vec();
    assert_eq!(value(&dq_in.inputs[1]), value(&q_out.inputs[1]), "one scale through the MaxPool");
    assert_eq!(value(&dq_in.inputs[2]), value(&q_out.inputs[2]), "one zero point through the MaxPool");
    // Softmax stays float: it reads dequantized logits and its output is the model's.
    let softmax = g.nodes.iter().find(|n| n.op_type == "Softmax").unwrap();
    assert_eq!(producer(&softmax.inputs[0]), Some("DequantizeLinear"));
    assert_eq!(softmax.outputs[0], "y");
    // Weights: per channel int8 with an int32 bias.
    let bias = g.constant(&g.nodes[index.producer(&conv.inputs[2]).unwrap()].inputs[0]).unwrap().unwrap();
    assert_eq!(bias.dtype, crate::ir::DataType::INT32);
    assert_eq!(count("QuantizeLinear"), 5, "x, relu, pool, flatten, logits");
}
/// uint8 weights sit around zero point 128 with the int8 grid's 127 steps a
/// side: the same values, another type (ONNX Runtime's u8×u8 kernels).
#[test]
fn unsigned_weights_are_int8_shifted_by_128() {
    let weight = |unsigned: bool| {
        let mut m = classifier();
        let config = QuantConfig {
            mode: QuantMode::Static,
            target_sqnr: 0.0,
            unsigned_weights: Some(unsigned),
            ..Default::default()
        };
        quantize(&mut m, &config, Some(&calibration()), &Silent).unwrap();
        let index = GraphIndex::new(&m.graph);
        let conv = m.graph.nodes.iter().find(|n| n.op_type == "Conv").unwrap();
        let dq = &m.graph.nodes[index.producer(&conv.inputs[1]).unwrap()];
        let tensor = |slot: usize| m.graph.constant(&dq.inputs[slot]).unwrap().unwrap();
        let (q, zp) = (tensor(0), tensor(2));
        assert_eq!(q.dtype, zp.dtype);
        let values = |t: &crate::ir::Tensor| -> Vec<i32> {
            match t.dtype {
                crate::ir::DataType::INT8 => t.to_array::<i8>().unwrap().iter().map(|&v| v as i32).collect(),
                crate::ir::DataType::UINT8 => t.to_array::<u8>().unwrap().iter().map(|&v| v as i32).collect(),
                other => panic!("weight of type {other:?}"),
            }
        };
        (q.dtype, values(&q), values(&zp))
    };
    let (signed_type, signed, signed_zp) = weight(false);
    let (unsigned_type, unsigned, unsigned_zp) = weight(true);
    assert_eq!((signed_type, unsigned_type), (crate::ir::DataType::INT8, crate::ir::DataType::UINT8));
    assert!(signed_zp.iter().all(|&z| z == 0) && unsigned_zp.iter().all(|&z| z == 128));
    assert!(signed.iter().any(|&v| v.abs() == 127), "the grid is used to its end");
    assert_eq!(unsigned, signed.iter().map(|v| v + 128).collect::<Vec<_>>());
}

/// A graph output nothing reads gets no Q/DQ pair in ONNX (the pair's value would be read by no
/// one, and it keeps ONNX Runtime from fusing the Gemm into its float-output integer kernel); for
/// LiteRT it keeps one, whose scale the converter writes as the int8 last layer's output.
#[test]
fn an_unread_graph_output_is_quantized_only_for_litert() {
    let logits = || {
        let mut m = classifier();
        m.graph.nodes.retain(|n| n.op_type != "Softmax");
        m.graph.outputs[0].name = "logits".into();
        m
    };
    let quantized = |in_litert: bool| {
        let mut m = logits();
        let config = QuantConfig { mode: QuantMode::Static, target_sqnr: 0.0, in_litert, ..Default::default() };
        quantize(&mut m, &config, Some(&calibration()), &Silent).unwrap();
        let index = GraphIndex::new(&m.graph);
        let readers: Vec<String> =
            index.consumers("logits").iter().map(|&(c, _)| m.graph.nodes[c].op_type.clone()).collect();
        let gemm = m.graph.nodes.iter().find(|n| n.op_type == "Gemm").unwrap();
        let dequantized = |t: &str| index.producer(t).is_some_and(|p| m.graph.nodes[p].op_type == "DequantizeLinear");
        assert!(dequantized(&gemm.inputs[0]) && dequantized(&gemm.inputs[1]), "the Gemm reads int8 either way");
        readers
    };
    assert_eq!(quantized(false), Vec::<String>::new(), "ONNX: the logits are the Gemm's float output");
    assert_eq!(quantized(true), vec!["QuantizeLinear".to_string()], "LiteRT: the logits get their int8 scale");
    // The same for a pass-through op's output (a Flatten after the Gemm), which would take the
    // Gemm output's scale.
    let flattened = |in_litert: bool| {
        let mut m = logits();
        m.graph.nodes.push(node("Flatten", &["logits"], "flat", &[("axis", int(1))]));
        m.graph.outputs[0].name = "flat".into();
        let config = QuantConfig { mode: QuantMode::Static, target_sqnr: 0.0, in_litert, ..Default::default() };
        quantize(&mut m, &config, Some(&calibration()), &Silent).unwrap();
        let index = GraphIndex::new(&m.graph);
        index.consumers("flat").len()
    };
    assert_eq!((flattened(false), flattened(true)), (0, 1), "a pair on the Flatten's output only for LiteRT");
}

/// SmoothQuant's observations ride on calibration's run when calibration sees no more rows than
/// SmoothQuant does: with nothing smoothed, one run serves both; with a group smoothed, the
/// smoothed model is calibrated again.
#[test]
fn smoothquant_rides_on_calibration_which_runs_again_only_when_it_smooths() {
    use crate::measure::Timed;
    let stages = |outlier: f32| {
        let (mut m, data) = crate::quant::smooth::tests::outlier_matmul(outlier);
        let config = QuantConfig { mode: QuantMode::Static, target_sqnr: 0.0, ..Default::default() };
        let timed = Timed::new(&Silent);
        let report = quantize(&mut m, &config, Some(&data), &timed).unwrap();
        let stages: Vec<String> = timed.stages().into_iter().map(|s| s.stage).collect();
        let smoothing = stages.iter().position(|s| s == "SmoothQuant").unwrap_or_else(|| panic!("{stages:?}"));
        let calibrated = |stages: &[String]| stages.iter().any(|s| s == "calibrate");
        (report.smoothing.len(), calibrated(&stages[..smoothing]), calibrated(&stages[smoothing..]))
    };
    assert_eq!(stages(40.0), (1, true, true), "smoothed: calibrated again");
    assert_eq!(stages(1.0), (0, true, false), "nothing smoothed: one run");
}
