//! Human-readable renderings of the library's reports.

use super::table::{bytes, thousands, Table};
use crate::analysis::Summary;
use crate::eval::{CompareReport, EvalReport};

pub fn summary(s: &Summary) -> String {
    let mut out = String::new();
    let opsets: Vec<String> = s.opsets.iter().map(|(d, v)| format!("{d} {v}")).collect();
    out += &format!("IR version {}, opset {}, producer '{}'\n", s.ir_version, opsets.join(", "), s.producer);
    for (kind, values) in [("input", &s.inputs), ("output", &s.outputs)] {
        for v in values {
            out += &format!("{kind:<6}  {}  {} {}\n", v.name, v.dtype, v.shape);
        }
    }
    let shapes: Vec<String> = s
        .input_shapes
        .iter()
        .map(|(n, d)| format!("{n}={}", d.iter().map(usize::to_string).collect::<Vec<_>>().join("x")))
        .collect();
    out += &format!(
        "\nparameters {}   MACs {}{} (for {})   size {}   weight sparsity {:.1} %\n",
        thousands(s.parameters),
        thousands(s.macs),
        if s.macs_complete { "" } else { " (some layers' shapes unknown)" },
        shapes.join(" "),
        bytes(s.size_bytes),
        s.sparsity * 100.0
    );
    if let Some(e) = &s.shape_error {
        out += &format!("shapes unknown ({e}); give concrete input shapes with --shape NAME=DxD…\n");
    }
    let wb: Vec<String> = s.weight_bytes.iter().map(|(d, b)| format!("{d} {}", bytes(*b))).collect();
    out += &format!("constants by type: {}\n", wb.join(", "));
    let ops: Vec<String> = s.ops.iter().map(|(o, n)| format!("{o} {n}")).collect();
    out += &format!("{} nodes: {}\n\n", s.nodes, ops.join(", "));
    let mut t = Table::new(&["layer", "op", "output", "params", "MACs", "sparsity"]);
    for l in &s.layers {
        t.row(&[
            l.name.clone(),
            l.op_type.clone(),
            l.output_shape.as_ref().map(|d| format!("{d:?}")).unwrap_or_else(|| "?".into()),
            thousands(l.parameters),
            l.macs.map(thousands).unwrap_or_else(|| "?".into()),
            l.sparsity.map(|s| format!("{:.1} %", s * 100.0)).unwrap_or_default(),
        ]);
    }
    out + &t.render()
}

pub fn eval(r: &EvalReport) -> String {
    let mut out = format!("{} samples, batch size {}\n", r.samples, r.batch_size);
    if let Some(a) = r.accuracy {
        out += &format!("accuracy    {:.2} %\n", a * 100.0);
    }
    if let (Some(e), Some(c)) = (r.exact_match, r.cer) {
        out += &format!("exact lines {:.2} %\nCER         {:.2} %\n", e * 100.0, c * 100.0);
    }
    out += &format!("latency     {:.3} ms per batch (median)\n", r.latency_ms_median);
    out += &format!("throughput  {:.1} samples/s\n", r.throughput_per_s);
    out
}

pub fn compare(r: &CompareReport) -> String {
    let mut t = Table::new(&["output", "top-1 agree", "cos mean", "cos min", "SQNR dB", "max |err|", "NN agree"]);
    for o in &r.outputs {
        t.row(&[
            o.name.clone(),
            format!("{:.2} %", o.top1_agreement * 100.0),
            format!("{:.5}", o.cosine_mean),
            format!("{:.5}", o.cosine_min),
            if o.sqnr_db.is_finite() { format!("{:.1}", o.sqnr_db) } else { "inf".into() },
            format!("{:.3e}", o.max_abs_error),
            o.nn_agreement.map(|v| format!("{:.2} %", v * 100.0)).unwrap_or_else(|| "-".into()),
        ]);
    }
    format!("{} samples\n{}", r.samples, t.render())
}
