//! Structured pruning: channels really leave the model, every coupled tensor
//! follows, the result runs in tract and ONNX Runtime, and the least-squares
//! repair recovers what plain removal loses.

mod common;

use prunq::data::Dataset;
use prunq::eval::{compare, RunOptions};
use prunq::ir::Model;
use prunq::measure::Silent;
use prunq::prune::structured::{
    prune_structured, Amount, Importance, Ranking, Selection, StructuredOptions, StructuredReport,
};
use std::path::Path;

fn options(amount: Amount) -> StructuredOptions {
    StructuredOptions {
        selection: Selection { amount, ranking: Ranking::Uniform, round_to: 16, min_channels: 16 },
        ..Default::default()
    }
}

/// Prunes `model` with `options` and calibration `calib`; returns the result,
/// the model before repair and the report.
fn prune(model: &str, options: &StructuredOptions, calib: Option<&str>) -> (Model, Option<Model>, StructuredReport) {
    let mut m = prunq::onnx::load(common::model(model)).unwrap();
    let calib = calib.map(|c| Dataset::open(common::data(c)).unwrap());
    let (report, unrepaired) = prune_structured(&mut m, options, calib.as_ref(), &Silent).unwrap();
    (m, unrepaired, report)
}

fn save(m: &Model, dir: &Path, name: &str) -> std::path::PathBuf {
    let out = dir.join(name);
    prunq::onnx::save(m, &out, &Default::default()).unwrap();
    out
}

/// `inspect` on the saved file sees the parameters and MACs the report claims.
fn assert_inspect_agrees(path: &Path, report: &StructuredReport, shapes: &[(&str, &[usize])]) {
    let shapes = shapes.iter().map(|(n, s)| (n.to_string(), s.to_vec())).collect();
    let s = prunq::analysis::summarize(&prunq::onnx::load(path).unwrap(), &shapes, None).unwrap();
    assert_eq!(s.parameters, report.after.params, "parameters");
    assert_eq!(s.macs, report.after.macs, "MACs");
}

fn sqnr(reference: &Model, candidate: &Model, data: &str) -> f64 {
    let data = Dataset::open(common::data(data)).unwrap();
    compare(reference, candidate, &data, &RunOptions::default(), &Silent).unwrap().outputs[0].sqnr_db
}

/// Runs a `tests/ort/` script that writes a model with dead channels and the
/// same model cut by hand; prunes the dead channels (activation threshold, no
/// rounding, no repair) and checks prunq's model against the hand-cut one:
/// channels removed per group, parameters, MACs, and outputs in tract and ONNX Runtime.
fn matches_the_hand_cut_model(script: &str, removed_per_group: &[usize]) -> StructuredReport {
    let dir = common::tempdir();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ort").join(script);
    let status = std::process::Command::new(common::python()).arg(script).arg(dir.path()).status().unwrap();
    assert!(status.success());
    let mut m = prunq::onnx::load(dir.path().join("full.onnx")).unwrap();
    let data = Dataset::open(dir.path().join("data.npz")).unwrap();
    let options = StructuredOptions {
        importance: Importance::Activation,
        selection: Selection {
            amount: Amount::Threshold(1e-6),
            ranking: Ranking::Uniform,
            round_to: 1,
            min_channels: 1,
        },
        repair: false,
        ..Default::default()
    };
    let (report, _) = prune_structured(&mut m, &options, Some(&data), &Silent).unwrap();
    let removed: Vec<usize> = report.groups.iter().map(|g| g.removed.len()).collect();
    assert_eq!(removed, removed_per_group, "dead channels per group");
    let out = save(&m, dir.path(), "pruned.onnx");
    let expected = prunq::onnx::load(dir.path().join("expected.onnx")).unwrap();
    let want = prunq::analysis::summarize(&expected, &Default::default(), None).unwrap();
    assert_eq!(report.after.params, want.parameters, "parameters of the hand-cut model");
    assert_eq!(report.after.macs, want.macs, "MACs of the hand-cut model");
    assert_inspect_agrees(&out, &report, &[]);
    let npz = dir.path().join("data.npz");
    let (ours, theirs) = (common::tract_outputs(&m, &npz, 32), common::tract_outputs(&expected, &npz, 32));
    common::assert_close("tract: pruned vs hand-cut", &theirs["out"], &ours["out"]);
    let (ort_full, ort_ours) =
        (common::ort_outputs(&dir.path().join("full.onnx"), &npz, 32), common::ort_outputs(&out, &npz, 32));
    common::assert_close("ONNX Runtime: pruned vs original", &ort_full["out"], &ort_ours["out"]);
    report
}

#[test]
fn dead_channels_are_cut_from_every_coupled_tensor() {
    // BatchNorm, Concat, depthwise, squeeze-excite, residual, Flatten -> Gemm.
    let report = matches_the_hand_cut_model("dead_channels.py", &[4, 2, 2, 1, 0]);
    assert_eq!(report.groups[2].sources.len(), 3, "pointwise, SE expand and residual conv are one group");
}

#[test]
fn channel_axis_split_and_slice_follow_the_channels() {
    // One conv's channels split in two and sliced: the group is cut into runs
    // (channel 0 | 1..4 | 4..8), split sizes and slice bounds shrink with them.
    matches_the_hand_cut_model("split_channels.py", &[0, 1, 1, 0]);
}

#[test]
fn keeping_every_channel_reproduces_the_outputs_exactly() {
    for (model, rows) in
        [("digits_cnn.onnx", 64), ("digits_resnet.onnx", 64), ("ppocr_cls_v2.onnx", 8), ("ppocr_rec_v4.onnx", 4)]
    {
        let src = prunq::onnx::load(common::model(model)).unwrap();
        let (m, _, report) = prune(model, &options(Amount::Ratio(0.0)), None);
        assert!(report.groups.iter().all(|g| g.removed.is_empty()), "{model}");
        assert_eq!(report.before, report.after, "{model}");
        let data = common::data_for(model);
        let (a, b) = (common::tract_outputs(&src, &data, rows), common::tract_outputs(&m, &data, rows));
        for (name, x) in &a {
            assert_eq!(x.to_f32(), b[name].to_f32(), "{model}: {name}");
        }
    }
}

#[test]
fn digits_cnn_at_half_and_thirty_percent_of_the_macs_keeps_its_accuracy_in_both_runtimes() {
    let dir = common::tempdir();
    let test = common::data("digits_test.npz");
    for (target, max_drop) in [(0.5, 0.004), (0.7, 0.01)] {
        let (m, unrepaired, report) =
            prune("digits_cnn.onnx", &options(Amount::TargetMacs(target)), Some("digits_calib.npz"));
        let removed = 1.0 - report.after.macs as f64 / report.before.macs as f64;
        assert!(removed >= target && removed < target + 0.1, "removed {removed} of the MACs");
        assert!(report.groups.iter().filter(|g| !g.removed.is_empty()).all(|g| g.kept % 16 == 0), "rounded to 16");
        let out = save(&m, dir.path(), "cnn.onnx");
        assert_inspect_agrees(&out, &report, &[]);
        let (tract, ort) = (common::accuracy_in_tract(&m, &test), common::accuracy_in_ort(&out, &test));
        assert!(0.998 - tract <= max_drop + 1e-9 && 0.998 - ort <= max_drop + 1e-9, "{target}: {tract} / {ort}");
        let plain = common::accuracy_in_tract(&unrepaired.unwrap(), &test);
        assert!(plain < tract - 0.05, "{target}: repair {tract} vs plain removal {plain}");
    }
}

#[test]
fn digits_resnet_prunes_its_residual_groups_to_sixty_percent_of_the_macs() {
    let dir = common::tempdir();
    let test = common::data("digits_test.npz");
    let (m, unrepaired, report) =
        prune("digits_resnet.onnx", &options(Amount::TargetMacs(0.4)), Some("digits_calib.npz"));
    // Each residual stream (a stem or downsampling conv plus two blocks) is one group.
    let residual: Vec<_> = report.groups.iter().filter(|g| g.sources.len() == 3).collect();
    assert_eq!(residual.len(), 2);
    assert!(residual.iter().any(|g| !g.removed.is_empty()), "a residual group is pruned, not skipped");
    assert!(report.groups.iter().all(|g| g.blocked.is_empty() || g.sources == ["/head/head.2/Gemm"]));
    let out = save(&m, dir.path(), "resnet.onnx");
    assert_inspect_agrees(&out, &report, &[]);
    let (tract, ort) = (common::accuracy_in_tract(&m, &test), common::accuracy_in_ort(&out, &test));
    assert!(0.994 - tract <= 0.02 && 0.994 - ort <= 0.02, "{tract} / {ort}");
    let plain = common::accuracy_in_tract(&unrepaired.unwrap(), &test);
    assert!(plain < tract - 0.05, "repair {tract} vs plain removal {plain}");
}

#[test]
fn digits_mlp_loses_half_its_parameters_and_under_a_point() {
    let dir = common::tempdir();
    let test = common::data("digits_test.npz");
    let (m, unrepaired, report) =
        prune("digits_mlp.onnx", &options(Amount::TargetParams(0.5)), Some("digits_calib.npz"));
    assert!(report.after.params as f64 <= 0.5 * report.before.params as f64);
    let out = save(&m, dir.path(), "mlp.onnx");
    assert_inspect_agrees(&out, &report, &[]);
    let (tract, ort) = (common::accuracy_in_tract(&m, &test), common::accuracy_in_ort(&out, &test));
    assert!(0.974 - tract <= 0.01 && 0.974 - ort <= 0.01, "{tract} / {ort}");
    let src = prunq::onnx::load(common::model("digits_mlp.onnx")).unwrap();
    let (plain, repaired) = (sqnr(&src, &unrepaired.unwrap(), "digits_test.npz"), sqnr(&src, &m, "digits_test.npz"));
    assert!(repaired > plain + 3.0, "SQNR {repaired} dB repaired vs {plain} dB");
}

#[test]
fn digits_vit_mlp_hidden_neurons_halved() {
    let dir = common::tempdir();
    let test = common::data("digits_test.npz");
    let (m, unrepaired, report) = prune("digits_vit.onnx", &options(Amount::Ratio(0.5)), Some("digits_calib.npz"));
    let pruned: Vec<_> = report.groups.iter().filter(|g| !g.removed.is_empty()).collect();
    assert_eq!(pruned.len(), 2, "one MLP per encoder layer");
    assert!(pruned.iter().all(|g| g.sources[0].contains("linear1") && g.channels == 256 && g.kept == 128));
    let out = save(&m, dir.path(), "vit.onnx");
    assert_inspect_agrees(&out, &report, &[]);
    let (tract, ort) = (common::accuracy_in_tract(&m, &test), common::accuracy_in_ort(&out, &test));
    assert!(0.968 - tract <= 0.02 && 0.968 - ort <= 0.02, "{tract} / {ort}");
    let src = prunq::onnx::load(common::model("digits_vit.onnx")).unwrap();
    let (plain, repaired) = (sqnr(&src, &unrepaired.unwrap(), "digits_test.npz"), sqnr(&src, &m, "digits_test.npz"));
    assert!(repaired > plain + 3.0, "SQNR {repaired} dB repaired vs {plain} dB");
}

/// Top-1 agreement with the original, from tract's comparison.
fn agreement(reference: &Model, candidate: &Model, data: &Path) -> f64 {
    let data = Dataset::open(data).unwrap();
    compare(reference, candidate, &data, &RunOptions::default(), &Silent).unwrap().outputs[0].top1_agreement
}

#[test]
fn ppocr_cls_at_seventy_percent_of_the_macs_runs_in_both_runtimes_and_repair_helps() {
    let dir = common::tempdir();
    let (m, unrepaired, report) =
        prune("ppocr_cls_v2.onnx", &options(Amount::TargetMacs(0.3)), Some("ocr_cls_calib.npz"));
    assert!(report.folded_reshapes > 0, "Paddle's bias reshapes are folded");
    // Squeeze-excite gates join their block's group: groups made by two convs.
    assert!(report.groups.iter().any(|g| g.sources.len() == 2 && !g.removed.is_empty()));
    let out = save(&m, dir.path(), "cls.onnx");
    let test = common::data("ocr_cls_test.npz");
    let (t, o) = (common::tract_outputs(&m, &test, 16), common::ort_outputs(&out, &test, 16));
    for (name, x) in &t {
        assert_eq!(x.shape(), &[16, 2], "{name}: the output keeps its shape");
        common::assert_close(name, x, &o[name]);
    }
    let src = prunq::onnx::load(common::model("ppocr_cls_v2.onnx")).unwrap();
    let (plain, repaired) = (agreement(&src, &unrepaired.unwrap(), &test), agreement(&src, &m, &test));
    assert!(repaired > plain && repaired >= 0.9, "agreement {repaired} repaired vs {plain}");
}

#[test]
fn ppocr_rec_at_seventy_percent_of_the_macs_reads_text_in_both_runtimes_and_repair_helps() {
    let dir = common::tempdir();
    let (m, unrepaired, report) =
        prune("ppocr_rec_v4.onnx", &options(Amount::TargetMacs(0.3)), Some("ocr_lines_calib.npz"));
    assert!(1.0 - report.after.macs as f64 / report.before.macs as f64 >= 0.3);
    let out = save(&m, dir.path(), "rec.onnx");
    let (tract, ort) = (common::ocr_exact_lines_in_tract(&m), common::ocr_exact_lines_in_ort(&out));
    assert!((tract - ort).abs() <= 2.0 / 128.0, "tract {tract} vs ORT {ort}");
    let plain = common::ocr_exact_lines_in_tract(&unrepaired.unwrap());
    assert!(tract > plain + 0.2, "exact lines {tract} repaired vs {plain}");
}
