//! The page rendered from small reports.

use super::*;

#[test]
fn a_report_becomes_a_page_with_its_plots_and_escaped_names() {
    let r = serde_json::json!({
        "command": "quantize --mode static",
        "models": {"input": {"size_bytes": 1000, "parameters": 10, "macs": 500,
                              "layers": [{"name": "conv<1>", "op_type": "Conv", "macs": 500}]},
                   "output": {"size_bytes": 300, "parameters": 10, "macs": 500,
                              "layers": [{"name": "conv<1>", "op_type": "Conv", "macs": 500}]}},
        "sensitivity": [{"group": "Conv conv<1>", "sqnr_db": 31.5, "kept_float": true}],
        "skipped": [{"name": "x", "reason": "kept float: a & b"}],
        "notes": ["a <note>"],
    });
    let html = page(&r);
    assert_eq!(html.matches("<svg class=plot").count(), 2, "sensitivity and MACs plots");
    assert!(html.contains("conv&lt;1&gt;") && !html.contains("conv<1>"));
    assert!(html.contains("a &amp; b") && html.contains("a &lt;note&gt;"));
    assert!(html.contains("0.300×"), "size ratio");
    assert!(!html.contains("http"), "no external resources");
}

#[test]
fn numbers_read_well() {
    assert_eq!(num(1234567.0), "1,234,567");
    assert_eq!(num(0.98765), "0.988");
    assert_eq!(num(31.46), "31.5");
    assert_eq!(num(f64::INFINITY), "∞");
    assert_eq!(num(-3.0), "-3");
}
