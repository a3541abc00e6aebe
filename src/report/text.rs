//! Human-readable renderings of the library's reports.

use super::table::{bytes, thousands, Table};
use crate::analysis::Summary;
use crate::eval::{CompareReport, EvalReport, LayerComparison};

/// `inspect`'s text.
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
        out += &format!("shapes unknown ({e}); give concrete input shapes (option shape NAME=DxD…)\n");
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

/// `eval`'s text.
pub fn eval(r: &EvalReport) -> String {
    let mut out = format!("{} samples, batch size {}, {}\n", r.samples, r.batch_size, r.runtime);
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

/// `compare`'s text.
pub fn compare(r: &CompareReport) -> String {
    let mut t = Table::new(&[
        "output",
        "top-1 agree",
        "cos mean",
        "cos min",
        "SQNR dB",
        "max |err|",
        "NN agree",
        "worst slice",
    ]);
    for o in &r.outputs {
        t.row(&[
            o.name.clone(),
            format!("{:.2} %", o.top1_agreement * 100.0),
            format!("{:.5}", o.cosine_mean),
            format!("{:.5}", o.cosine_min),
            if o.sqnr_db.is_finite() { format!("{:.1}", o.sqnr_db) } else { "inf".into() },
            format!("{:.3e}", o.max_abs_error),
            o.nn_agreement.map(|v| format!("{:.2} %", v * 100.0)).unwrap_or_else(|| "-".into()),
            match &o.worst_slice {
                Some(w) if w.sqnr_db.is_finite() => format!("{} {:.1} dB", w.place(), w.sqnr_db),
                Some(w) => format!("{} inf", w.place()),
                None => "-".into(),
            },
        ]);
    }
    let runtime = match r.candidate_runtime.backend == r.runtime.backend {
        true => r.runtime.to_string(),
        false => format!("reference in {}, candidate in {}", r.runtime, r.candidate_runtime),
    };
    format!("{} samples, {runtime}\n{}", r.samples, t.render())
}

/// SQNR of a tensor below which `compare --per-layer` says the error starts there.
pub const ERROR_STARTS_DB: f64 = 20.0;

/// The `top` worst tensors of a per-layer comparison, and where the error starts.
pub fn compare_layers(r: &LayerComparison, top: usize) -> String {
    let db = |v: f64| {
        if v.is_finite() {
            format!("{v:.1}")
        } else if v > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        }
    };
    let mut t = Table::new(&["tensor", "op", "#", "SQNR dB", "cos min", "cos mean", "max |err|"]);
    for l in r.layers.iter().take(top) {
        t.row(&[
            l.name.clone(),
            l.op_type.clone(),
            l.position.to_string(),
            db(l.sqnr_db),
            format!("{:.5}", l.cosine_min),
            format!("{:.5}", l.cosine_mean),
            format!("{:.3e}", l.max_abs_error),
        ]);
    }
    let mut out = format!(
        "{} samples, {}; {} tensors compared (worst {} shown; # is the node's place in the graph){}\n{}",
        r.samples,
        r.runtime,
        r.layers.len(),
        top.min(r.layers.len()),
        if r.unmatched > 0 {
            format!(", {} of the reference's not in the candidate", r.unmatched)
        } else {
            String::new()
        },
        t.render()
    );
    match r.first_below(ERROR_STARTS_DB) {
        Some(l) => {
            out += &format!(
                "error starts at '{}' ({} node '{}', #{}): the first tensor in graph order under {ERROR_STARTS_DB} dB ({} dB)\n",
                l.name,
                l.op_type,
                l.node,
                l.position,
                db(l.sqnr_db)
            )
        }
        None => out += &format!("every tensor is above {ERROR_STARTS_DB} dB\n"),
    }
    for (name, why) in &r.skipped {
        out += &format!("not compared: '{name}': {why}\n");
    }
    out
}

/// The channel groups of a model: what each is made by, and whether it can be pruned.
pub fn groups(d: &crate::analysis::dependency::DependencyGraph) -> String {
    let mut t = Table::new(&["group", "channels", "made by", "prunable"]);
    for g in &d.groups {
        let mut sources = g.sources.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
        if g.sources.len() > 3 {
            sources += &format!(" (+{})", g.sources.len() - 3);
        }
        let mut status = match (g.blocked.first(), g.blocks) {
            (None, 1) => "yes".to_string(),
            (None, runs) => format!("yes, the same number from each of {runs} runs (a grouped conv's)"),
            (Some(why), _) => format!("no: {why}"),
        };
        if let (true, Some((layer, n @ 2..))) = (g.prunable(), g.filters_per_channel()) {
            status += &format!(", each channel {n} filters of {layer} (mirrored runs)");
        }
        t.row(&[g.id.to_string(), g.channels.to_string(), sources, status]);
    }
    let prunable = d.groups.iter().filter(|g| g.prunable()).count();
    format!("{}{prunable} of {} channel groups can be pruned\n", t.render(), d.groups.len())
}

/// What structured pruning removed and what it saved.
pub fn structured(r: &crate::prune::structured::StructuredReport) -> String {
    let pct = |a: u64, b: u64| if a == 0 { 0.0 } else { 100.0 * (1.0 - b as f64 / a as f64) };
    let pruned: Vec<_> = r.groups.iter().filter(|g| !g.removed.is_empty()).collect();
    let mut out = format!(
        "{} of {} channel groups pruned ({} channels removed); {} could not be pruned\n",
        pruned.len(),
        r.groups.len(),
        pruned.iter().map(|g| g.removed.len()).sum::<usize>(),
        r.groups.iter().filter(|g| !g.blocked.is_empty()).count()
    );
    if let Some(b) =
        crate::analysis::dependency::top_blocker(r.groups.iter().map(|g| (g.channels, g.blocked.as_slice())))
    {
        out += &format!("most: {b}\n");
    }
    out += &format!(
        "MACs {} -> {} (-{:.1} %)   parameters {} -> {} (-{:.1} %)\n",
        thousands(r.before.macs),
        thousands(r.after.macs),
        pct(r.before.macs, r.after.macs),
        thousands(r.before.params),
        thousands(r.after.params),
        pct(r.before.params, r.after.params)
    );
    let mut t = Table::new(&["group", "made by", "channels", "kept"]);
    for g in &pruned {
        let by = g.sources.first().cloned().unwrap_or_default()
            + &if g.sources.len() > 1 { format!(" (+{})", g.sources.len() - 1) } else { String::new() };
        t.row(&[g.id.to_string(), by, g.channels.to_string(), g.kept.to_string()]);
    }
    out += &t.render();
    if !r.repaired.is_empty() {
        let mean = |f: fn(&crate::prune::structured::Repaired) -> f64| {
            r.repaired.iter().map(f).sum::<f64>() / r.repaired.len() as f64
        };
        out += &format!(
            "repaired {} layers by least squares: mean relative output error {:.4} -> {:.4}\n",
            r.repaired.len(),
            mean(|x| x.error_before),
            mean(|x| x.error_after)
        );
    }
    for (node, why) in &r.not_repaired {
        out += &format!("  not repaired: {node} ({why})\n");
    }
    for n in &r.notes {
        out += &format!("note: {n}\n");
    }
    out
}

/// Latency side by side: one table per runtime, and where the time goes when profiled.
pub fn bench(r: &crate::eval::BenchReport) -> String {
    let threads = if r.threads == 1 { "1 thread".to_string() } else { format!("{} threads", r.threads) };
    let mut out =
        format!("{}, batch size {}, {threads}, {} runs each, taking turns\n", r.runtime, r.batch_size, r.runs);
    let mut t = Table::new(&["model", "median ms", "p10 ms", "p90 ms", "time ratio", "speed-up"]);
    for m in &r.models {
        let name = match m.runtime == r.runtime.backend.name() {
            true => m.name.clone(),
            false => format!("{} (in {})", m.name, m.runtime),
        };
        t.row(&[
            name,
            format!("{:.3}", m.median_ms),
            format!("{:.3}", m.p10_ms),
            format!("{:.3}", m.p90_ms),
            format!("{:.3}", m.time_ratio),
            format!("{:.2}×", m.speedup),
        ]);
    }
    out += &t.render();
    for m in &r.models {
        let Some(p) = &m.profile else { continue };
        out += &format!("\n{} — time by op type\n", m.name);
        let mut t = Table::new(&["op", "calls", "total ms", "share"]);
        for op in p.ops.iter().take(12) {
            t.row(&[
                op.op_type.clone(),
                op.calls.to_string(),
                format!("{:.3}", op.total_ms),
                format!("{:.1} %", op.share * 100.0),
            ]);
        }
        out += &t.render();
    }
    out
}
