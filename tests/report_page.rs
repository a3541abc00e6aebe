//! The HTML report in a real browser: Debian's Chromium, headless (`.ci/run`
//! installs it). The page must load without console errors, lay out its plots,
//! and give a screenshot (kept under target/tmp as the test's artifact).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn chromium() -> PathBuf {
    let path = PathBuf::from(std::env::var_os("PRUNQ_CHROMIUM").unwrap_or_else(|| "/usr/bin/chromium".into()));
    assert!(
        path.exists(),
        "{} not found: `.ci/run` installs Debian's chromium (apt-get install chromium)",
        path.display()
    );
    path
}

/// Chromium's flags for a machine without network, as root, without a display.
fn browser(profile: &Path) -> Command {
    let mut c = Command::new(chromium());
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]);
    c.arg(format!("--user-data-dir={}", profile.display()));
    c
}

/// Loads `page`; returns the number of plots the page counted as laid out. Panics on
/// any console message (errors, failed loads) and keeps a screenshot as `shot`.
fn load(page: &Path, shot: &Path, dir: &Path) -> usize {
    let url = format!("file://{}", page.display());
    let out = browser(&dir.join("profile-dom"))
        .args(["--enable-logging=stderr", "--v=0", "--dump-dom", &url])
        .output()
        .unwrap();
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    let log = String::from_utf8_lossy(&out.stderr);
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "console messages on {}:\n{}", page.display(), console.join("\n"));
    let dom = String::from_utf8_lossy(&out.stdout);
    let plots = dom.split("data-plots=\"").nth(1).and_then(|s| s.split('"').next()).and_then(|n| n.parse().ok());
    let out = browser(&dir.join("profile-shot"))
        .args(["--window-size=1200,2400", &format!("--screenshot={}", shot.display()), &url])
        .output()
        .unwrap();
    assert!(out.status.success(), "chromium screenshot failed: {}", String::from_utf8_lossy(&out.stderr));
    let png = image::open(shot).unwrap().to_rgb8();
    let inked = png.pixels().filter(|p| p.0.iter().any(|c| *c < 200)).count();
    assert!(inked > 10_000, "the screenshot is nearly blank ({inked} dark pixels)");
    plots.unwrap_or_else(|| panic!("the page's script did not run: no data-plots in the DOM"))
}

fn prunq(args: &[&std::ffi::OsStr]) {
    let out = common::prunq_quiet(args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn artifact(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(name)
}

#[test]
fn quantize_and_prune_reports_render_in_chromium() {
    let dir = common::tempdir();
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    let (calib, test) = (common::data("digits_calib.npz"), common::data("digits_test.npz"));

    // Static quantization with a sensitivity search: sensitivity, MACs and op-time plots.
    let (vit, out, page) =
        (common::model("digits_vit.onnx"), dir.path().join("v.onnx"), dir.path().join("quantize.html"));
    prunq(&[
        os("quantize"),
        vit.as_os_str(),
        os("-o"),
        out.as_os_str(),
        os("--mode"),
        os("static"),
        os("--calib"),
        calib.as_os_str(),
        os("--val"),
        test.as_os_str(),
        os("--target-sqnr"),
        os("45"),
        os("--report"),
        page.as_os_str(),
    ]);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("Sensitivity: output SQNR") && html.contains("Time by op type"), "plots missing");
    assert!(!html.contains("src=") && !html.contains("href="), "the page loads nothing from elsewhere");
    assert_eq!(load(&page, &artifact("report-quantize.png"), dir.path()), 3);

    // Structured pruning, reported as JSON and turned into a page by `prunq report`.
    let (cnn, out, json, page) = (
        common::model("digits_cnn.onnx"),
        dir.path().join("p.onnx"),
        dir.path().join("p.json"),
        dir.path().join("prune.html"),
    );
    prunq(&[
        os("prune"),
        cnn.as_os_str(),
        os("-o"),
        out.as_os_str(),
        os("--structured"),
        os("--ratio"),
        os("0.3"),
        os("--calib"),
        calib.as_os_str(),
        os("--val"),
        test.as_os_str(),
        os("--report"),
        json.as_os_str(),
    ]);
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let (before, after) = (&report["models"]["input"]["macs"], &report["models"]["output"]["macs"]);
    assert!(after.as_u64().unwrap() < before.as_u64().unwrap(), "MACs {before} → {after}");
    assert!(report["op_time"]["input"]["ops"].as_array().is_some_and(|o| !o.is_empty()));
    prunq(&[os("report"), json.as_os_str(), os("-o"), page.as_os_str()]);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("Channel groups: channels removed") && html.contains("Repair: relative output error"));
    assert_eq!(load(&page, &artifact("report-prune.png"), dir.path()), 3, "repair, MACs and op-time plots");

    // The search of `optimize`: candidates against speed-up, every plot's marks drawn.
    let (out, page) = (dir.path().join("o.onnx"), dir.path().join("optimize.html"));
    common::optimize_digits_cnn(&out, &[os("--report"), page.as_os_str()]);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("circle class=point") && html.contains("Candidates (in the order measured)"));
    let plots = html.matches("<svg class=plot").count();
    assert!(plots >= 2, "{plots} plots");
    assert_eq!(load(&page, &artifact("report-optimize.png"), dir.path()), plots, "every plot drawn, the search's too");
}
