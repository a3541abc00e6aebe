//! Python's arguments as the library's types: a model or data set given as a path or as bytes
//! (an encoded ModelProto; arrays the package packed as .npz in memory), options as the JSON of
//! the library's own configs (their serde names and defaults: one place for every default).

use crate::errors::Failure;
use prunq::data::{DataOptions, Dataset};
use prunq::ir::Model;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use serde::Deserialize;
use std::path::PathBuf;

/// A model or data set as Python gave it.
pub enum Data {
    /// Bytes in memory: an encoded model, or arrays packed as .npz.
    Bytes(Vec<u8>),
    /// A file or folder.
    Path(PathBuf),
}

/// `bytes` as [`Data::Bytes`], anything else as a path (`str` or `os.PathLike`).
pub fn source(ob: &Bound<'_, PyAny>) -> PyResult<Data> {
    match ob.cast::<PyBytes>() {
        Ok(b) => Ok(Data::Bytes(b.as_bytes().to_vec())),
        Err(_) => Ok(Data::Path(ob.extract()?)),
    }
}

/// [`source`] of an optional argument.
pub fn maybe_source(ob: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Data>> {
    ob.map(source).transpose()
}

/// The model, and the file it was read from.
pub fn model(from: Data) -> Result<(Model, Option<PathBuf>), Failure> {
    Ok(match from {
        Data::Path(p) => (prunq::onnx::load(&p)?, Some(p)),
        Data::Bytes(b) => (prunq::onnx::decode(b)?, None),
    })
}

/// A model of either format to run: ONNX (a path or encoded bytes), or a LiteRT `.tflite` (its
/// bytes say so); an ONNX model converted to LiteRT when `litert` asks it to run there (at the
/// sizes of `data`).
pub fn runnable(from: Data, litert: bool, data: Option<&Dataset>) -> Result<prunq::runtime::ModelFile, Failure> {
    use prunq::runtime::ModelFile;
    let file = match from {
        Data::Path(p) => ModelFile::open(&p)?,
        Data::Bytes(b) if b.get(4..8) == Some(b"TFL3".as_slice()) => ModelFile::LiteRt(b),
        Data::Bytes(b) => ModelFile::Onnx(Box::new(prunq::onnx::decode(b)?)),
    };
    match litert {
        true => Ok(prunq::job::in_litert(file, data)?),
        false => Ok(file),
    }
}

/// How files that are not arrays become inputs (images, text, audio), set by `configure_data`.
static DATA_OPTIONS: std::sync::Mutex<Option<DataOptions>> = std::sync::Mutex::new(None);

/// Sets how images, text and audio become inputs for the calls that follow.
pub fn set_data_options(options: DataOptions) {
    *DATA_OPTIONS.lock().unwrap_or_else(|e| e.into_inner()) = Some(options);
}

/// The data set; `what` names arrays given in memory in errors (`calib`, `val`, `data`).
pub fn data(from: Data, what: &str) -> Result<Dataset, Failure> {
    Ok(match from {
        Data::Path(p) => {
            let options = DATA_OPTIONS.lock().unwrap_or_else(|e| e.into_inner()).clone().unwrap_or_default();
            Dataset::open_with(p, &options)?
        }
        Data::Bytes(b) => {
            let name = format!("{what} (arrays given in Python)");
            Dataset::from_arrays(&name, prunq::data::npz::read_bytes(&b, &name)?).exact()
        }
    })
}

/// A library config from the JSON of its serde form (kebab-case names; missing fields take the
/// config's defaults; an unknown name is a usage error naming it).
pub fn config<T: for<'de> Deserialize<'de>>(json: &str) -> Result<T, Failure> {
    serde_json::from_str(json).map_err(|e| Failure::Prunq(prunq::Error::Usage(format!("option {e}"))))
}

/// The checks every job shares, from `{"latency": bool, "external_data": bool, "report": path,
/// "max_drop": x, "min_quality": x, "metric": name, "texts": [..], "fix_inputs": {name: value}}`.
pub fn checks(json: &str) -> Result<prunq::job::Checks, Failure> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Given {
        latency: bool,
        external_data: bool,
        report: Option<PathBuf>,
        max_drop: Option<f64>,
        min_quality: Option<f64>,
        metric: Option<prunq::optimize::Metric>,
        texts: Option<Vec<String>>,
        #[serde(default)]
        fix_inputs: std::collections::BTreeMap<String, String>,
    }
    let g: Given = config(json)?;
    let budget = prunq::optimize::Budget::given(g.max_drop, g.min_quality)?;
    Ok(prunq::job::Checks {
        latency: g.latency,
        external_data: g.external_data,
        report: g.report,
        budget: budget.map(|budget| prunq::job::QualityBudget { metric: g.metric, budget, texts: g.texts }),
        fix_inputs: fixed_inputs(g.fix_inputs),
    })
}

/// `{"sr": "16000"}` as the library's fixed inputs.
pub fn fixed_inputs(given: std::collections::BTreeMap<String, String>) -> Vec<prunq::transform::FixedInput> {
    given.into_iter().map(|(name, value)| prunq::transform::FixedInput { name, value }).collect()
}

/// `optimize`'s options, from `{"metric", "max_drop", "min_quality", "objective", "time_budget"
/// (seconds), "texts"}`; the metric and budget default as the CLI's do (the library's).
pub fn optimize_options(
    json: &str,
    original: &Model,
    val: &Dataset,
) -> Result<prunq::optimize::OptimizeConfig, Failure> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Given {
        metric: Option<prunq::optimize::Metric>,
        max_drop: Option<f64>,
        min_quality: Option<f64>,
        objective: String,
        time_budget: f64,
        texts: Option<Vec<String>>,
    }
    let g: Given = config(json)?;
    let metric = match g.metric {
        Some(m) => m,
        None => prunq::job::default_metric(original, val, g.texts.is_some())?,
    };
    use prunq::optimize::Objective;
    let objective = match g.objective.as_str() {
        "size" => Objective::Size,
        "latency" => Objective::Latency,
        "both" => Objective::Both,
        other => {
            return Err(prunq::Error::Usage(format!("objective {other:?}: use size, latency or both")).into());
        }
    };
    if !(g.time_budget.is_finite() && g.time_budget > 0.0) {
        return Err(prunq::Error::Usage(format!("time_budget {}: give seconds above 0", g.time_budget)).into());
    }
    Ok(prunq::optimize::OptimizeConfig {
        metric,
        budget: prunq::optimize::Budget::given(g.max_drop, g.min_quality)?
            .unwrap_or_else(|| prunq::job::default_budget(metric)),
        objective,
        time_budget: std::time::Duration::from_secs_f64(g.time_budget),
        texts: g.texts,
        litert: false,
    })
}

/// A report as JSON.
pub fn json<T: serde::Serialize>(value: &T) -> Result<String, Failure> {
    serde_json::to_string(value).map_err(|e| Failure::internal(e.to_string()))
}

/// `auto`, `ort` or `tract`.
pub fn runtime_choice(name: &str) -> Result<prunq::runtime::RuntimeChoice, Failure> {
    use prunq::runtime::RuntimeChoice;
    match name {
        "auto" => Ok(RuntimeChoice::Auto),
        "ort" | "onnxruntime" => Ok(RuntimeChoice::Ort),
        "tract" => Ok(RuntimeChoice::Tract),
        other => Err(prunq::Error::Usage(format!("runtime {other:?}: use auto, ort or tract")).into()),
    }
}

/// The runtimes `bench` times in: the current one (`auto`), one named, or `both`.
pub fn backends(name: &str) -> Result<Vec<prunq::runtime::Backend>, Failure> {
    use prunq::runtime::Backend;
    Ok(match name {
        "both" => vec![Backend::Ort, Backend::Tract],
        "ort" | "onnxruntime" => vec![Backend::Ort],
        "tract" => vec![Backend::Tract],
        "auto" => vec![prunq::runtime::default_backend()?],
        "litert" => vec![Backend::LiteRt],
        other => {
            return Err(prunq::Error::Usage(format!("runtime {other:?}: use auto, ort, tract, litert or both")).into())
        }
    })
}
