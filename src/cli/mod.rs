//! The `prunq` command line: parses arguments, calls the library, prints.
//! No logic of its own lives here.

mod apply;
mod bench;
mod compare;
mod demo;
mod eval;
mod inspect;
mod optimize;
mod progress;
mod prune;
mod quantize;
mod report;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "prunq", version, about = "Prune and quantize ONNX models, and prove they still work")]
struct Cli {
    /// No progress bars.
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Print each stage (calibration, sensitivity trials, comparison …) with its time when it ends.
    #[arg(long, short, global = true)]
    verbose: bool,
    /// Threads to use (default: every core). The output is byte-identical whatever the count.
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Largest tensor a model may make from constants, in bytes (K, M, G suffixes; default 8G).
    #[arg(long, global = true, value_parser = parse_bytes)]
    memory_limit: Option<u64>,
    /// Which engine runs models: auto (ONNX Runtime when its library loads, else tract), ort,
    /// tract; `both` only with `bench`.
    #[arg(long, global = true, value_enum, default_value = "auto")]
    runtime: RuntimeArg,
    /// ONNX Runtime's shared library (default: $ORT_DYLIB_PATH, then the `onnxruntime` Python
    /// package of the active environment or of ./.venv).
    #[arg(long, global = true)]
    ort_lib: Option<std::path::PathBuf>,
    /// Which axis of a model input is the batch, e.g. `state=1` (default: the symbolic dim the
    /// inputs share; 0 when there is none; scalars are fed whole with every batch).
    #[arg(long, global = true, value_parser = parse_batch_axis)]
    batch_axis: Vec<(String, usize)>,
    /// How images become inputs when data is a folder of images: e.g.
    /// "resize=48x320,keep-aspect,pad=0,layout=NCHW,bgr,scale=1/255,mean=0.5,std=0.5", or a TOML
    /// file with those keys (default: the model's size, RGB, pixels 0–255 as they are).
    #[arg(long, global = true, value_parser = parse_preprocess)]
    preprocess: Option<prunq::data::Preprocess>,
    /// The model's Hugging Face tokenizer.json, for data given as a .txt (one sentence a line).
    #[arg(long, global = true)]
    tokenizer: Option<std::path::PathBuf>,
    /// Tokens a line of text is cut or padded to; samples in a frame of audio (default: the
    /// input's fixed length).
    #[arg(long, global = true)]
    max_len: Option<usize>,
    /// The sample rate WAV files must have (default: whatever they share).
    #[arg(long, global = true)]
    sample_rate: Option<u32>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show a model's inputs, outputs, ops, parameters, MACs and sparsity.
    Inspect(inspect::Args),
    /// Run a model over a data set: accuracy (with labels), latency, throughput.
    Eval(eval::Args),
    /// Compare a candidate model's outputs with a reference's on the same data.
    Compare(compare::Args),
    /// Quantize a model's weights (and activations) to low precision.
    Quantize(quantize::Args),
    /// Zero the least important weights (unstructured or N:M sparsity).
    Prune(prune::Args),
    /// Time models side by side (runs interleaved) in ONNX Runtime and/or tract.
    Bench(bench::Args),
    /// Show what prunq does, on a small bundled model and data set.
    Demo(demo::Args),
    /// Find the smallest, fastest model that keeps an accuracy budget, over pruning and
    /// quantization together, measured in the runtime; writes it and its recipe.
    Optimize(optimize::Args),
    /// Replay a recipe (from `optimize --save-recipe`, or written by hand) on a model.
    Apply(apply::Args),
    /// Turn a JSON report (`--report R.json`) into a self-contained HTML page with plots.
    Report(report::Args),
}

pub fn main() -> ExitCode {
    prunq::runtime::remember_panics();
    let cli = Cli::parse();
    prunq::parallel::set_threads(cli.threads.unwrap_or(0));
    if let Some(limit) = cli.memory_limit {
        prunq::onnx::limits::set_memory_limit(limit);
    }
    if cli.runtime == RuntimeArg::Both && !matches!(cli.command, Command::Bench(_)) {
        eprintln!("error: --runtime both is for `prunq bench`; other commands take auto, ort or tract");
        return ExitCode::from(2);
    }
    prunq::runtime::set_ort_library(cli.ort_lib.clone());
    prunq::data::set_batch_axes(cli.batch_axis.iter().cloned().collect());
    let _ = DATA_OPTIONS.set(prunq::data::DataOptions {
        preprocess: cli.preprocess.clone(),
        tokenizer: cli.tokenizer.clone(),
        max_len: cli.max_len,
        sample_rate: cli.sample_rate,
    });
    // A library named by hand is meant to be used: failing to load it is an error, not tract.
    let runtime = if cli.ort_lib.is_some() && cli.runtime == RuntimeArg::Auto { RuntimeArg::Ort } else { cli.runtime };
    prunq::runtime::set_runtime(runtime.choice());
    let progress = progress::Bar::new(cli.quiet, cli.verbose);
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match cli.command {
        Command::Inspect(a) => inspect::run(a),
        Command::Eval(a) => eval::run(a, &progress),
        Command::Compare(a) => compare::run(a, &progress),
        Command::Quantize(a) => quantize::run(a, &progress),
        Command::Prune(a) => prune::run(a, &progress),
        Command::Bench(a) => bench::run(a, cli.runtime, cli.threads, &progress),
        Command::Demo(a) => demo::run(a, &progress),
        Command::Report(a) => report::run(a),
        Command::Optimize(a) => optimize::run(a, &progress),
        Command::Apply(a) => apply::run(a, &progress),
    }));
    match run {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("error: {e:#}");
            let usage = matches!(e.downcast_ref::<prunq::Error>(), Some(prunq::Error::Usage(_)));
            ExitCode::from(if usage { 2 } else { 1 })
        }
        Err(_) => {
            let msg = prunq::runtime::last_panic().unwrap_or_default();
            // The reader of our output went away (`prunq inspect m | head`): stop quietly with
            // the status a shell gives a writer killed by SIGPIPE, as other Unix tools do.
            if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
                return ExitCode::from(141);
            }
            // Any other panic is a bug, but the user still gets one line and exit code 1.
            eprintln!("error: internal error: {msg} (please report this with the model)");
            ExitCode::from(1)
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RuntimeArg {
    Auto,
    Ort,
    Tract,
    Both,
}

impl RuntimeArg {
    fn choice(self) -> prunq::runtime::RuntimeChoice {
        use prunq::runtime::RuntimeChoice;
        match self {
            RuntimeArg::Auto | RuntimeArg::Both => RuntimeChoice::Auto,
            RuntimeArg::Ort => RuntimeChoice::Ort,
            RuntimeArg::Tract => RuntimeChoice::Tract,
        }
    }
}

/// `8G`, `512M`, `64K` or plain bytes.
fn parse_bytes(s: &str) -> Result<u64, String> {
    let (digits, unit) = match s.trim().char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c.to_ascii_uppercase()),
        _ => (s.trim(), 'B'),
    };
    let n: u64 = digits.trim().parse().map_err(|_| format!("'{s}' is not a size like 8G or 512M"))?;
    let shift = match unit {
        'B' => 0,
        'K' => 10,
        'M' => 20,
        'G' => 30,
        'T' => 40,
        _ => return Err(format!("'{s}': unknown unit '{unit}'")),
    };
    n.checked_mul(1 << shift).ok_or_else(|| format!("'{s}' is too large"))
}

/// `NAME=1x3x224x224` → (NAME, [1, 3, 224, 224]).
fn parse_shape(s: &str) -> Result<(String, Vec<usize>), String> {
    let (name, dims) = s.rsplit_once('=').ok_or("expected NAME=DxDxD, e.g. input=1x3x224x224")?;
    let dims = dims
        .split(['x', ','])
        .map(|d| d.trim().parse::<usize>().map_err(|_| format!("'{d}' is not a dimension")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((name.to_string(), dims))
}

fn parse_preprocess(s: &str) -> Result<prunq::data::Preprocess, String> {
    prunq::data::Preprocess::parse(s).map_err(|e| e.to_string())
}

/// How images, text and audio become inputs (`--preprocess`, `--tokenizer` …), set once by `main`.
static DATA_OPTIONS: std::sync::OnceLock<prunq::data::DataOptions> = std::sync::OnceLock::new();

/// A data set given on the command line: arrays, images, text or audio.
/// The checks every command that writes a model runs on it, and where it reports them:
/// the flags `quantize`, `prune` and `apply` share.
#[derive(clap::Args, Debug, Clone)]
struct Checks {
    /// Data to compare the result with the original on (printed and reported; the result is
    /// checked and timed on it, else on --calib).
    #[arg(long)]
    val: Option<std::path::PathBuf>,
    /// Write what was done, the comparison and the speed: JSON, or a self-contained HTML page
    /// with plots when the name ends in .html.
    #[arg(long)]
    report: Option<std::path::PathBuf>,
    /// Do not time the output against the input (done by default: batch 1, one thread, in the
    /// runtime chosen by --runtime, on --val or --calib data or else inputs of ones).
    #[arg(long)]
    no_latency_check: bool,
}

impl Checks {
    /// The data a result is checked and timed on: --val, else the calibration data.
    fn data<'a>(&'a self, calib: Option<&'a std::path::PathBuf>) -> Option<&'a std::path::Path> {
        self.val.as_deref().or(calib.map(std::path::PathBuf::as_path))
    }
}

fn open_data(path: impl AsRef<std::path::Path>) -> prunq::Result<prunq::data::Dataset> {
    prunq::data::Dataset::open_with(path, DATA_OPTIONS.get().unwrap_or(&Default::default()))
}

/// `state=1` → ("state", 1).
fn parse_batch_axis(s: &str) -> Result<(String, usize), String> {
    let (name, axis) = s.rsplit_once('=').ok_or("expected NAME=AXIS, e.g. state=1")?;
    Ok((name.to_string(), axis.trim().parse().map_err(|_| format!("'{axis}' is not an axis"))?))
}

/// Compares `model` with `original` on `data` (when given) and prints the table.
fn validate(
    original: &prunq::ir::Model,
    model: &prunq::ir::Model,
    data: Option<&std::path::Path>,
    progress: &dyn prunq::eval::Progress,
) -> anyhow::Result<Option<prunq::eval::CompareReport>> {
    let Some(path) = data else { return Ok(None) };
    let data = open_data(path)?;
    let c = prunq::eval::compare(original, model, &data, &Default::default(), progress)?;
    print!("{}", prunq::report::text::compare(&c));
    Ok(Some(c))
}

/// Says loudly that weights inside If/Loop/Scan bodies were left as they are;
/// an error when the pass did nothing and most of the model's weights are there.
fn untouched_subgraphs(model: &prunq::ir::Model, what: &str, nothing_done: bool) -> anyhow::Result<Option<String>> {
    let inside = model.weights_in_subgraphs();
    if inside.is_empty() {
        return Ok(None);
    }
    let total: usize = inside.iter().map(|(_, n)| n).sum();
    let nodes: Vec<&str> = inside.iter().map(|(n, _)| n.as_str()).collect();
    let said = format!(
        "{total} weight values inside the subgraphs of {} were not {what}: prunq leaves If/Loop/Scan bodies as they are",
        nodes.join(", ")
    );
    let outside: usize = model.graph.initializers.iter().map(|t| t.dims.iter().product::<i64>().max(0) as usize).sum();
    if nothing_done && total > outside {
        return Err(prunq::Error::Model(format!("nothing outside control flow to work on: {said}")).into());
    }
    println!("warning: {said}");
    Ok(Some(said))
}

/// Runs the result beside the original before it is written (see
/// `prunq::eval::check_outputs`) in the runtime prunq measures in. Refuses a result
/// whose outputs turned non-finite; says so when one diverges.
fn check_before_write(
    original: &prunq::ir::Model,
    model: &prunq::ir::Model,
    data: Option<&std::path::Path>,
) -> anyhow::Result<prunq::eval::OutputCheck> {
    let backends = check_backends()?;
    let data = data.map(open_data).transpose()?;
    let check = prunq::eval::check_outputs(original, model, data.as_ref(), &backends)?;
    if let Some(refusal) = check.refusal() {
        return Err(refusal.into());
    }
    let hint = if check.synthetic { " (on made-up inputs: pass --val to judge on data)" } else { "" };
    for o in &check.outputs {
        if let Some(w) = o.slice_diverges() {
            println!(
                "warning: entry {} of the last axis of output '{}' diverges from the original's in {}: SQNR {:.1} dB \
                 while the whole output has {:.1} dB{hint}",
                w.index, o.name, o.runtime, w.sqnr_db, o.sqnr_db
            );
        }
    }
    for o in check.outputs.iter().filter(|o| o.diverges()) {
        println!(
            "warning: output '{}' diverges from the original's in {}: SQNR {:.1} dB, worst cosine {:.3}{}",
            o.name, o.runtime, o.sqnr_db, o.cosine_min, hint
        );
    }
    Ok(check)
}

/// Where results are checked: the runtime prunq measures in (the one the user
/// deploys on; the tests check outputs in both).
fn check_backends() -> anyhow::Result<Vec<prunq::runtime::Backend>> {
    Ok(vec![prunq::runtime::default_backend()?])
}

/// Above this many bytes of input weights the latency check is left out (said
/// in a note): both models in memory at once would be several times the weights.
const LATENCY_CHECK_MAX_WEIGHTS: usize = 512 << 20;

/// Times the written `model` against `original` where it will run (see
/// `prunq::eval::latency_check`), prints the speed-up, and says so plainly when
/// the output is slower. `None` with `--no-latency-check`.
fn check_latency(
    original: &prunq::ir::Model,
    model: &prunq::ir::Model,
    data: Option<&std::path::Path>,
    skip: bool,
    progress: &dyn prunq::eval::Progress,
) -> anyhow::Result<Option<prunq::eval::LatencyCheck>> {
    if skip {
        return Ok(None);
    }
    // Timing side by side holds both models in the runtime at once, each unpacked to float.
    let weights: usize = original.graph.initializers.iter().map(|t| t.byte_size()).sum();
    if weights > LATENCY_CHECK_MAX_WEIGHTS {
        println!(
            "note: the output's speed was not measured: the input has {} of weights, and timing both models \
             side by side would hold about {} in memory; `prunq bench` times them when that fits",
            prunq::report::table::bytes(weights as u64),
            prunq::report::table::bytes(3 * weights as u64)
        );
        return Ok(None);
    }
    let data = data.map(open_data).transpose()?;
    // A model the runtime cannot run (a custom op) is still written: its speed is then unknown,
    // which is said, not an error.
    let c = match prunq::eval::latency_check(original, model, data.as_ref(), progress) {
        Ok(c) => c,
        Err(e) => {
            println!("note: the output's speed was not measured: {e}");
            return Ok(None);
        }
    };
    let times = format!("{:.3} → {:.3} ms per run", c.input_ms, c.output_ms);
    let setting = format!("{}, batch 1, 1 thread, {}, {} runs each taking turns", c.runtime, c.inputs, c.runs);
    if c.slower() {
        println!("warning: the output runs SLOWER than the input: {:.2}× the speed ({times}; {setting})", c.speedup);
    } else {
        println!("speed: {:.2}× the input's ({times}; {setting})", c.speedup);
    }
    Ok(Some(c))
}

/// Says what the clean-up before a pass changed (or why it was not done).
fn print_simplified(s: &Option<prunq::transform::Simplification>) {
    let Some(s) = s else { return };
    if let Some(why) = &s.skipped {
        println!("note: the graph was not simplified: {why}");
    } else if s.nodes_after < s.nodes_before || s.folded + s.reshapes > 0 {
        println!(
            "simplified: {} → {} nodes ({} shape computations folded, {} reshape targets made constant; same outputs checked)",
            s.nodes_before, s.nodes_after, s.folded, s.reshapes
        );
    }
}

/// The runtime that ran models for a command (`ran` says whether any did),
/// printed and returned for its report.
fn runtime_used(ran: bool) -> anyhow::Result<Option<prunq::runtime::RuntimeInfo>> {
    if !ran {
        return Ok(None);
    }
    let info = prunq::runtime::RuntimeInfo::current()?;
    println!("measured in {info}");
    Ok(Some(info))
}

/// The files and models a report is about.
struct Reported<'a> {
    /// `quantize --mode static`, `prune --structured` …
    command: String,
    input: (&'a std::path::Path, &'a prunq::ir::Model),
    output: (&'a std::path::Path, &'a prunq::ir::Model),
    /// Data to profile the models on (inputs of ones without).
    data: Option<&'a std::path::Path>,
}

/// Writes a pass's report when `--report` was given: JSON, or the HTML page
/// for a path ending in `.html`. Besides the pass's own record it carries the
/// command, both models' size, parameters and MACs per layer, and where time goes
/// by op type in each (measured now, in the runtime).
fn write_report<T: serde::Serialize>(
    path: Option<&std::path::Path>,
    about: Reported,
    report: &T,
) -> anyhow::Result<()> {
    let Some(path) = path else { return Ok(()) };
    let mut value = serde_json::to_value(report)?;
    let facts = |(file, model): (&std::path::Path, &prunq::ir::Model)| -> serde_json::Value {
        let size = std::fs::metadata(file).map(|m| m.len()).ok();
        match prunq::analysis::summarize(model, &Default::default(), size) {
            Ok(s) => serde_json::json!({
                "size_bytes": s.size_bytes, "parameters": s.parameters, "macs": s.macs,
                "macs_complete": s.macs_complete, "layers": s.layers,
            }),
            Err(e) => serde_json::json!({ "size_bytes": size, "error": e.to_string() }),
        }
    };
    let extra = serde_json::json!({
        "command": about.command,
        "model": about.input.0.display().to_string(),
        "output": about.output.0.display().to_string(),
        "models": { "input": facts(about.input), "output": facts(about.output) },
    });
    let data = about.data.map(open_data).transpose()?;
    let op_time = match prunq::eval::op_times(about.input.1, about.output.1, data.as_ref()) {
        Ok(t) => serde_json::to_value(t)?,
        Err(e) => serde_json::json!({ "error": e.to_string() }),
    };
    if let (Some(object), serde_json::Value::Object(extra)) = (value.as_object_mut(), extra) {
        object.extend(extra);
        object.insert("op_time".into(), op_time);
    }
    let html = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm"));
    let text = if html { prunq::report::html::page(&value) } else { serde_json::to_string_pretty(&value)? };
    Ok(prunq::onnx::write_atomically(path, text.as_bytes())?)
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
