use super::RuntimeArg;
use crate::eval::{bench, BenchOptions, BenchReport};
use crate::measure::Progress;
use crate::runtime::Backend;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The models to time; the first is the reference of every ratio. A `.tflite` runs in LiteRT.
    #[arg(required = true)]
    models: Vec<PathBuf>,
    /// Input data (`.npz` named like the models' inputs, or `.npy`); batches cycle through it.
    #[arg(long)]
    data: PathBuf,
    /// Rows in each timed run.
    #[arg(long, default_value_t = 1)]
    batch_size: usize,
    /// Timed rounds; each round runs every model once, in turn.
    #[arg(long, default_value_t = 100)]
    runs: usize,
    /// Untimed rounds first.
    #[arg(long, default_value_t = 10)]
    warmup: usize,
    /// Also show where the time goes, per op type (ONNX Runtime's profiler; tract's per-node times).
    #[arg(long)]
    profile: bool,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

/// `threads`: the global `--threads`, here the threads inside one run (default 1).
pub fn run(a: Args, runtime: RuntimeArg, threads: Option<usize>, progress: &dyn Progress) -> anyhow::Result<()> {
    let backends = match runtime {
        RuntimeArg::Both => vec![Backend::Ort, Backend::Tract],
        RuntimeArg::Ort => vec![Backend::Ort],
        RuntimeArg::Tract => vec![Backend::Tract],
        RuntimeArg::Auto => vec![crate::runtime::default_backend()?],
        RuntimeArg::Litert => vec![Backend::LiteRt],
    };
    if backends.contains(&Backend::Ort) {
        crate::runtime::set_runtime(crate::runtime::RuntimeChoice::Ort);
        crate::runtime::default_backend()?;
    }
    let data = super::open_data(&a.data)?;
    let loaded = a
        .models
        .iter()
        .map(|p| super::model_in(crate::runtime::ModelFile::open(p)?, runtime, &data))
        .collect::<Result<Vec<_>, _>>()?;
    let named: Vec<(String, &crate::runtime::ModelFile)> =
        a.models.iter().zip(&loaded).map(|(p, m)| (p.display().to_string(), m)).collect();
    let options = BenchOptions {
        batch_size: a.batch_size,
        runs: a.runs,
        warmup: a.warmup,
        threads: threads.unwrap_or(1).max(1),
        profile: a.profile,
    };
    let reports = backends
        .iter()
        .map(|&b| bench(&named, &data, b, &options, progress))
        .collect::<Result<Vec<BenchReport>, _>>()?;
    if a.json {
        return super::print_json(&reports);
    }
    for r in &reports {
        print!("{}", crate::report::text::bench(r));
    }
    Ok(())
}
