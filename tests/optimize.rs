//! `prunq optimize` and `prunq apply` (issue 17): the search keeps its budget
//! (judged again here in ONNX Runtime and tract), writes its recipe, and the
//! recipe replays to the same bytes; recipes chain the commands exactly.
//! Speed and size floors are in bench/optimize.py.

mod common;

use common::{os, prunq_quiet as prunq};
use std::path::Path;

fn ok(args: &[&std::ffi::OsStr]) -> std::process::Output {
    let r = prunq(args);
    assert!(r.status.success(), "{:?}: {}", args, String::from_utf8_lossy(&r.stderr));
    r
}

fn bytes(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

/// digits_cnn with --max-drop 0.5: the written model is judged again in both runtimes
/// and keeps the budget; the report holds every candidate, a Pareto front and the
/// one written; `apply` of the saved recipe gives the same file.
#[test]
fn digits_cnn_optimize_keeps_the_budget_and_its_recipe_replays() {
    let dir = common::tempdir();
    let (model, calib, test) =
        (common::model("digits_cnn.onnx"), common::data("digits_calib.npz"), common::data("digits_test.npz"));
    let (out, recipe, report) = (dir.path().join("o.onnx"), dir.path().join("r.toml"), dir.path().join("r.json"));
    common::optimize_digits_cnn(&out, &[os("--save-recipe"), recipe.as_os_str(), os("--report"), report.as_os_str()]);
    let r: serde_json::Value = serde_json::from_slice(&bytes(&report)).unwrap();
    let candidates = r["candidates"].as_array().unwrap();
    assert!(candidates.len() >= 6, "quantization and pruning both tried: {}", candidates.len());
    let chosen = &candidates[r["chosen"].as_u64().expect("a candidate kept the budget") as usize];
    assert!(chosen["meets_budget"].as_bool().unwrap() && chosen["pareto"].as_bool().unwrap());
    let labels: Vec<&str> = candidates.iter().map(|c| c["label"].as_str().unwrap()).collect();
    assert!(
        labels.iter().any(|l| l.contains("structured")) && labels.iter().any(|l| l.contains("static")),
        "{labels:?}"
    );
    // The budget holds in both runtimes, on the same validation split.
    let original = common::accuracy_in_ort(&model, &test);
    let in_ort = common::accuracy_in_ort(&out, &test);
    let in_tract = common::accuracy_in_tract(&prunq::onnx::load(&out).unwrap(), &test);
    for (runtime, acc) in [("ort", in_ort), ("tract", in_tract)] {
        assert!(acc >= original - 0.005 - 1e-9, "{runtime}: {acc} against {original}");
    }
    // Smaller: the winner is pruned and/or quantized.
    let ratio = bytes(&out).len() as f64 / bytes(&model).len() as f64;
    assert!(ratio < 0.5, "{ratio:.3}× the size");
    // The recipe replays to the same bytes.
    let text = std::fs::read_to_string(&recipe).unwrap();
    assert!(text.contains("[[step]]") && text.starts_with("# prunq recipe"), "{text}");
    let again = common::replayed(&recipe, &model, &dir.path().join("again.onnx"), &calib);
    assert!(again == bytes(&out), "apply of the saved recipe differs from optimize's output");
    // The page draws the search.
    let page = dir.path().join("r.html");
    ok(&[os("report"), report.as_os_str(), os("-o"), page.as_os_str()]);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("circle class=point") && html.contains("Candidates (in the order measured)"));
}

/// A hand-written recipe is the commands chained: structured pruning then dynamic
/// quantization gives the bytes `prunq prune` then `prunq quantize` give, with any
/// thread count.
#[test]
fn a_recipe_is_the_commands_chained() {
    let dir = common::tempdir();
    let (model, calib) = (common::model("digits_mlp.onnx"), common::data("digits_calib.npz"));
    let recipe = dir.path().join("r.toml");
    std::fs::write(
        &recipe,
        "[[step]]\nkind = \"prune\"\nstructured = true\ntarget-params = 0.3\n\n\
         [[step]]\nkind = \"quantize\"\nmode = \"dynamic\"\n",
    )
    .unwrap();
    let (pruned, chained, applied) = (dir.path().join("p.onnx"), dir.path().join("c.onnx"), dir.path().join("a.onnx"));
    let no_check = os("--no-latency-check");
    ok(&[
        os("prune"),
        model.as_os_str(),
        os("--structured"),
        os("--target-params"),
        os("0.3"),
        os("--calib"),
        calib.as_os_str(),
        os("-o"),
        pruned.as_os_str(),
        no_check,
    ]);
    ok(&[
        os("quantize"),
        pruned.as_os_str(),
        os("--mode"),
        os("dynamic"),
        os("--calib"),
        calib.as_os_str(),
        os("-o"),
        chained.as_os_str(),
        no_check,
    ]);
    ok(&[
        os("apply"),
        recipe.as_os_str(),
        model.as_os_str(),
        os("-o"),
        applied.as_os_str(),
        os("--calib"),
        calib.as_os_str(),
        no_check,
    ]);
    assert!(bytes(&applied) == bytes(&chained), "the recipe and the chained commands differ");
    // Replayed with one thread, the same bytes as with every core.
    let one_thread = dir.path().join("a1.onnx");
    ok(&[
        os("--threads"),
        os("1"),
        os("apply"),
        recipe.as_os_str(),
        model.as_os_str(),
        os("-o"),
        one_thread.as_os_str(),
        os("--calib"),
        calib.as_os_str(),
        no_check,
    ]);
    assert!(bytes(&one_thread) == bytes(&applied), "apply with --threads 1 differs");
    let m = prunq::onnx::load(&applied).unwrap();
    assert!(m.graph.nodes.iter().any(|n| n.op_type == "MatMulInteger" || n.op_type == "DynamicQuantizeLinear"));
}

/// Bad recipes name the file and what is wrong, with the usage exit code; a
/// step that needs data says so; nothing is written.
#[test]
fn bad_recipes_are_refused_by_name() {
    let dir = common::tempdir();
    let model = common::model("digits_mlp.onnx");
    let out = dir.path().join("o.onnx");
    for (text, says) in [
        ("[[step]]\nkind = \"quantize\"\nmodes = \"dynamic\"\n", "modes"),
        ("[[step]]\nkind = \"shrink\"\n", "shrink"),
        ("[[step]]\nkind = \"quantize\"\nmode = \"static\"\n", "--calib"),
        ("[[step]]\nkind = \"quantize\"\nbits = 3\n", "bits 3"),
    ] {
        let recipe = dir.path().join("bad.toml");
        std::fs::write(&recipe, text).unwrap();
        let r = prunq(&[os("apply"), recipe.as_os_str(), model.as_os_str(), os("-o"), out.as_os_str()]);
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(2), "{text}: {err}");
        assert!(err.contains(says), "{text}: {err}");
        assert!(!out.exists(), "{text}: nothing is written");
    }
}

/// Out of time before the first candidate: the input is written as it was
/// (never nothing), with an empty recipe, and the run says so.
#[test]
fn no_time_writes_the_input_and_says_so() {
    let dir = common::tempdir();
    let (model, data) = (common::model("digits_mlp.onnx"), common::data("digits_test.npz"));
    let (out, recipe) = (dir.path().join("o.onnx"), dir.path().join("r.toml"));
    let r = ok(&[
        os("optimize"),
        model.as_os_str(),
        os("-o"),
        out.as_os_str(),
        os("--calib"),
        data.as_os_str(),
        os("--val"),
        data.as_os_str(),
        os("--time-budget"),
        os("0s"),
        os("--save-recipe"),
        recipe.as_os_str(),
    ]);
    let said = String::from_utf8_lossy(&r.stdout);
    assert!(said.contains("no candidate kept the budget") && said.contains("time budget"), "{said}");
    let (a, b) = (prunq::onnx::load(&model).unwrap(), prunq::onnx::load(&out).unwrap());
    assert_eq!(prunq::onnx::encode(&a).unwrap(), prunq::onnx::encode(&b).unwrap());
    assert!(!std::fs::read_to_string(&recipe).unwrap().contains("[[step]]"));
}

/// `prune`, `apply` and `optimize` honour `--external-data` as `quantize` does: the weights go to one
/// data file beside the model, and the model read back holds what the inline output holds.
#[test]
fn every_command_that_writes_a_model_writes_external_data_when_asked() {
    let dir = common::tempdir();
    let (model, data) = (common::model("digits_mlp.onnx"), common::data("digits_calib.npz"));
    let recipe = dir.path().join("r.toml");
    std::fs::write(&recipe, "[[step]]\nkind = \"prune\"\nsparsity = 0.5\n").unwrap();
    let prune = [os("prune"), model.as_os_str(), os("--no-latency-check")];
    let apply = [os("apply"), recipe.as_os_str(), model.as_os_str(), os("--no-latency-check")];
    let optimize = [
        os("optimize"),
        model.as_os_str(),
        os("--calib"),
        data.as_os_str(),
        os("--val"),
        data.as_os_str(),
        os("--time-budget"),
        os("0s"),
    ];
    for (name, command) in [("prune", &prune[..]), ("apply", &apply[..]), ("optimize", &optimize[..])] {
        let folder = dir.path().join(name);
        std::fs::create_dir(&folder).unwrap();
        let (external, inline) = (folder.join("external.onnx"), dir.path().join(format!("{name}.inline.onnx")));
        ok(&[command, &[os("-o"), external.as_os_str(), os("--external-data")]].concat());
        ok(&[command, &[os("-o"), inline.as_os_str()]].concat());
        let files: Vec<String> = std::fs::read_dir(&folder)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(files.len(), 2, "{name}: the model and one data file: {files:?}");
        assert!(files.iter().any(|f| f.starts_with("external.onnx.") && f.ends_with(".data")), "{name}: {files:?}");
        assert!(bytes(&external).len() < bytes(&inline).len() / 4, "{name}: the weights left the model file");
        let (a, b) = (prunq::onnx::load(&external).unwrap(), prunq::onnx::load(&inline).unwrap());
        for t in &b.graph.initializers {
            let other = a.graph.initializers.iter().find(|x| x.name == t.name).expect("same initializers");
            assert_eq!(other.to_f32().unwrap(), t.to_f32().unwrap(), "{name}: {}", t.name);
        }
    }
}
