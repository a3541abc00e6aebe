//! `prunq demo`: the whole job on a model and data bundled into the binary
//! (demo/README.md says where they come from), so it needs no files and no network.

use crate::eval::{compare, evaluate, RunOptions};
use crate::measure::Progress;

const MODEL: &[u8] = include_bytes!("../../demo/digits_cnn.onnx");
const DATA: &[u8] = include_bytes!("../../demo/digits_test.npz");
const CALIB: &[u8] = include_bytes!("../../demo/digits_calib.npz");

#[derive(clap::Args)]
pub struct Args {
    /// Keep the demo's files in this folder instead of a temporary one.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

pub fn run(a: Args, progress: &dyn Progress) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = a.out.unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let (model_path, data_path) = (dir.join("digits_cnn.onnx"), dir.join("digits_test.npz"));
    std::fs::write(&model_path, MODEL)?;
    std::fs::write(&data_path, DATA)?;
    let calib_path = dir.join("digits_calib.npz");
    std::fs::write(&calib_path, CALIB)?;
    println!("prunq demo: a 4-layer CNN trained on handwritten digits, 500 labelled test images\n");

    println!("== inspect {}", model_path.display());
    let model = crate::onnx::load(&model_path)?;
    let summary = crate::analysis::summarize(&model, &Default::default(), Some(MODEL.len() as u64))?;
    println!("{}", crate::report::text::summary(&summary));

    println!("== eval on the test set");
    let options = RunOptions::default();
    let data = super::open_data(&data_path)?;
    println!("{}", crate::report::text::eval(&evaluate(&model, &data, &options, progress)?));

    let copy = dir.join("digits_cnn.resaved.onnx");
    println!("== load → IR → save {}", copy.display());
    crate::onnx::save(&model, &copy, &Default::default())?;
    let same = std::fs::read(&copy)? == MODEL;
    println!("byte-identical to the original: {}\n", if same { "yes" } else { "NO" });

    println!("== compare the saved model with the original");
    let resaved = crate::onnx::load(&copy)?;
    println!("{}", crate::report::text::compare(&compare(&model, &resaved, &data, &options, progress)?));

    let calib = super::open_data(&calib_path)?;
    let pruned_path = dir.join("digits_cnn.sparse70.onnx");
    println!("== prune --method sparsegpt --sparsity 0.7 --calib digits_calib.npz → {}", pruned_path.display());
    let mut pruned = model.clone();
    let prune_options =
        crate::prune::SparseOptions { method: crate::prune::Method::Sparsegpt, sparsity: 0.7, ..Default::default() };
    let mut prune_report = crate::prune::PruneReport::default();
    crate::prune::prune_sparse(&mut pruned, &prune_options, Some(&calib), &mut prune_report, progress)?;
    crate::onnx::save(&pruned, &pruned_path, &Default::default())?;
    println!(
        "{} layers at {:.0} % sparsity (first and last kept dense); accuracy {:.2} %\n",
        prune_report.layers.len(),
        prune_report.sparsity * 100.0,
        evaluate(&pruned, &data, &options, progress)?.accuracy.unwrap_or(0.0) * 100.0
    );

    let half_path = dir.join("digits_cnn.half_macs.onnx");
    println!("== prune --structured --target-macs 0.5 --calib digits_calib.npz → {}", half_path.display());
    let mut half = model.clone();
    let structured = crate::prune::structured::StructuredOptions {
        selection: crate::prune::structured::Selection {
            amount: crate::prune::structured::Amount::TargetMacs(0.5),
            ..crate::prune::structured::StructuredOptions::default().selection
        },
        ..Default::default()
    };
    let (half_report, unrepaired) =
        crate::prune::structured::prune_structured(&mut half, &structured, Some(&calib), progress)?;
    crate::onnx::save(&half, &half_path, &Default::default())?;
    let plain = match &unrepaired {
        Some(m) => evaluate(m, &data, &options, progress)?.accuracy.unwrap_or(0.0) * 100.0,
        None => f64::NAN,
    };
    println!(
        "channels physically removed: MACs {} → {}, parameters {} → {}; accuracy {:.2} % (plain removal: {:.2} %, \
         the least-squares repair recovers it)\n",
        crate::report::table::thousands(half_report.before.macs),
        crate::report::table::thousands(half_report.after.macs),
        crate::report::table::thousands(half_report.before.params),
        crate::report::table::thousands(half_report.after.params),
        evaluate(&half, &data, &options, progress)?.accuracy.unwrap_or(0.0) * 100.0,
        plain
    );

    let quantized_path = dir.join("digits_cnn.sparse70.int8.onnx");
    println!("== quantize --mode static --calib digits_calib.npz the pruned model → {}", quantized_path.display());
    let mut quantized = pruned.clone();
    let mut report = crate::quant::QuantReport::default();
    let static_options = crate::quant::StaticOptions::default();
    crate::quant::quantize_static(&mut quantized, &calib, &static_options, &mut report, progress)?;
    crate::onnx::save(&quantized, &quantized_path, &Default::default())?;
    let size = std::fs::metadata(&quantized_path)?.len();
    println!(
        "{} tensors quantized; {} → {} ({:.2}×)\n",
        report.tensors.len(),
        crate::report::table::bytes(MODEL.len() as u64),
        crate::report::table::bytes(size),
        size as f64 / MODEL.len() as f64
    );
    println!("== eval the pruned and quantized model on the test set");
    println!("{}", crate::report::text::eval(&evaluate(&quantized, &data, &options, progress)?));
    println!("== compare it with the original float model");
    print!("{}", crate::report::text::compare(&compare(&model, &quantized, &data, &options, progress)?));

    let best_path = dir.join("digits_cnn.optimized.onnx");
    println!(
        "\n== optimize --max-drop 0.5 --calib digits_calib.npz --val digits_test.npz → {} (every candidate built, \
         judged on the test set and timed against the original in {})",
        best_path.display(),
        crate::runtime::RuntimeInfo::current()?
    );
    let config = crate::optimize::OptimizeConfig {
        metric: crate::optimize::Metric::Accuracy,
        budget: crate::optimize::Budget::MaxDrop(0.5),
        objective: crate::optimize::Objective::Latency,
        time_budget: std::time::Duration::from_secs(120),
        texts: None,
        litert: false,
    };
    let (search, best) =
        crate::optimize::optimize(&model, &config, &calib, &data, &crate::job::Announce(progress, config.metric))?;
    if let (Some(best), Some(i)) = (best, search.chosen) {
        crate::onnx::save(&best, &best_path, &Default::default())?;
        let recipe_path = dir.join("digits_cnn.optimized.toml");
        let chosen = &search.candidates[i];
        crate::onnx::write_atomically(&recipe_path, chosen.recipe.to_toml()?.as_bytes())?;
        println!(
            "\nchosen: {} — {:.2}× faster, {:.2}× the size, {} (the original: {}); its recipe: {} \
             (`prunq apply` replays it to the same bytes)",
            chosen.label,
            chosen.speedup,
            chosen.size_ratio,
            config.metric.show(chosen.quality.map(|q| q.value).unwrap_or(f64::NAN)),
            config.metric.show(search.original_quality),
            recipe_path.display()
        );
    }
    Ok(())
}
