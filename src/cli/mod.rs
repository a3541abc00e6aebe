//! The `prunq` command line: parses arguments, calls the library, prints.
//! No logic of its own lives here.

mod apply;
mod bench;
mod compare;
mod convert;
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
    #[arg(long, global = true, value_parser = crate::onnx::limits::parse_size)]
    memory_limit: Option<u64>,
    /// Which engine runs models: auto (ONNX Runtime when its library loads, else tract), ort,
    /// tract; `both` only with `bench`; `litert` runs `eval`, `compare` and `bench` in LiteRT (an
    /// ONNX model converted first) and, on a command that writes `-o x.tflite`, its checks.
    #[arg(long, global = true, value_enum, default_value = "auto")]
    runtime: RuntimeArg,
    /// ONNX Runtime's shared library (default: $ORT_DYLIB_PATH, then the `onnxruntime` Python
    /// package of the active environment or of ./.venv).
    #[arg(long, global = true)]
    ort_lib: Option<std::path::PathBuf>,
    /// LiteRT's C library (libLiteRt.so) to run .tflite models with (default: $LITERT_LIB, else
    /// the ai-edge-litert package of the active Python environment or ./.venv).
    #[arg(long, global = true, value_name = "PATH")]
    litert_lib: Option<std::path::PathBuf>,
    /// Which axis of a model input is the batch, e.g. `state=1` (default: the symbolic dim the
    /// inputs share; 0 when there is none; scalars are fed whole with every batch).
    #[arg(long, global = true, value_parser = crate::data::parse_batch_axis)]
    batch_axis: Vec<(String, usize)>,
    #[command(flatten)]
    data: crate::data::DataOptions,
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
    /// Write a model as LiteRT (TensorFlow Lite, `.tflite`) for phones, checked in LiteRT.
    Convert(convert::Args),
}

/// The `prunq` command on this process's arguments.
pub fn main() -> ExitCode {
    ExitCode::from(run(std::env::args_os()))
}

/// The `prunq` command on `args` (the program's name first); returns its exit status. Also what
/// the Python package's `prunq` command calls.
pub fn run<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    crate::runtime::remember_panics();
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version print and succeed; the rest is a usage error (status 2).
            let _ = e.print();
            return e.exit_code() as u8;
        }
    };
    crate::parallel::set_threads(cli.threads.unwrap_or(0));
    if let Some(limit) = cli.memory_limit {
        crate::onnx::limits::set_memory_limit(limit);
    }
    if cli.runtime == RuntimeArg::Both && !matches!(cli.command, Command::Bench(_)) {
        eprintln!("error: --runtime both is for `prunq bench`; other commands take auto, ort, tract or litert");
        return 2;
    }
    if let Err(e) = cli.command.runs_in(cli.runtime) {
        eprintln!("error: {e}");
        return 2;
    }
    crate::runtime::set_ort_library(cli.ort_lib.clone());
    crate::runtime::set_litert_library(cli.litert_lib.clone());
    crate::data::set_batch_axes(cli.batch_axis.iter().cloned().collect());
    let _ = DATA_OPTIONS.set(cli.data.clone());
    // A library named by hand is meant to be used: failing to load it is an error, not tract.
    let runtime = if cli.ort_lib.is_some() && cli.runtime == RuntimeArg::Auto { RuntimeArg::Ort } else { cli.runtime };
    crate::runtime::set_runtime(runtime.choice());
    let progress = progress::Bar::new(cli.quiet, cli.verbose);
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match cli.command {
        Command::Inspect(a) => inspect::run(a),
        Command::Eval(a) => eval::run(a, cli.runtime, &progress),
        Command::Compare(a) => compare::run(a, cli.runtime, &progress),
        Command::Quantize(a) => quantize::run(a, &progress),
        Command::Prune(a) => prune::run(a, &progress),
        Command::Bench(a) => bench::run(a, cli.runtime, cli.threads, &progress),
        Command::Demo(a) => demo::run(a, &progress),
        Command::Report(a) => report::run(a),
        Command::Optimize(a) => optimize::run(a, &progress),
        Command::Apply(a) => apply::run(a, &progress),
        Command::Convert(a) => convert::run(a, &progress),
    }));
    match run {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            eprintln!("error: {e:#}");
            let usage = matches!(e.downcast_ref::<crate::Error>(), Some(crate::Error::Usage(_)));
            if usage {
                2
            } else {
                1
            }
        }
        Err(_) => {
            let msg = crate::runtime::last_panic().unwrap_or_default();
            // The reader of our output went away (`prunq inspect m | head`): stop quietly with
            // the status a shell gives a writer killed by SIGPIPE, as other Unix tools do.
            if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
                return 141;
            }
            // Any other panic is a bug, but the user still gets one line and exit code 1.
            eprintln!("error: internal error: {msg} (please report this with the model)");
            1
        }
    }
}

impl Command {
    /// Whether the command can run in `runtime`: `litert` is for the commands that run models
    /// (which then run in LiteRT) and for those that write a `.tflite` (whose checks run there).
    fn runs_in(&self, runtime: RuntimeArg) -> Result<(), String> {
        if runtime != RuntimeArg::Litert {
            return Ok(());
        }
        let output = match self {
            Command::Eval(_) | Command::Compare(_) | Command::Bench(_) | Command::Convert(_) => return Ok(()),
            Command::Quantize(a) => a.output(),
            Command::Prune(a) => a.output(),
            Command::Apply(a) => a.output(),
            Command::Optimize(a) => a.output(),
            _ => return Err("--runtime litert is for eval, compare, bench and commands that write a .tflite".into()),
        };
        match output.extension().is_some_and(|e| e.eq_ignore_ascii_case("tflite")) {
            true => Ok(()),
            false => Err(format!(
                "--runtime litert checks and times a LiteRT output: name it with .tflite (not {})",
                output.display()
            )),
        }
    }
}

/// `file` to run in `runtime`: converted to LiteRT (at the sizes of `data`) when that is LiteRT.
fn model_in(
    file: crate::runtime::ModelFile,
    runtime: RuntimeArg,
    data: &crate::data::Dataset,
) -> crate::Result<crate::runtime::ModelFile> {
    match runtime {
        RuntimeArg::Litert => crate::job::in_litert(file, Some(data)),
        _ => Ok(file),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum RuntimeArg {
    Auto,
    Ort,
    Tract,
    Both,
    Litert,
}

impl RuntimeArg {
    fn choice(self) -> crate::runtime::RuntimeChoice {
        use crate::runtime::RuntimeChoice;
        match self {
            // LiteRT runs .tflite models; ONNX models (a pass's own measurements, the original a
            // converted model is checked against) run where `auto` says.
            RuntimeArg::Auto | RuntimeArg::Both | RuntimeArg::Litert => RuntimeChoice::Auto,
            RuntimeArg::Ort => RuntimeChoice::Ort,
            RuntimeArg::Tract => RuntimeChoice::Tract,
        }
    }
}

/// How images, text and audio become inputs (`--preprocess`, `--tokenizer` …), set once by `main`.
static DATA_OPTIONS: std::sync::OnceLock<crate::data::DataOptions> = std::sync::OnceLock::new();

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
    /// Write weights to `<OUT>.<hash>.data` beside the model (ONNX external data). Done anyway
    /// when the model would pass protobuf's 2 GB limit.
    #[arg(long)]
    external_data: bool,
    /// Refuse to write a result that loses more than this on --val, in the metric's unit (points
    /// for percentages, e.g. 1; 0.01 for cosine).
    #[arg(long, conflicts_with = "min_quality", requires = "val")]
    max_drop: Option<f64>,
    /// Refuse to write a result whose quality on --val is under this (over it, for cer).
    #[arg(long, requires = "val")]
    min_quality: Option<f64>,
    /// How --max-drop and --min-quality judge (default: accuracy when --val has labels,
    /// exact-lines with --text, else top-1 agreement with the original).
    #[arg(long, value_enum)]
    metric: Option<crate::optimize::Metric>,
    /// Expected text of each --val sample, one a line (exact-lines, cer).
    #[arg(long)]
    text: Option<std::path::PathBuf>,
    /// Freeze an input to a value before the pass (NAME=VALUE, e.g. sr=16000; repeatable): each If
    /// it decides becomes the branch taken, so passes that need a plain graph (static, structured)
    /// reach the weights inside; the result no longer takes that input.
    #[arg(long, value_name = "NAME=VALUE")]
    fix_input: Vec<crate::transform::FixedInput>,
}

impl Checks {
    /// The library's checks these flags ask for.
    fn job(&self) -> anyhow::Result<crate::job::Checks> {
        let budget = crate::optimize::Budget::given(self.max_drop, self.min_quality)?;
        let texts = optimize::read_texts(self.text.as_deref())?;
        Ok(crate::job::Checks {
            latency: !self.no_latency_check,
            external_data: self.external_data,
            report: self.report.clone(),
            budget: budget.map(|budget| crate::job::QualityBudget { metric: self.metric, budget, texts }),
            fix_inputs: self.fix_input.clone(),
        })
    }
}

/// The data sets a command was given, opened once.
struct Opened {
    calib: Option<crate::data::Dataset>,
    val: Option<crate::data::Dataset>,
}

impl Opened {
    fn new(calib: Option<&std::path::PathBuf>, val: Option<&std::path::PathBuf>) -> crate::Result<Opened> {
        Ok(Opened { calib: calib.map(open_data).transpose()?, val: val.map(open_data).transpose()? })
    }

    /// A job on `original` read from `input`, written to `output`, with these data and checks.
    fn job<'a>(
        &'a self,
        original: &'a crate::ir::Model,
        input: &'a std::path::Path,
        output: &'a std::path::Path,
        checks: crate::job::Checks,
    ) -> crate::job::Job<'a> {
        let mut job = crate::job::Job::new(original);
        job.input = Some(input);
        job.output = Some(output);
        job.calib = self.calib.as_ref();
        job.val = self.val.as_ref();
        job.checks = checks;
        job
    }
}

fn open_data(path: impl AsRef<std::path::Path>) -> crate::Result<crate::data::Dataset> {
    crate::data::Dataset::open_with(path, DATA_OPTIONS.get().unwrap_or(&Default::default()))
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
