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
use progress::Reporter;
use prunq::job::Job;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::path::PathBuf;

/// What a job hands back to Python: its report as JSON and, when nothing was written, the model.
type Handed = (String, Option<Py<PyBytes>>);

/// Runs `work` on a thread of its own with the GIL released, a panic turned into an internal
/// error. Python handles signals only on its main thread, and only when it runs Python code: the
/// calling thread waits in short steps and looks for Ctrl-C between them, asking the work to stop
/// through `reporter` (it stops at its next loop, and always before writing).
fn detached<T: Send>(
    py: Python<'_>,
    reporter: Option<&Reporter>,
    work: impl FnOnce() -> Result<T, Failure> + Send,
) -> PyResult<T> {
    let outcome = std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("prunq".into())
            .stack_size(WORKER_STACK)
            .spawn_scoped(scope, || errors::no_panic(work))
            .map_err(|e| Failure::internal(format!("cannot start a thread: {e}")))?;
        while !worker.is_finished() {
            py.detach(|| std::thread::sleep(std::time::Duration::from_millis(20)));
            if let (Some(reporter), Err(e)) = (reporter, py.check_signals()) {
                reporter.stop_with(e);
            }
        }
        worker.join().unwrap_or_else(|_| Err(Failure::internal("the worker thread panicked".into())))
    });
    outcome.map_err(to_py)
}

/// The work's thread's stack: a main thread's (decoding deep protobuf and graphs recurses).
const WORKER_STACK: usize = 8 << 20;

/// The report as JSON and, when the job wrote no file, the model's bytes.
fn hand_back<R: serde::Serialize>(py: Python<'_>, done: prunq::job::Done<R>, written: bool) -> PyResult<Handed> {
    let json = serde_json::to_string(&done.report).map_err(|e| to_py(Failure::internal(e.to_string())))?;
    let bytes = match written {
        true => None,
        false => Some(PyBytes::new(py, &prunq::onnx::encode(&done.model).map_err(|e| to_py(e.into()))?).unbind()),
    };
    Ok((json, bytes))
}

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
        Job {
            original: &self.original,
            input: self.input.as_deref(),
            output: self.output.as_deref(),
            calib: self.calib.as_ref(),
            val: self.val.as_ref(),
            checks: self.checks.clone(),
        }
    }
}

/// `quantize(model, output, config_json, calib, val, checks_json, report)`.
#[pyfunction]
#[pyo3(signature = (model, output, config_json, calib, val, checks_json, report))]
#[allow(clippy::too_many_arguments)]
fn quantize(
    py: Python<'_>,
    model: &Bound<'_, PyAny>,
    output: Option<PathBuf>,
    config_json: &str,
    calib: Option<&Bound<'_, PyAny>>,
    val: Option<&Bound<'_, PyAny>>,
    checks_json: &str,
    report: Py<PyAny>,
) -> PyResult<Handed> {
    let reporter = Reporter::new(report);
    let (model, calib, val) = (source(model)?, maybe_source(calib)?, maybe_source(val)?);
    let done = reporter.outcome(detached(py, Some(&reporter), || {
        let config: prunq::quant::QuantConfig = config(config_json)?;
        config.validate()?;
        let files = Files::open(model, output, calib, val, checks_json)?;
        let done = files.job().quantize(&config, &reporter)?;
        Ok((done, files.output.is_some()))
    }))?;
    hand_back(py, done.0, done.1)
}

/// `prune(model, output, config_json, calib, val, checks_json, report)`.
#[pyfunction]
#[pyo3(signature = (model, output, config_json, calib, val, checks_json, report))]
#[allow(clippy::too_many_arguments)]
fn prune(
    py: Python<'_>,
    model: &Bound<'_, PyAny>,
    output: Option<PathBuf>,
    config_json: &str,
    calib: Option<&Bound<'_, PyAny>>,
    val: Option<&Bound<'_, PyAny>>,
    checks_json: &str,
    report: Py<PyAny>,
) -> PyResult<Handed> {
    let reporter = Reporter::new(report);
    let (model, calib, val) = (source(model)?, maybe_source(calib)?, maybe_source(val)?);
    let done = reporter.outcome(detached(py, Some(&reporter), || {
        let config: prunq::prune::PruneConfig = config(config_json)?;
        let files = Files::open(model, output, calib, val, checks_json)?;
        let done = files.job().prune(&config, &reporter)?;
        Ok((done, files.output.is_some()))
    }))?;
    hand_back(py, done.0, done.1)
}

/// `apply(recipe, model, output, calib, val, checks_json, report)`.
#[pyfunction]
#[pyo3(signature = (recipe, model, output, calib, val, checks_json, report))]
#[allow(clippy::too_many_arguments)]
fn apply(
    py: Python<'_>,
    recipe: PathBuf,
    model: &Bound<'_, PyAny>,
    output: Option<PathBuf>,
    calib: Option<&Bound<'_, PyAny>>,
    val: Option<&Bound<'_, PyAny>>,
    checks_json: &str,
    report: Py<PyAny>,
) -> PyResult<Handed> {
    let reporter = Reporter::new(report);
    let (model, calib, val) = (source(model)?, maybe_source(calib)?, maybe_source(val)?);
    let done = reporter.outcome(detached(py, Some(&reporter), || {
        let steps = prunq::optimize::Recipe::read(&recipe)?;
        let files = Files::open(model, output, calib, val, checks_json)?;
        let done = files.job().apply(&steps, &reporter).map_err(|e| match e {
            prunq::Error::Usage(m) => prunq::Error::Usage(format!("{}: {m}", recipe.display())),
            e => e,
        })?;
        Ok((done, files.output.is_some()))
    }))?;
    hand_back(py, done.0, done.1)
}

/// `optimize(model, output, calib, val, options_json, save_recipe, checks_json, report)`.
#[pyfunction]
#[pyo3(signature = (model, output, calib, val, options_json, save_recipe, checks_json, report))]
#[allow(clippy::too_many_arguments)]
fn optimize(
    py: Python<'_>,
    model: &Bound<'_, PyAny>,
    output: Option<PathBuf>,
    calib: &Bound<'_, PyAny>,
    val: &Bound<'_, PyAny>,
    options_json: &str,
    save_recipe: Option<PathBuf>,
    checks_json: &str,
    report: Py<PyAny>,
) -> PyResult<Handed> {
    let reporter = Reporter::new(report);
    let (model, calib, val) = (source(model)?, source(calib)?, source(val)?);
    let done = reporter.outcome(detached(py, Some(&reporter), || {
        let files = Files::open(model, output, Some(calib), Some(val), checks_json)?;
        let val = files.val.as_ref().expect("opened above");
        let options = convert::optimize_options(options_json, &files.original, val)?;
        let metric = options.metric;
        let announce = prunq::job::Announce(&reporter, metric);
        let done = files.job().optimize(&options, &announce, save_recipe.as_deref(), &reporter)?;
        Ok((done, files.output.is_some()))
    }))?;
    hand_back(py, done.0, done.1)
}

/// `compare(reference, candidate, data, batch_size, per_layer, report)`: the report as JSON.
#[pyfunction]
fn compare(
    py: Python<'_>,
    reference: &Bound<'_, PyAny>,
    candidate: &Bound<'_, PyAny>,
    data_in: &Bound<'_, PyAny>,
    batch_size: usize,
    per_layer: bool,
    report: Py<PyAny>,
) -> PyResult<String> {
    let reporter = Reporter::new(report);
    let (reference, candidate, data_in) = (source(reference)?, source(candidate)?, source(data_in)?);
    let json = reporter.outcome(detached(py, Some(&reporter), || {
        let (reference, _) = model(reference)?;
        let (candidate, _) = model(candidate)?;
        let data = data(data_in, "data")?;
        let options = prunq::eval::RunOptions { batch_size, ..Default::default() };
        Ok(match per_layer {
            true => convert::json(&prunq::eval::compare_layers(&reference, &candidate, &data, &options, &reporter)?)?,
            false => convert::json(&prunq::eval::compare(&reference, &candidate, &data, &options, &reporter)?)?,
        })
    }))?;
    Ok(json)
}

/// `evaluate(model, data, batch_size, labels, texts, report)`: the report as JSON.
#[pyfunction]
fn evaluate(
    py: Python<'_>,
    model_in: &Bound<'_, PyAny>,
    data_in: &Bound<'_, PyAny>,
    batch_size: usize,
    labels: Option<String>,
    texts: Option<Vec<String>>,
    report: Py<PyAny>,
) -> PyResult<String> {
    let reporter = Reporter::new(report);
    let (model_in, data_in) = (source(model_in)?, source(data_in)?);
    let json = reporter.outcome(detached(py, Some(&reporter), || {
        let (model, _) = model(model_in)?;
        let data = data(data_in, "data")?;
        let options = prunq::eval::RunOptions { batch_size, labels, texts };
        convert::json(&prunq::eval::evaluate(&model, &data, &options, &reporter)?)
    }))?;
    Ok(json)
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
        let loaded =
            models.into_iter().map(|(name, m)| Ok((name, model(m)?.0))).collect::<Result<Vec<_>, Failure>>()?;
        let named: Vec<(String, &prunq::ir::Model)> = loaded.iter().map(|(n, m)| (n.clone(), m)).collect();
        let data = data(data_in, "data")?;
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

/// Where ONNX Runtime's library is (the running interpreter's `onnxruntime` package), and which
/// runtime measures: `auto` (ONNX Runtime when it loads, else tract), `ort` or `tract`.
#[pyfunction]
#[pyo3(signature = (runtime, ort_library=None, threads=None))]
fn configure(runtime: &str, ort_library: Option<PathBuf>, threads: Option<usize>) -> PyResult<()> {
    prunq::runtime::set_ort_library(ort_library);
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
        wrap_pyfunction!(quantize, m)?,
        wrap_pyfunction!(prune, m)?,
        wrap_pyfunction!(apply, m)?,
        wrap_pyfunction!(optimize, m)?,
        wrap_pyfunction!(compare, m)?,
        wrap_pyfunction!(evaluate, m)?,
        wrap_pyfunction!(bench_models, m)?,
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
