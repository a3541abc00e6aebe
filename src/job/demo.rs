//! The demo: every job on a model and data bundled into the library (demo/README.md says where
//! they come from), so it needs no files and no network. Each step is the job its command runs,
//! so it says and checks what the command would; everything goes through [`Progress::say`].

use super::{say_block, Job};
use crate::data::{DataOptions, Dataset};
use crate::eval::{compare, evaluate, RunOptions};
use crate::measure::Progress;
use crate::report::text;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

const MODEL: &[u8] = include_bytes!("../../demo/digits_cnn.onnx");
const DATA: &[u8] = include_bytes!("../../demo/digits_test.npz");
const CALIB: &[u8] = include_bytes!("../../demo/digits_calib.npz");

/// Writes the bundled model and data to `dir` and runs the tour there: inspect, eval, a
/// lossless re-save, sparse and structured pruning, static quantization, compare, optimize.
pub fn demo(dir: &Path, data_options: &DataOptions, progress: &dyn Progress) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let bundled = |name: &str, bytes: &[u8]| -> Result<PathBuf> {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))?;
        Ok(path)
    };
    let model_path = bundled("digits_cnn.onnx", MODEL)?;
    let calib = Dataset::open_with(bundled("digits_calib.npz", CALIB)?, data_options)?;
    let test = Dataset::open_with(bundled("digits_test.npz", DATA)?, data_options)?;
    let say = |text: &str| say_block(progress, text);
    say("prunq demo: a 4-layer CNN trained on handwritten digits, 500 labelled test images\n");

    say(&format!("== inspect {}", model_path.display()));
    let model = crate::onnx::load(&model_path)?;
    say(&text::summary(&crate::analysis::summarize(&model, &Default::default(), Some(MODEL.len() as u64))?));
    say("\n== eval on the test set");
    let options = RunOptions::default();
    say(&text::eval(&evaluate(&model, &test, &options, progress)?));

    let copy = dir.join("digits_cnn.resaved.onnx");
    say(&format!("\n== load → IR → save {}", copy.display()));
    crate::onnx::save(&model, &copy, &Default::default())?;
    let same = std::fs::read(&copy).map_err(|e| Error::io(&copy, e))? == MODEL;
    say(&format!("byte-identical to the original: {}\n", if same { "yes" } else { "NO" }));

    // Every step below is its command's job on the bundled data: checked, written, compared with
    // its input on the test set and timed.
    let job = |original, input, output| Job {
        input: Some(input),
        output: Some(output),
        calib: Some(&calib),
        val: Some(&test),
        ..Job::new(original)
    };
    let sparse_path = dir.join("digits_cnn.sparse70.onnx");
    say(&format!("== prune --method sparsegpt --sparsity 0.7 --calib … --val … → {}", sparse_path.display()));
    let sparse =
        crate::prune::PruneConfig { method: crate::prune::Method::Sparsegpt, sparsity: 0.7, ..Default::default() };
    let pruned = job(&model, &model_path, &sparse_path).prune(&sparse, progress)?.model;

    let half_path = dir.join("digits_cnn.half_macs.onnx");
    say(&format!("\n== prune --structured --target-macs 0.5 --calib … --val … → {}", half_path.display()));
    let structured = crate::prune::PruneConfig { structured: true, target_macs: Some(0.5), ..Default::default() };
    job(&model, &model_path, &half_path).prune(&structured, progress)?;

    let quantized_path = dir.join("digits_cnn.sparse70.int8.onnx");
    say(&format!("\n== quantize --mode static the pruned model --calib … --val … → {}", quantized_path.display()));
    let static_int8 = crate::quant::QuantConfig { mode: crate::quant::QuantMode::Static, ..Default::default() };
    let quantized = job(&pruned, &sparse_path, &quantized_path).quantize(&static_int8, progress)?.model;
    say("\n== compare the pruned and quantized model with the original float model");
    say(&text::compare(&compare(&model, &quantized, &test, &options, progress)?));

    let best_path = dir.join("digits_cnn.optimized.onnx");
    let in_runtime = crate::runtime::RuntimeInfo::current()?;
    say(&format!("\n== optimize --max-drop 0.5 --calib … --val … → {} (in {in_runtime})", best_path.display()));
    let config = crate::optimize::OptimizeConfig {
        metric: crate::optimize::Metric::Accuracy,
        budget: crate::optimize::Budget::MaxDrop(0.5),
        objective: crate::optimize::Objective::Latency,
        time_budget: std::time::Duration::from_secs(120),
        texts: None,
        litert: false,
    };
    let recipe_path = dir.join("digits_cnn.optimized.toml");
    let observer = super::Announce(progress, config.metric);
    job(&model, &model_path, &best_path).optimize(&config, &observer, Some(&recipe_path), progress)?;
    say(&format!("its recipe: {} (`prunq apply` replays it to the same bytes)", recipe_path.display()));
    Ok(())
}
