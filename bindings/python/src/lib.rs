//! `prunq._prunq`, the extension behind the Python package: each function turns Python's
//! arguments into one of the library's jobs (`prunq::job`) or measurements (`prunq::eval`), runs
//! it with the GIL released, and hands back the typed report as JSON (and the model's bytes when no
//! output path was given). The API's shape — keyword options, data readers, result objects — is
//! the Python package's (`python/prunq/`); nothing here decides what a job checks.

mod convert;
mod errors;
mod progress;

use convert::{checks, config, data, maybe_source, model, source, Data};
use errors::{to_py, Failure};
use progress::{detached, Reporter};
use prunq::job::Job;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::path::PathBuf;

/// What a job hands back to Python: its report as JSON and, when nothing was written, the model.
type Handed = (String, Option<Py<PyBytes>>);

/// A job's files and data, as Python gave them.
struct Files {
    original: prunq::ir::Model,
    input: Option<PathBuf>,
    output: Option<PathBuf>,
    calib: Option<prunq::data::Dataset>,
    val: Option<prunq::data::Dataset>,
    checks: prunq::job::Checks,
}

impl Files {
    fn open(
        model_in: Data,
        output: Option<PathBuf>,
        calib: Option<Data>,
        val: Option<Data>,
        checks_json: &str,
    ) -> Result<Files, Failure> {
        let (original, input) = model(model_in)?;
        if let (Some(i), Some(o)) = (&input, &output) {
            prunq::onnx::ensure_not_input(i, o)?;
        }
        Ok(Files {
            original,
            input,
            output,
            calib: calib.map(|d| data(d, "calib")).transpose()?,
            val: val.map(|d| data(d, "val")).transpose()?,
            checks: checks(checks_json)?,
        })
    }

    fn job(&self) -> Job<'_> {
        let mut job = Job::new(&self.original);
        job.input = self.input.as_deref();
        job.output = self.output.as_deref();
        job.calib = self.calib.as_ref();
        job.val = self.val.as_ref();
        job.checks = self.checks.clone();
        job
    }
}

/// What one job is asked to do: the pass and its options, read before any file is opened.
enum Pass {
    Quantize(prunq::quant::QuantConfig),
    Prune(prunq::prune::PruneConfig),
    Apply(PathBuf, prunq::optimize::Recipe),
    Optimize(String, Option<PathBuf>),
}

impl Pass {
    /// `kind` with its `spec`: a config's JSON (quantize, prune), a recipe's path (apply), or
    /// `{"options": …, "save_recipe": path}` (optimize).
    fn read(kind: &str, spec: &str) -> Result<Pass, Failure> {
        Ok(match kind {
            "quantize" => {
                let config: prunq::quant::QuantConfig = config(spec)?;
                config.validate()?;
                Pass::Quantize(config)
            }
            "prune" => Pass::Prune(config(spec)?),
            "apply" => Pass::Apply(spec.into(), prunq::optimize::Recipe::read(spec.as_ref())?),
            "optimize" => {
                let (options, save_recipe): (serde_json::Value, Option<PathBuf>) = config(spec)?;
                Pass::Optimize(options.to_string(), save_recipe)
            }
            other => return Err(Failure::internal(format!("no job {other:?}"))),
        })
    }

    /// Runs the pass as `files`' job: the report as JSON, and the model.
    fn run(&self, files: &Files, reporter: &Reporter) -> Result<(String, prunq::ir::Model), Failure> {
        fn handed<R: serde::Serialize>(done: prunq::job::Done<R>) -> Result<(String, prunq::ir::Model), Failure> {
            Ok((convert::json(&done.report)?, done.model))
        }
        let job = files.job();
        match self {
            Pass::Quantize(config) => handed(job.quantize(config, reporter)?),
            Pass::Prune(config) => handed(job.prune(config, reporter)?),
            Pass::Apply(path, recipe) => handed(job.apply(recipe, reporter).map_err(|e| match e {
                prunq::Error::Usage(m) => prunq::Error::Usage(format!("{}: {m}", path.display())),
                e => e,
            })?),
            Pass::Optimize(options, save_recipe) => {
                let val = files.val.as_ref().ok_or_else(|| prunq::Error::Usage("optimize needs val data".into()))?;
                let options = convert::optimize_options(options, &files.original, val)?;
                let announce = prunq::job::Announce(reporter, options.metric);
                handed(job.optimize(&options, &announce, save_recipe.as_deref(), reporter)?)
            }
        }
    }
}

/// `job(kind, spec, model, output, calib, val, checks_json, report)`: one of the library's jobs —
/// `quantize`, `prune`, `apply`, `optimize` (see [`Pass::read`] for `spec`) — on the model, written
/// to `output` or handed back.
#[pyfunction]
#[pyo3(signature = (kind, spec, model, output, calib, val, checks_json, report))]
#[allow(clippy::too_many_arguments)]
fn job(
    py: Python<'_>,
    kind: &str,
    spec: &str,
    model: &Bound<'_, PyAny>,
    output: Option<PathBuf>,
    calib: Option<&Bound<'_, PyAny>>,
    val: Option<&Bound<'_, PyAny>>,
    checks_json: &str,
    report: Py<PyAny>,
) -> PyResult<Handed> {
    let reporter = Reporter::new(report);
    let (model, calib, val) = (source(model)?, maybe_source(calib)?, maybe_source(val)?);
    let (json, bytes) = reporter.outcome(detached(py, Some(&reporter), || {
        let pass = Pass::read(kind, spec)?;
        let files = Files::open(model, output, calib, val, checks_json)?;
        let (json, model) = pass.run(&files, &reporter)?;
        // Without an output the model goes back to Python.
        let bytes = match files.output {
            Some(_) => None,
            None => Some(prunq::onnx::encode(&model)?),
        };
        Ok((json, bytes))
    }))?;
    Ok((json, bytes.map(|b: Vec<u8>| PyBytes::new(py, &b).unbind())))
}

/// `compare(reference, candidate, data, batch_size, per_layer, litert, report)`: the report as
/// JSON. Either model may be a `.tflite` (run in LiteRT); `litert` runs ONNX ones there too.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn compare(
    py: Python<'_>,
    reference: &Bound<'_, PyAny>,
    candidate: &Bound<'_, PyAny>,
    data_in: &Bound<'_, PyAny>,
    batch_size: usize,
    per_layer: bool,
    litert: bool,
    report: Py<PyAny>,
) -> PyResult<String> {
    let reporter = Reporter::new(report);
    let (reference, candidate, data_in) = (source(reference)?, source(candidate)?, source(data_in)?);
    let json = reporter.outcome(detached(py, Some(&reporter), || {
        let data = data(data_in, "data")?;
        let options = prunq::eval::RunOptions { batch_size, ..Default::default() };
        if per_layer {
            let (reference, candidate) = (model(reference)?.0, model(candidate)?.0);
            return convert::json(&prunq::eval::compare_layers(&reference, &candidate, &data, &options, &reporter)?);
        }
        let reference = convert::runnable(reference, litert, Some(&data))?;
        let candidate = convert::runnable(candidate, litert, Some(&data))?;
        convert::json(&prunq::eval::compare(&reference, &candidate, &data, &options, &reporter)?)
    }))?;
    Ok(json)
}

/// `evaluate(model, data, batch_size, labels, texts, litert, report)`: the report as JSON. The
/// model may be a `.tflite` (run in LiteRT); `litert` runs an ONNX one there too.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn evaluate(
    py: Python<'_>,
    model_in: &Bound<'_, PyAny>,
    data_in: &Bound<'_, PyAny>,
    batch_size: usize,
    labels: Option<String>,
    texts: Option<Vec<String>>,
    litert: bool,
    report: Py<PyAny>,
) -> PyResult<String> {
    let reporter = Reporter::new(report);
    let (model_in, data_in) = (source(model_in)?, source(data_in)?);
    let json = reporter.outcome(detached(py, Some(&reporter), || {
        let data = data(data_in, "data")?;
        let model = convert::runnable(model_in, litert, Some(&data))?;
        let options = prunq::eval::RunOptions { batch_size, labels, texts };
        convert::json(&prunq::eval::evaluate(&model, &data, &options, &reporter)?)
    }))?;
    Ok(json)
}

/// `convert(model, output, options_json, calib, val, report_path, report)`: the model as LiteRT,
/// run in LiteRT beside the original before it is written (`prunq convert`); the report as JSON
/// and, when nothing was written, the `.tflite` bytes. `options_json` is `{"input_shapes":
/// {name: [dims]}, "fp16": bool, "dynamic_range": bool}`.
#[pyfunction(name = "convert")]
#[pyo3(signature = (model, output, options_json, calib, val, report_path, report))]
#[allow(clippy::too_many_arguments)]
fn convert_model(
    py: Python<'_>,
    model: &Bound<'_, PyAny>,
    output: Option<PathBuf>,
    options_json: &str,
    calib: Option<&Bound<'_, PyAny>>,
    val: Option<&Bound<'_, PyAny>>,
    report_path: Option<PathBuf>,
    report: Py<PyAny>,
) -> PyResult<Handed> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Given {
        input_shapes: std::collections::BTreeMap<String, Vec<usize>>,
        fp16: bool,
        dynamic_range: bool,
        fix_inputs: std::collections::BTreeMap<String, String>,
    }
    let reporter = Reporter::new(report);
    let (model, calib, val) = (source(model)?, maybe_source(calib)?, maybe_source(val)?);
    let (json, bytes) = reporter.outcome(detached(py, Some(&reporter), || {
        let given: Given = config(options_json)?;
        let mut files = Files::open(model, output, calib, val, "{\"latency\": false, \"external_data\": false}")?;
        files.checks.report = report_path;
        files.checks.fix_inputs = convert::fixed_inputs(given.fix_inputs);
        let options = prunq::litert::ConvertOptions {
            input_shapes: given.input_shapes.into_iter().collect(),
            fp16: given.fp16,
            dynamic_range: given.dynamic_range,
        };
        let done = files.job().convert(&options, &reporter)?;
        let bytes = files.output.is_none().then_some(done.bytes);
        Ok((convert::json(&done.report)?, bytes))
    }))?;
    Ok((json, bytes.map(|b: Vec<u8>| PyBytes::new(py, &b).unbind())))
}

/// `bench(models, data, runtime, batch_size, runs, warmup, threads, report)`: one report per
/// runtime, as a JSON list. `models` are (name, model) pairs.
#[pyfunction(name = "bench")]
#[allow(clippy::too_many_arguments)]
fn bench_models(
    py: Python<'_>,
    models: Vec<(String, Bound<'_, PyAny>)>,
    data_in: &Bound<'_, PyAny>,
    runtime: &str,
    batch_size: usize,
    runs: usize,
    warmup: usize,
    threads: usize,
    report: Py<PyAny>,
) -> PyResult<String> {
    let reporter = Reporter::new(report);
    let runtime = runtime.to_string();
    let models = models.iter().map(|(n, m)| Ok((n.clone(), source(m)?))).collect::<PyResult<Vec<(String, Data)>>>()?;
    let data_in = source(data_in)?;
    let json = reporter.outcome(detached(py, Some(&reporter), || {
        let backends = convert::backends(&runtime)?;
        let data = data(data_in, "data")?;
        let litert = runtime == "litert";
        let loaded = models
            .into_iter()
            .map(|(name, m)| Ok((name, convert::runnable(m, litert, Some(&data))?)))
            .collect::<Result<Vec<_>, Failure>>()?;
        let named: Vec<(String, &prunq::runtime::ModelFile)> = loaded.iter().map(|(n, m)| (n.clone(), m)).collect();
        let options = prunq::eval::BenchOptions { batch_size, runs, warmup, threads, profile: false };
        let reports = backends
            .iter()
            .map(|&b| prunq::eval::bench(&named, &data, b, &options, &reporter))
            .collect::<Result<Vec<_>, _>>()?;
        convert::json(&reports)
    }))?;
    Ok(json)
}

/// The `prunq` command on `args` (program name first), with the GIL released; its exit status.
#[pyfunction]
fn run_cli(py: Python<'_>, args: Vec<String>) -> u8 {
    py.detach(|| prunq::cli::run(args))
}

/// Where ONNX Runtime's library is (the running interpreter's `onnxruntime` package), which
/// runtime measures: `auto` (ONNX Runtime when it loads, else tract), `ort` or `tract`; and where
/// LiteRT's is (its `ai_edge_litert` package), for `.tflite` outputs.
#[pyfunction]
#[pyo3(signature = (runtime, ort_library=None, threads=None, litert_library=None))]
fn configure(
    runtime: &str,
    ort_library: Option<PathBuf>,
    threads: Option<usize>,
    litert_library: Option<PathBuf>,
) -> PyResult<()> {
    prunq::runtime::set_ort_library(ort_library);
    if litert_library.is_some() {
        prunq::runtime::set_litert_library(litert_library);
    }
    prunq::runtime::set_runtime(convert::runtime_choice(runtime).map_err(to_py)?);
    if let Some(n) = threads {
        prunq::parallel::set_threads(n);
    }
    Ok(())
}

/// How images (`preprocess`, as the CLI's --preprocess), text (`tokenizer`, `max_len`) and WAV
/// files (`sample_rate`) become inputs, for the data paths given from now on.
#[pyfunction]
#[pyo3(signature = (preprocess=None, tokenizer=None, max_len=None, sample_rate=None))]
fn configure_data(
    preprocess: Option<&str>,
    tokenizer: Option<PathBuf>,
    max_len: Option<usize>,
    sample_rate: Option<u32>,
) -> PyResult<()> {
    let preprocess = preprocess.map(prunq::data::Preprocess::parse).transpose().map_err(|e| to_py(e.into()))?;
    convert::set_data_options(prunq::data::DataOptions { preprocess, tokenizer, max_len, sample_rate });
    Ok(())
}

/// The runtime that measures now: `onnxruntime 1.x` or `tract`, with a note when `auto` fell back.
#[pyfunction]
fn runtime_in_use(py: Python<'_>) -> PyResult<(String, Option<String>)> {
    detached(py, None, || {
        let backend = prunq::runtime::default_backend()?;
        let info = prunq::runtime::RuntimeInfo::of(backend);
        Ok((info.to_string(), prunq::runtime::ort_load_error()))
    })
}

/// The HTML page of a JSON report (what `prunq report` writes), for Jupyter.
#[pyfunction]
fn render_html(report_json: &str) -> PyResult<String> {
    let value: serde_json::Value = serde_json::from_str(report_json)
        .map_err(|e| to_py(prunq::Error::Data(format!("not a JSON report ({e})")).into()))?;
    errors::no_panic(|| Ok(prunq::report::html::page(&value))).map_err(to_py)
}

/// The library's defaults for `quantize` and `prune` (their configs' serde form): what an option
/// left out (None) means.
#[pyfunction]
fn defaults(kind: &str) -> PyResult<String> {
    let json = match kind {
        "quantize" => convert::json(&prunq::quant::QuantConfig::default()),
        "prune" => convert::json(&prunq::prune::PruneConfig::default()),
        other => Err(prunq::Error::Usage(format!("no defaults for {other:?}: quantize or prune")).into()),
    };
    json.map_err(to_py)
}

#[pymodule]
fn _prunq(m: &Bound<'_, PyModule>) -> PyResult<()> {
    prunq::runtime::remember_panics();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)?;
    for f in [
        wrap_pyfunction!(job, m)?,
        wrap_pyfunction!(compare, m)?,
        wrap_pyfunction!(evaluate, m)?,
        wrap_pyfunction!(bench_models, m)?,
        wrap_pyfunction!(convert_model, m)?,
        wrap_pyfunction!(run_cli, m)?,
        wrap_pyfunction!(configure, m)?,
        wrap_pyfunction!(configure_data, m)?,
        wrap_pyfunction!(render_html, m)?,
        wrap_pyfunction!(defaults, m)?,
        wrap_pyfunction!(runtime_in_use, m)?,
    ] {
        m.add_function(f)?;
    }
    Ok(())
}
