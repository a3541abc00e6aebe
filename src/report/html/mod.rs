//! The report as one self-contained HTML page: summary before/after, per-layer
//! tables and plots drawn as inline SVG. No network, no external files; the
//! only script marks the page once the plots have a size (for the browser test).
//!
//! Rendered from the JSON report (any command's), so `prunq report R.json`
//! gives the same page as `--report R.html`.

mod bars;
use bars::Bars;

use serde_json::Value;
use std::fmt::Write;

/// The page for a report as JSON (a quantize, prune or structured-prune report).
pub fn page(r: &Value) -> String {
    let command = r["command"].as_str().unwrap_or("prunq");
    let mut body = String::new();
    let _ = write!(body, "<h1>prunq {}</h1>", esc(command));
    if let Some(m) = r["model"].as_str() {
        let _ = write!(body, "<p class=sub>{} → {}</p>", esc(m), esc(r["output"].as_str().unwrap_or("")));
    }
    body += &summary(r);
    body += &notes(r);
    body += &search(r);
    body += &plots(r);
    body += &tables(r);
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>prunq report: {title}</title>\
         <style>{STYLE}</style></head><body>{body}<script>{SCRIPT}</script></body></html>\n",
        title = esc(command)
    )
}

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}\
h1{font-size:22px;margin:0}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}\
.sub{color:#666;margin:2px 0 16px}table{border-collapse:collapse;margin:6px 0 12px}\
td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}\
th{background:#f6f6f6}td.n{text-align:right;font-variant-numeric:tabular-nums}\
.good{color:#176b2c}.bad{color:#a4161a}.note{background:#fff8e1;padding:6px 10px;margin:4px 0;border-left:3px solid #f0b400}\
svg{display:block;margin:6px 0 14px}svg text{font:11px system-ui,sans-serif}\
details{margin:4px 0}summary{cursor:pointer;color:#444}";

/// Counts the plots whose marks (bars, points) were drawn with a size: `data-plots` on the body.
const SCRIPT: &str = "document.body.dataset.plots=[...document.querySelectorAll('svg.plot')]\
.filter(s=>[...s.querySelectorAll('rect.bar,circle.point')].some(m=>m.getBoundingClientRect().width>0)).length;";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A number as a person reads it: 3 significant figures, thousands grouped.
fn num(v: f64) -> String {
    if !v.is_finite() {
        return if v.is_nan() {
            "NaN".into()
        } else if v > 0.0 {
            "∞".into()
        } else {
            "−∞".into()
        };
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        let digits = super::table::thousands(v.abs() as u64);
        return if v < 0.0 { format!("-{digits}") } else { digits };
    }
    if v.abs() < 1e-3 || v.abs() >= 1e7 {
        return format!("{v:.3e}");
    }
    let digits = (2 - v.abs().log10().floor() as i32).clamp(0, 6) as usize;
    format!("{v:.digits$}")
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "–".into(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
        Value::Number(n) => num(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => esc(s),
        Value::Array(items) if items.iter().all(Value::is_number) => {
            items.iter().map(|i| num(i.as_f64().unwrap_or(f64::NAN))).collect::<Vec<_>>().join("×")
        }
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(", "),
        Value::Object(_) => esc(&v.to_string()),
    }
}

/// A table of the objects in `rows`, one column per (key, header).
fn table(rows: &[Value], columns: &[(&str, &str)]) -> String {
    let mut t = String::from("<table><tr>");
    for (_, h) in columns {
        let _ = write!(t, "<th>{}</th>", esc(h));
    }
    t += "</tr>";
    for row in rows {
        t += "<tr>";
        for (k, _) in columns {
            let v = pointer(row, k);
            let class = if v.is_number() { " class=n" } else { "" };
            let _ = write!(t, "<td{class}>{}</td>", cell(v));
        }
        t += "</tr>";
    }
    t + "</table>"
}

/// `a/b` paths into nested objects; `0`, `1` index arrays (tuples).
fn pointer<'a>(v: &'a Value, key: &str) -> &'a Value {
    v.pointer(&format!("/{key}")).unwrap_or(&Value::Null)
}

/// A collapsible table when there are many rows.
fn section_table(title: &str, rows: &[Value], columns: &[(&str, &str)]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let t = table(rows, columns);
    if rows.len() > 25 {
        format!("<h2>{}</h2><details><summary>{} rows</summary>{t}</details>", esc(title), rows.len())
    } else {
        format!("<h2>{}</h2>{t}", esc(title))
    }
}

fn summary(r: &Value) -> String {
    let mut rows = String::new();
    let mut row = |what: &str, before: String, after: String, change: String| {
        let _ = write!(
            rows,
            "<tr><td>{what}</td><td class=n>{before}</td><td class=n>{after}</td><td class=n>{change}</td></tr>"
        );
    };
    let (a, b) = (&r["models"]["input"], &r["models"]["output"]);
    let ratio = |x: &Value, y: &Value| match (x.as_f64(), y.as_f64()) {
        (Some(x), Some(y)) if x > 0.0 => format!("{:.3}×", y / x),
        _ => String::new(),
    };
    // Parameters are the float constants' elements: quantized weights leave this count.
    for (key, what) in [("size_bytes", "size (bytes)"), ("parameters", "float parameters"), ("macs", "MACs")] {
        if !a[key].is_null() || !b[key].is_null() {
            row(what, cell(&a[key]), cell(&b[key]), ratio(&a[key], &b[key]));
        }
    }
    if let Some(l) = r["latency"].as_object() {
        let speed = l["speedup"].as_f64().unwrap_or(f64::NAN);
        let class = if speed < 0.95 { "bad" } else { "good" };
        row(
            &format!(
                "latency (ms per run; {} {}, batch 1, 1 thread, {} runs taking turns)",
                cell(&l["runtime"]["backend"]),
                cell(&l["runtime"]["version"]),
                cell(&l["runs"])
            ),
            cell(&l["input_ms"]),
            cell(&l["output_ms"]),
            format!("<span class={class}>{speed:.2}× the speed</span>"),
        );
    }
    let mut out =
        String::from("<h2>Before and after</h2><table><tr><th></th><th>input</th><th>output</th><th>change</th></tr>");
    out += &rows;
    out += "</table>";
    if let Some(db) = r["quantized_sqnr_db"].as_f64() {
        let trials = r["sensitivity"].as_array().map_or(0, Vec::len);
        let _ = write!(
            out,
            "<p>Output SQNR with every candidate layer quantized, on calibration samples: {} dB{}</p>",
            num(db),
            if trials == 0 {
                " — the target was met, no layer needed to stay float".to_string()
            } else {
                format!("; {trials} groups then measured one by one")
            }
        );
    }
    for (key, title) in
        [("comparison", "Quality against the input"), ("comparison_without_repair", "Quality before the repair")]
    {
        if let Some(outputs) = r[key]["outputs"].as_array() {
            let _ = write!(
                out,
                "<p>{title}: {} samples, {} {}</p>",
                cell(&r[key]["samples"]),
                cell(&r[key]["runtime"]["backend"]),
                cell(&r[key]["runtime"]["version"])
            );
            out += &table(
                outputs,
                &[
                    ("name", "output"),
                    ("top1_agreement", "top-1 agreement"),
                    ("cosine_mean", "cosine mean"),
                    ("cosine_min", "cosine min"),
                    ("sqnr_db", "SQNR dB"),
                    ("max_abs_error", "max |error|"),
                    ("nn_agreement", "NN agreement"),
                ],
            );
        }
    }
    if let Some(checked) = r["output_check"]["outputs"].as_array() {
        out += "<p>Checked before writing (each output beside the input's):</p>";
        out += &table(
            checked,
            &[
                ("name", "output"),
                ("runtime", "runtime"),
                ("sqnr_db", "SQNR dB"),
                ("cosine_min", "cosine min"),
                ("turned_non_finite", "turned non-finite"),
            ],
        );
    }
    out
}

fn notes(r: &Value) -> String {
    let mut out = String::new();
    for n in r["notes"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        let _ = write!(out, "<div class=note>{}</div>", esc(n));
    }
    out
}

/// `optimize`'s search: each candidate's quality against its speed-up (circle
/// area ∝ size), the Pareto front joined, the budget drawn, and the table.
fn search(r: &Value) -> String {
    let Some(candidates) = r["candidates"].as_array().filter(|c| !c.is_empty()) else { return String::new() };
    let metric = r["metric"].as_str().unwrap_or("quality");
    let quality = |c: &Value| c["quality"]["value"].as_f64();
    let measured: Vec<(usize, f64, f64, f64)> = candidates
        .iter()
        .enumerate()
        .filter_map(|(i, c)| Some((i, c["speedup"].as_f64()?, quality(c)?, c["size_ratio"].as_f64()?)))
        .filter(|(_, x, y, _)| x.is_finite() && y.is_finite())
        .collect();
    let original = r["original_quality"].as_f64().unwrap_or(f64::NAN);
    let bound = r["bound"].as_f64().unwrap_or(f64::NAN);
    let chosen = r["chosen"].as_u64().map(|c| c as usize);
    let xs = measured.iter().map(|m| m.1).chain([1.0]);
    let ys = measured.iter().map(|m| m.2).chain([original, bound]).filter(|v| v.is_finite());
    let (x_max, y_lo, y_hi) =
        (xs.fold(1.0, f64::max) * 1.08, ys.clone().fold(f64::INFINITY, f64::min), ys.fold(f64::NEG_INFINITY, f64::max));
    let pad = ((y_hi - y_lo) * 0.08).max(1e-6);
    let (y_lo, y_hi) = (y_lo - pad, y_hi + pad);
    let (left, top, w, h) = (70.0, 30.0, 760.0, 360.0);
    let px = |x: f64| left + x / x_max * w;
    let py = |y: f64| top + (y_hi - y) / (y_hi - y_lo) * h;
    let title =
        format!("Candidates: {metric} against speed-up (circle area: size; green: the Pareto front; ring: written)");
    let mut s = format!(
        "<h2>Search</h2><svg class=plot width={} height={} role=img aria-label=\"{}\">",
        left + w + 40.0,
        top + h + 50.0,
        esc(&title)
    );
    let _ = write!(s, "<text x={left} y=16>{}</text>", esc(&title));
    let _ = write!(
        s,
        "<line x1={left} y1={} x2={} y2={} stroke=\"#999\"/><line x1={left} y1={top} x2={left} y2={} stroke=\"#999\"/>",
        top + h,
        left + w,
        top + h,
        top + h
    );
    for k in 0..=5 {
        let x = x_max * k as f64 / 5.0;
        let _ = write!(s, "<text x={:.1} y={} text-anchor=middle>{}×</text>", px(x), top + h + 16.0, num(x));
        let y = y_lo + (y_hi - y_lo) * k as f64 / 5.0;
        let _ = write!(s, "<text x={} y={:.1} text-anchor=end>{}</text>", left - 6.0, py(y) + 4.0, num(y));
    }
    let _ = write!(
        s,
        "<text x={} y={} text-anchor=middle>speed-up over the original</text>",
        left + w / 2.0,
        top + h + 40.0
    );
    if bound.is_finite() {
        let _ = write!(
            s,
            "<line x1={left} y1={b:.1} x2={} y2={b:.1} stroke=#c0392b stroke-dasharray=\"4\"/><text x={} y={:.1} text-anchor=end fill=#c0392b>budget</text>",
            left + w,
            left + w,
            py(bound) - 4.0,
            b = py(bound)
        );
    }
    let mut front: Vec<&(usize, f64, f64, f64)> =
        measured.iter().filter(|m| candidates[m.0]["pareto"].as_bool().unwrap_or(false)).collect();
    front.sort_by(|a, b| a.1.total_cmp(&b.1));
    if front.len() > 1 {
        let points: Vec<String> = front.iter().map(|m| format!("{:.1},{:.1}", px(m.1), py(m.2))).collect();
        let _ = write!(s, "<polyline points=\"{}\" fill=none stroke=\"#2e8b57\"/>", points.join(" "));
    }
    let _ = write!(
        s,
        "<circle class=point cx={:.1} cy={:.1} r=6 fill=#999><title>the original: {}</title></circle>",
        px(1.0),
        py(original),
        num(original)
    );
    for &(i, x, y, size) in &measured {
        let c = &candidates[i];
        let fill = match (c["pareto"].as_bool(), c["meets_budget"].as_bool()) {
            (Some(true), _) => "#2e8b57",
            (_, Some(true)) => "#3c78b4",
            _ => "#c0392b",
        };
        let radius = 3.0 + 9.0 * size.clamp(0.0, 1.0).sqrt();
        let ring = if Some(i) == chosen { " stroke=#000 stroke-width=2" } else { "" };
        let _ = write!(
            s,
            "<circle class=point cx={:.1} cy={:.1} r={radius:.1} fill=\"{fill}\" fill-opacity=0.75{ring}><title>{}: {} {}, {}× speed, {}× size</title></circle>",
            px(x),
            py(y),
            esc(c["label"].as_str().unwrap_or("")),
            esc(metric),
            num(y),
            num(x),
            num(size)
        );
    }
    s += "</svg>";
    let rows: Vec<Value> = candidates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut c = c.clone();
            c["written"] = Value::Bool(Some(i) == chosen);
            c
        })
        .collect();
    s + &section_table(
        "Candidates (in the order measured)",
        &rows,
        &[
            ("label", "recipe"),
            ("quality/value", metric),
            ("quality/nn_agreement", "NN agreement %"),
            ("speedup", "speed-up"),
            ("size_ratio", "size ratio"),
            ("meets_budget", "keeps the budget"),
            ("pareto", "Pareto front"),
            ("written", "written"),
            ("seconds", "seconds"),
            ("error", "not made because"),
        ],
    )
}

fn plots(r: &Value) -> String {
    let mut out = String::new();
    // Sensitivity: each group's output SQNR quantized alone; red ones stayed float.
    if let Some(groups) = r["sensitivity"].as_array().filter(|g| !g.is_empty()) {
        out += &Bars {
            title: "Sensitivity: output SQNR with only this group quantized (red: kept float)",
            unit: "dB",
            labels: groups.iter().map(|g| cell(&g["group"])).collect(),
            series: vec![(
                "SQNR",
                "#3c78b4",
                groups.iter().map(|g| g["sqnr_db"].as_f64().unwrap_or(f64::NAN)).collect(),
            )],
            flagged: groups.iter().map(|g| g["kept_float"].as_bool().unwrap_or(false)).collect(),
        }
        .svg();
    }
    // Sparsity per pruned layer.
    if let Some(layers) =
        r["layers"].as_array().filter(|l| l.first().is_some_and(|x| x.get("sparsity_after").is_some()))
    {
        out += &Bars {
            title: "Sparsity per layer",
            unit: "% zeros",
            labels: layers.iter().map(|l| cell(&l["node"])).collect(),
            series: vec![
                (
                    "before",
                    "#9db4cc",
                    layers.iter().map(|l| 100.0 * l["sparsity_before"].as_f64().unwrap_or(0.0)).collect(),
                ),
                (
                    "after",
                    "#3c78b4",
                    layers.iter().map(|l| 100.0 * l["sparsity_after"].as_f64().unwrap_or(0.0)).collect(),
                ),
            ],
            flagged: vec![],
        }
        .svg();
    }
    // Repair: each re-fitted layer's relative output error before and after.
    if let Some(rep) = r["repaired"].as_array().filter(|x| !x.is_empty()) {
        out += &Bars {
            title: "Repair: relative output error of each re-fitted layer",
            unit: "error",
            labels: rep.iter().map(|l| cell(&l["node"])).collect(),
            series: vec![
                (
                    "before repair",
                    "#d98c5f",
                    rep.iter().map(|l| l["error_before"].as_f64().unwrap_or(f64::NAN)).collect(),
                ),
                ("after", "#3c78b4", rep.iter().map(|l| l["error_after"].as_f64().unwrap_or(f64::NAN)).collect()),
            ],
            flagged: vec![],
        }
        .svg();
    }
    // MACs per layer, before and after, matched by layer name.
    let layers = |side: &str| r["models"][side]["layers"].as_array().cloned().unwrap_or_default();
    let (before, after) = (layers("input"), layers("output"));
    let with_macs: Vec<&Value> = before.iter().filter(|l| l["macs"].as_u64().unwrap_or(0) > 0).collect();
    if !with_macs.is_empty() {
        let after_of =
            |name: &Value| after.iter().find(|l| l["name"] == *name).and_then(|l| l["macs"].as_f64()).unwrap_or(0.0);
        out += &Bars {
            title: "MACs per layer",
            unit: "MACs",
            labels: with_macs.iter().map(|l| format!("{} ({})", cell(&l["name"]), cell(&l["op_type"]))).collect(),
            series: vec![
                ("input", "#9db4cc", with_macs.iter().map(|l| l["macs"].as_f64().unwrap_or(0.0)).collect()),
                ("output", "#3c78b4", with_macs.iter().map(|l| after_of(&l["name"])).collect()),
            ],
            flagged: vec![],
        }
        .svg();
    }
    // Time by op type in the runtime, before and after.
    let ops = |side: &str| r["op_time"][side]["ops"].as_array().cloned().unwrap_or_default();
    let (ob, oa) = (ops("input"), ops("output"));
    if !ob.is_empty() || !oa.is_empty() {
        let mut names: Vec<String> =
            ob.iter().chain(&oa).filter_map(|o| o["op_type"].as_str().map(String::from)).collect();
        names.sort();
        names.dedup();
        let runs = r["op_time"]["runs"].as_f64().unwrap_or(1.0).max(1.0);
        let ms = |list: &[Value], n: &str| {
            list.iter().find(|o| o["op_type"] == n).and_then(|o| o["total_ms"].as_f64()).unwrap_or(0.0) / runs
        };
        let mut rows: Vec<(String, f64, f64)> = names.iter().map(|n| (n.clone(), ms(&ob, n), ms(&oa, n))).collect();
        rows.sort_by(|a, b| (b.1 + b.2).total_cmp(&(a.1 + a.2)));
        rows.truncate(20);
        let title =
            format!("Time by op type in {} (ms per run, batch 1, profiled)", cell(&r["op_time"]["runtime"]["backend"]));
        out += &Bars {
            title: &title,
            unit: "ms",
            labels: rows.iter().map(|r| r.0.clone()).collect(),
            series: vec![
                ("input", "#9db4cc", rows.iter().map(|r| r.1).collect()),
                ("output", "#3c78b4", rows.iter().map(|r| r.2).collect()),
            ],
            flagged: vec![],
        }
        .svg();
    }
    out
}

fn tables(r: &Value) -> String {
    let list = |k: &str| r[k].as_array().cloned().unwrap_or_default();
    let mut out = String::new();
    out += &section_table(
        "Sensitivity per group",
        &list("sensitivity"),
        &[("group", "group"), ("sqnr_db", "output SQNR dB quantized alone"), ("kept_float", "kept float")],
    );
    let skipped = list("skipped");
    // Quantization reports name skipped tensors as objects, pruning as (name, why) pairs.
    let (name, why) = if skipped.first().is_some_and(Value::is_array) { ("0", "1") } else { ("name", "reason") };
    out += &section_table("Left as they were, and why", &skipped, &[(name, "tensor or node"), (why, "why")]);
    out += &section_table(
        "Quantized tensors",
        &list("tensors"),
        &[
            ("name", "tensor"),
            ("qtype", "type"),
            ("granularity", "granularity"),
            ("shape", "shape"),
            ("scale_min", "scale min"),
            ("scale_max", "scale max"),
        ],
    );
    if r["layers"].as_array().is_some_and(|l| l.first().is_some_and(|x| x.get("sparsity_after").is_some())) {
        out += &section_table(
            "Pruned layers",
            &list("layers"),
            &[
                ("node", "node"),
                ("weight", "weight"),
                ("shape", "shape"),
                ("sparsity_before", "sparsity before"),
                ("sparsity_after", "sparsity after"),
            ],
        );
    }
    if r["layers"].as_array().is_some_and(|l| l.first().is_some_and(|x| x.get("macs_before").is_some())) {
        out += &section_table(
            "Layers: MACs and parameters",
            &list("layers"),
            &[
                ("node", "node"),
                ("op_type", "op"),
                ("macs_before", "MACs before"),
                ("macs_after", "MACs after"),
                ("params_before", "params before"),
                ("params_after", "params after"),
            ],
        );
    }
    let groups: Vec<Value> = list("groups")
        .into_iter()
        .map(|mut g| {
            let removed = g["removed"].as_array().map_or(0, Vec::len);
            g["removed_count"] = removed.into();
            g
        })
        .collect();
    out += &section_table(
        "Channel groups: channels removed",
        &groups,
        &[
            ("sources", "made by"),
            ("channels", "channels"),
            ("kept", "kept"),
            ("removed_count", "removed"),
            ("blocked", "blocked by"),
        ],
    );
    out += &section_table(
        "Repair",
        &list("repaired"),
        &[("node", "layer"), ("error_before", "error before"), ("error_after", "error after")],
    );
    out += &section_table("Not repaired", &list("not_repaired"), &[("0", "layer"), ("1", "why")]);
    out
}

#[cfg(test)]
mod tests;
