//! The jobs' guarantees, on small graphs in tract (the library's default runtime): a library
//! caller gets the refusal, the external data and the report the CLI gets.

use super::{Checks, Job};
use crate::data::{Array, Dataset};
use crate::ir::testing::{model, node, tensor};
use crate::ir::{DataType, Dim, Model, ValueInfo};
use crate::measure::Silent;
use crate::prune::PruneConfig;
use crate::quant::{QuantConfig, QuantMode};
use std::collections::BTreeMap;

/// `y = x · 1000` on inputs `[N, 4]`.
fn scale_by_1000() -> Model {
    let mut m =
        model(vec![node("Mul", &["x", "k"], "y", &[])], vec![tensor("k", &[1], |_| 1000.0)], &[1, 4], &["y"], 17);
    let shape = [Dim::Symbolic("N".into()), Dim::Fixed(4)];
    m.graph.inputs[0] = ValueInfo::tensor("x", Some(DataType::FLOAT), Some(&shape));
    m
}

/// `y = x · W`, W `[4, 64]` (1 KiB: large enough for external data).
fn one_matmul() -> Model {
    let w = tensor("w", &[4, 64], crate::ir::testing::wavy);
    let mut m = model(vec![node("MatMul", &["x", "w"], "y", &[])], vec![w], &[1, 4], &["y"], 17);
    let shape = [Dim::Symbolic("N".into()), Dim::Fixed(4)];
    m.graph.inputs[0] = ValueInfo::tensor("x", Some(DataType::FLOAT), Some(&shape));
    m
}

/// 32 rows of `x`: the first 16 small, row 20 with a 100 — `y` reaches 100 000 there, past
/// float16's range, on a row fp16's own range measurement (the first 16 rows) never sees.
fn rows_with_a_late_outlier() -> Dataset {
    let x = ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[32, 4]), |i| if i[0] == 20 { 100.0 } else { 0.5 });
    Dataset::from_arrays("rows.npz", BTreeMap::from([("x".to_string(), Array::F32(x))]))
}

#[test]
fn a_result_that_turns_non_finite_is_refused_and_nothing_is_written() {
    let original = scale_by_1000();
    let val = rows_with_a_late_outlier();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("half.onnx");
    let job = Job { output: Some(&out), val: Some(&val), ..Job::new(&original) };
    let fp16 = QuantConfig { mode: QuantMode::Fp16, ..Default::default() };
    let e = job.quantize(&fp16, &Silent).err().expect("refused").to_string();
    assert!(e.contains("not written") && e.contains("output 'y'") && e.contains("non-finite"), "{e}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "a refused result leaves no file");
}

#[test]
fn a_job_writes_external_data_and_its_report_when_asked() {
    let original = one_matmul();
    let dir = tempfile::tempdir().unwrap();
    let (out, report) = (dir.path().join("sparse.onnx"), dir.path().join("r.json"));
    let checks = Checks { latency: false, external_data: true, report: Some(report.clone()), ..Default::default() };
    let job = Job { output: Some(&out), checks, ..Job::new(&original) };
    let done = job.prune(&PruneConfig { prune_ends: true, ..Default::default() }, &Silent).unwrap();
    let data: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "data"))
        .collect();
    assert_eq!(data.len(), 1, "one external data file beside the model");
    let reread = crate::onnx::load(&out).unwrap();
    assert_eq!(reread.graph.initializers.len(), done.model.graph.initializers.len());
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["command"], "prune");
    assert_eq!(json["output_check"]["outputs"][0]["name"], "y", "{json}");
    assert_eq!(json["output_check"]["synthetic"], true, "no data: checked on made-up inputs");
    let zeros = reread.graph.initializers[0].to_f32().unwrap().iter().filter(|v| **v == 0.0).count();
    assert_eq!(zeros, 128, "half the weights zeroed, and they were read back from the data file");
}

#[test]
fn a_job_refuses_to_overwrite_its_input_and_needs_data_where_the_pass_does() {
    let original = scale_by_1000();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.onnx");
    crate::onnx::save(&original, &path, &Default::default()).unwrap();
    let same = Job { input: Some(&path), output: Some(&path), ..Job::new(&original) };
    let e = same.quantize(&QuantConfig::default(), &Silent).err().expect("refused").to_string();
    assert!(e.contains("refusing to overwrite the input"), "{e}");
    let no_data = Job::new(&original);
    let e = no_data.quantize(&QuantConfig { mode: QuantMode::Static, ..Default::default() }, &Silent);
    assert!(e.err().expect("refused").to_string().contains("needs calibration data"));
}

/// Keeps what a job says.
#[derive(Default)]
struct Said(std::cell::RefCell<Vec<String>>);
impl crate::measure::Progress for Said {
    fn say(&self, line: &str) {
        self.0.borrow_mut().push(line.to_string());
    }
}

#[test]
fn what_a_job_says_reaches_its_caller_line_by_line() {
    let original = one_matmul();
    let said = Said::default();
    let job = Job { checks: Checks { latency: false, ..Default::default() }, ..Job::new(&original) };
    let done = job.quantize(&QuantConfig::default(), &said).unwrap();
    let lines = said.0.borrow();
    assert!(lines.iter().any(|l| l.starts_with("1 tensors quantized, 0 left float;")), "{lines:?}");
    assert!(lines.iter().all(|l| !l.contains('\n')), "one line each: {lines:?}");
    assert_eq!(done.report.tensors.len(), 1);
    assert!(
        done.report.size_after < done.report.size_before,
        "int8 weights: {} → {}",
        done.report.size_before,
        done.report.size_after
    );
    assert!(done.report.output_check.expect("checked").synthetic, "no data: made-up inputs");
    assert!(done.report.seconds.is_some_and(|s| s > 0.0), "the job's time is reported");
}

/// Where a quantization job's time went, stage by stage, as the progress bar names the stages.
#[test]
fn a_quantize_report_says_where_the_time_went() {
    let original = one_matmul();
    let calib = varied_rows();
    let job =
        Job { calib: Some(&calib), checks: Checks { latency: false, ..Default::default() }, ..Job::new(&original) };
    let done = job.quantize(&QuantConfig { mode: QuantMode::Static, ..Default::default() }, &Silent).unwrap();
    let stages: Vec<&str> = done.report.stages.iter().map(|s| s.stage.as_str()).collect();
    // The work besides the measured stages is timed too: what runs before calibration and the check.
    for stage in ["simplify", "folds", "SmoothQuant", "calibrate", "quality check"] {
        assert!(stages.contains(&stage), "{stage} in {stages:?}");
    }
    let total: f64 = done.report.stages.iter().map(|s| s.seconds).sum();
    assert!(total <= done.report.seconds.expect("timed") + 1e-9, "stages within the job's time");
}

/// A job that times its result on data checks it from the same runs: the quality line is on the
/// data's rows, and the speed is the one measured there.
#[test]
fn a_timed_job_checks_its_result_from_the_latency_checks_runs() {
    let original = one_matmul();
    let calib = varied_rows();
    let said = Said::default();
    let job = Job { calib: Some(&calib), ..Job::new(&original) };
    let done = job.quantize(&QuantConfig { mode: QuantMode::Static, ..Default::default() }, &said).unwrap();
    let check = done.report.output_check.expect("checked");
    assert_eq!((check.rows, check.synthetic), (Some(32), false), "on the data's rows");
    assert_eq!(check.outputs[0].values, 32 * 64, "every row's output, once");
    let latency = done.report.latency.expect("timed");
    assert!(latency.runs >= 20 && latency.inputs == "the given data", "{latency:?}");
    let stages: Vec<&str> = done.report.stages.iter().map(|s| s.stage.as_str()).collect();
    assert!(!stages.contains(&"quality check"), "no check of its own: {stages:?}");
    let lines = said.0.borrow();
    let (quality, speed) = (
        lines.iter().position(|l| l.starts_with("quality on 32 rows")),
        lines.iter().position(|l| l.starts_with("speed: ") || l.starts_with("warning: the output runs SLOWER")),
    );
    assert!(quality.is_some() && speed.is_some() && quality < speed, "{lines:?}");
}

#[test]
fn tables_are_said_line_by_line() {
    let said = Said::default();
    super::say_block(&said, "a\nb\n");
    super::say_block(&said, "\nwith repair:");
    assert_eq!(*said.0.borrow(), ["a", "b", "", "with repair:"]);
}

#[test]
fn apply_and_optimize_say_which_data_they_need() {
    let original = one_matmul();
    let job = Job::new(&original);
    let recipe: crate::optimize::Recipe =
        toml::from_str("[[step]]\nkind = \"prune\"\nmethod = \"wanda\"\n").expect("a recipe");
    let e = job.apply(&recipe, &Silent).err().expect("refused").to_string();
    assert!(e.contains("needs calibration data"), "{e}");
    let config = crate::optimize::OptimizeConfig {
        metric: crate::optimize::Metric::Agreement,
        budget: super::default_budget(crate::optimize::Metric::Agreement),
        objective: crate::optimize::Objective::Latency,
        time_budget: std::time::Duration::from_secs(1),
        texts: None,
        litert: false,
    };
    let announce = super::Announce(&Silent, config.metric);
    let e = job.optimize(&config, &announce, None, &Silent).err().expect("refused").to_string();
    assert!(e.contains("calibration data and validation data"), "{e}");
    assert_eq!(super::default_budget(crate::optimize::Metric::Cosine), crate::optimize::Budget::MaxDrop(0.01));
}

/// A model whose weights sit in an `If` branch: `weights_inside` values there, `outside` in the
/// main graph.
fn weights_in_a_branch(weights_inside: usize, outside: usize) -> Model {
    let branch = crate::ir::Graph { initializers: vec![tensor("w", &[weights_inside], |_| 1.0)], ..Default::default() };
    let branch = crate::ir::Attribute {
        name: "then_branch".into(),
        value: crate::ir::AttrValue::Graph(Box::new(branch)),
        doc_string: String::new(),
        ref_attr_name: String::new(),
    };
    let mut iff = node("If", &["cond"], "y", &[]);
    iff.attributes.push(branch);
    model(vec![iff], vec![tensor("v", &[outside], |_| 1.0)], &[1], &["y"], 17)
}

#[test]
fn weights_left_in_control_flow_are_said_and_refused_when_nothing_else_was_done() {
    let said = Said::default();
    let mostly_inside = weights_in_a_branch(100, 10);
    let e = super::untouched_subgraphs(&mostly_inside, "quantized", true, &said).expect_err("refused").to_string();
    assert!(e.contains("nothing outside control flow") && e.contains("If") && e.contains("100 weight values"), "{e}");
    let note = super::untouched_subgraphs(&mostly_inside, "pruned", false, &said).unwrap().expect("a note");
    assert!(note.contains("were not pruned") && said.0.borrow()[0].starts_with("warning: "), "{note}");
    let plain = one_matmul();
    assert!(super::untouched_subgraphs(&plain, "quantized", true, &said).unwrap().is_none());
}

/// 32 rows of 4 varied features.
fn varied_rows() -> Dataset {
    let x = ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[32, 4]), |i| ((i[0] * 4 + i[1]) as f32 * 0.37).sin());
    Dataset::from_arrays("val.npz", BTreeMap::from([("x".to_string(), Array::F32(x))]))
}

#[test]
fn a_quality_budget_refuses_a_result_past_it_before_anything_is_written() {
    use crate::optimize::{Budget, Metric};
    let (original, val) = (one_matmul(), varied_rows());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sparse.onnx");
    let prune = PruneConfig { prune_ends: true, ..Default::default() };
    let budget = |budget| super::QualityBudget { metric: Some(Metric::Cosine), budget, texts: None };
    let checks = |b| Checks { latency: false, budget: Some(budget(b)), ..Default::default() };
    let strict =
        Job { output: Some(&out), val: Some(&val), checks: checks(Budget::MaxDrop(0.0)), ..Job::new(&original) };
    let e = strict.prune(&prune, &Silent).err().expect("refused").to_string();
    assert!(e.contains("past the quality budget, not written") && e.contains("cosine"), "{e}");
    assert!(!out.exists(), "nothing written");
    let said = Said::default();
    let loose =
        Job { output: Some(&out), val: Some(&val), checks: checks(Budget::MaxDrop(0.5)), ..Job::new(&original) };
    loose.prune(&prune, &said).unwrap();
    assert!(out.exists());
    let lines = said.0.borrow();
    assert!(
        lines.iter().any(|l| l.starts_with("quality on 32 rows of the validation data in tract: output 'y': top-1")),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l.starts_with("quality budget kept: cosine")), "{lines:?}");
    let no_val = Job { checks: checks(Budget::MaxDrop(0.5)), ..Job::new(&original) };
    let e = no_val.prune(&prune, &Silent).err().expect("refused").to_string();
    assert!(e.contains("needs validation data"), "{e}");
}

/// fp16 of an audio front end (a 1-D conv with a kernel of 5 over `[N, 1, L]`) without data: the
/// made-up inputs grow until the model makes output (L = 8), and the result is judged on them.
#[test]
fn fp16_without_data_is_checked_at_a_size_the_model_accepts() {
    let w = tensor("w", &[1, 1, 5], crate::ir::testing::wavy);
    let mut m = model(vec![node("Conv", &["x", "w"], "y", &[])], vec![w], &[1, 1, 1], &["y"], 17);
    let shape = [Dim::Symbolic("N".into()), Dim::Fixed(1), Dim::Symbolic("L".into())];
    m.graph.inputs[0] = ValueInfo::tensor("x", Some(DataType::FLOAT), Some(&shape));
    let job = Job { checks: Checks { latency: false, ..Default::default() }, ..Job::new(&m) };
    let done = job.quantize(&QuantConfig { mode: QuantMode::Fp16, ..Default::default() }, &Silent).unwrap();
    let check = done.report.output_check.expect("checked");
    assert!(check.synthetic);
    assert_eq!(check.outputs.len(), 1, "the output was compared: {check:?}");
    assert_eq!(check.outputs[0].values, 2 * 4, "2 rows of 8 samples make 4 outputs each");
}

/// 520 rows of `x` whose 32 rows the check holds out (row i·520/32) are 100 times the others:
/// a pass that fitted to them would cover them; one that did not clips them.
#[test]
fn a_large_calibration_set_lends_rows_the_pass_never_saw_to_the_check() {
    let original = one_matmul();
    let rows = 520;
    let held: Vec<usize> = (0..crate::eval::CHECK_ROWS).map(|i| i * rows / crate::eval::CHECK_ROWS).collect();
    let x = ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[rows, 4]), |i| {
        let v = ((i[0] * 4 + i[1]) as f32 * 0.37).sin();
        if held.contains(&i[0]) {
            100.0 * v
        } else {
            v
        }
    });
    let calib = Dataset::from_arrays("calib.npz", BTreeMap::from([("x".to_string(), Array::F32(x))]));
    let said = Said::default();
    let job =
        Job { calib: Some(&calib), checks: Checks { latency: false, ..Default::default() }, ..Job::new(&original) };
    let config = QuantConfig { mode: QuantMode::Static, target_sqnr: 0.0, ..Default::default() };
    let done = job.quantize(&config, &said).unwrap();
    let calibrated = done.report.stages.iter().find(|s| s.stage == "calibrate").expect("calibrated");
    // (One pass over the rows per range statistic in tract.)
    assert!(calibrated.units % 488 == 0 && calibrated.units % 520 != 0, "fitted to 488 rows: {}", calibrated.units);
    let lines = said.0.borrow().join("\n");
    assert!(
        lines.contains("on 32 rows of the calibration data held out from the pass (it fitted to the other 488)"),
        "{lines}"
    );
    let check = done.report.output_check.expect("checked");
    assert!(check.outputs[0].sqnr_db < 10.0, "held-out rows past the fitted ranges: {}", check.outputs[0].sqnr_db);
    assert!(lines.contains("warning: output 'y' diverges"), "{lines}");

    // A recipe replays what `optimize` fitted to every row: the same rows, the held-out ones too.
    let said = Said::default();
    let recipe: crate::optimize::Recipe =
        toml::from_str("[[step]]\nkind = \"quantize\"\nmode = \"static\"\ntarget-sqnr = 0.0\n").expect("a recipe");
    let job =
        Job { calib: Some(&calib), checks: Checks { latency: false, ..Default::default() }, ..Job::new(&original) };
    let applied = job.apply(&recipe, &said).unwrap().report.output_check.expect("checked");
    assert!(applied.outputs[0].sqnr_db > 10.0, "fitted to the large rows too: {}", applied.outputs[0].sqnr_db);
    assert!(said.0.borrow().join("\n").contains("(what the recipe fitted to: pass --val"));

    // Under 512 rows the pass fits to all of them and the line says the check ran on those.
    let few = calib.rows(&(0..200).collect::<Vec<_>>());
    let said = Said::default();
    let job = Job { calib: Some(&few), checks: Checks { latency: false, ..Default::default() }, ..Job::new(&original) };
    let done = job.quantize(&config, &said).unwrap();
    assert_eq!(done.report.stages.iter().find(|s| s.stage == "calibrate").unwrap().units % 200, 0);
    assert!(said.0.borrow().join("\n").contains("(what the pass fitted to: pass --val, or 512 rows"));
}
