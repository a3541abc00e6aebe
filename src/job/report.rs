//! A job's report file: the pass's own record, plus what every report carries — the command, both
//! models' size, parameters and MACs per layer, and where time goes by op type in each (measured
//! now, in the runtime) — as JSON, or as the HTML page for a name ending in `.html`.

use super::Job;
use crate::data::Dataset;
use crate::ir::Model;
use crate::{Error, Result};
use serde::Serialize;
use std::path::Path;

impl Job<'_> {
    /// Writes `report` to the job's report file, when one was asked for. `command` is what ran
    /// (`quantize --mode static`, `prune --structured` …); `data` is what the models are profiled
    /// on (inputs of ones without).
    pub(super) fn write_report<T: Serialize>(
        &self,
        command: &str,
        model: &Model,
        data: Option<&Dataset>,
        report: &T,
    ) -> Result<()> {
        let Some(path) = self.checks.report.as_deref() else { return Ok(()) };
        let json = |e: serde_json::Error| Error::Model(format!("{}: {e}", path.display()));
        let mut value = serde_json::to_value(report).map_err(json)?;
        let extra = serde_json::json!({
            "command": command,
            "model": self.input.map(|p| p.display().to_string()),
            "output": self.output.map(|p| p.display().to_string()),
            "models": { "input": facts(self.input, self.original()), "output": facts(self.output, model) },
        });
        let op_time = match crate::eval::op_times(self.original(), model, data) {
            Ok(t) => serde_json::to_value(t).map_err(json)?,
            Err(e) => serde_json::json!({ "error": e.to_string() }),
        };
        if let (Some(object), serde_json::Value::Object(extra)) = (value.as_object_mut(), extra) {
            object.extend(extra);
            object.insert("op_time".into(), op_time);
        }
        let html = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm"));
        let text = if html {
            crate::report::html::page(&value)
        } else {
            serde_json::to_string_pretty(&value).map_err(json)?
        };
        crate::onnx::write_atomically(path, text.as_bytes())
    }
}

/// A model's size, parameters and MACs per layer (an error said in place of them).
fn facts(file: Option<&Path>, model: &Model) -> serde_json::Value {
    let size = match file {
        Some(file) => std::fs::metadata(file).map(|m| m.len()).ok(),
        None => crate::onnx::file_size(model).ok(),
    };
    match crate::analysis::summarize(model, &Default::default(), size) {
        Ok(s) => serde_json::json!({
            "size_bytes": s.size_bytes, "parameters": s.parameters, "macs": s.macs,
            "macs_complete": s.macs_complete, "layers": s.layers,
        }),
        Err(e) => serde_json::json!({ "size_bytes": size, "error": e.to_string() }),
    }
}
