//! Time per op type over a session's runs: tract's per-node evaluation times
//! or ONNX Runtime's profiler trace, summed the same way.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// Where a model's time goes, by op type, most expensive first.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Profile {
    /// Op types, most expensive first.
    pub ops: Vec<OpTime>,
}

/// Time spent in one op type.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct OpTime {
    /// The runtime's own name for the kernel (ONNX op type in ONNX Runtime,
    /// tract's optimized op, e.g. `OptMatMul`, in tract).
    pub op_type: String,
    /// Node evaluations counted (nodes × runs).
    pub calls: u64,
    /// Total time over the profiled runs.
    pub total_ms: f64,
    /// Fraction of all profiled time.
    pub share: f64,
}

#[derive(Default)]
pub(super) struct Recorder {
    by_op: Mutex<BTreeMap<String, (u64, Duration)>>,
}

impl Recorder {
    pub fn record(&self, op: &str, took: Duration) {
        let mut m = self.by_op.lock().unwrap_or_else(|e| e.into_inner());
        let e = m.entry(op.to_string()).or_default();
        e.0 += 1;
        e.1 += took;
    }

    /// Adds the kernel times of an ONNX Runtime profiling trace (Chrome trace JSON).
    pub fn add_ort_trace(&self, json: &str) -> Result<(), String> {
        let events: Vec<serde_json::Value> = serde_json::from_str(json).map_err(|e| e.to_string())?;
        for e in events {
            let kernel = e["cat"] == "Node" && e["name"].as_str().is_some_and(|n| n.ends_with("_kernel_time"));
            let (Some(op), Some(us)) = (e["args"]["op_name"].as_str(), e["dur"].as_u64()) else { continue };
            if kernel {
                self.record(op, Duration::from_micros(us));
            }
        }
        Ok(())
    }

    pub fn profile(&self) -> Profile {
        let m = self.by_op.lock().unwrap_or_else(|e| e.into_inner());
        let total: f64 = m.values().map(|(_, d)| d.as_secs_f64()).sum();
        let mut ops: Vec<OpTime> = m
            .iter()
            .map(|(op, (calls, d))| OpTime {
                op_type: op.clone(),
                calls: *calls,
                total_ms: d.as_secs_f64() * 1e3,
                share: if total > 0.0 { d.as_secs_f64() / total } else { 0.0 },
            })
            .collect();
        ops.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms).then_with(|| a.op_type.cmp(&b.op_type)));
        Profile { ops }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_kernel_times_of_an_ort_trace_by_op_type() {
        let trace = r#"[
          {"cat":"Session","name":"model_run","dur":900,"args":{}},
          {"cat":"Node","name":"conv1_fence_before","dur":0,"args":{"op_name":"Conv"}},
          {"cat":"Node","name":"conv1_kernel_time","dur":300,"args":{"op_name":"Conv"}},
          {"cat":"Node","name":"conv2_kernel_time","dur":200,"args":{"op_name":"Conv"}},
          {"cat":"Node","name":"relu_kernel_time","dur":500,"args":{"op_name":"Relu"}}
        ]"#;
        let r = Recorder::default();
        r.add_ort_trace(trace).unwrap();
        let p = r.profile();
        assert_eq!(p.ops.len(), 2);
        assert_eq!((p.ops[0].op_type.as_str(), p.ops[0].calls), ("Conv", 2));
        assert!((p.ops[0].total_ms - 0.5).abs() < 1e-9 && (p.ops[0].share - 0.5).abs() < 1e-9);
        assert_eq!(p.ops[1].op_type, "Relu");
        assert!(r.add_ort_trace("not json").is_err());
    }
}
