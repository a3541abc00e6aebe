"""Structured pruning on the shared models, judged in ONNX Runtime.

usage: python bench/structured.py      (from the project root, after `cargo build --release`)
Writes bench/results/structured.md and prints it. For each case: MACs and parameters
removed (prunq's report, equal to `prunq inspect`), quality on the test split with and
without the least-squares repair, latency at batch 1 on 1 thread (models take turns,
median), and the time `prunq prune` took.
"""
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import onnxruntime as ort

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)
from ort_latency import medians_ms  # noqa: E402
from quant_vs_ort import PRUNQ, ROOT, SHARED, data, quality  # noqa: E402

CASES = [
    ("digits_cnn", "digits", "digits_calib.npz", "digits_test.npz", ["--target-macs", "0.5"]),
    ("digits_cnn", "digits", "digits_calib.npz", "digits_test.npz", ["--target-macs", "0.5", "--round-to", "8"]),
    ("digits_cnn", "digits", "digits_calib.npz", "digits_test.npz", ["--target-macs", "0.7"]),
    ("digits_resnet", "digits", "digits_calib.npz", "digits_test.npz", ["--target-macs", "0.4"]),
    ("digits_mlp", "digits", "digits_calib.npz", "digits_test.npz", ["--target-params", "0.5"]),
    ("digits_vit", "digits", "digits_calib.npz", "digits_test.npz", ["--ratio", "0.5"]),
    ("ppocr_cls_v2", "cls", "ocr_cls_calib.npz", "ocr_cls_test.npz", ["--target-macs", "0.3"]),
    ("ppocr_rec_v4", "rec", "ocr_lines_calib.npz", "ocr_lines_test.npz", ["--target-macs", "0.3"]),
]


def prune(src, out, calib, args, repair=True):
    report = out + ".json"
    cmd = [PRUNQ, "-q", "prune", src, "-o", out, "--structured", "--calib", calib, "--report", report] + args
    if not repair:
        cmd.append("--no-repair")
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return json.load(open(report)), time.perf_counter() - t


def main():
    tmp = tempfile.mkdtemp()
    rows = []
    for k, (name, kind, calib, test, args) in enumerate(CASES):
        src = os.path.join(SHARED, "models", name + ".onnx")
        calib = os.path.join(SHARED, "data", calib)
        out, plain = os.path.join(tmp, f"{k}.onnx"), os.path.join(tmp, f"{k}.plain.onnx")
        report, secs = prune(src, out, calib, args)
        prune(src, plain, calib, args, repair=False)
        b, a = report["before"], report["after"]
        base, pruned = medians_ms([src, out], data(test), rounds=10 if kind == "rec" else 40, runs=3 if kind == "rec" else 25)
        rows.append((
            name, " ".join(args),
            f"-{(1 - a['macs'] / b['macs']) * 100:.1f} %", f"-{(1 - a['params'] / b['params']) * 100:.1f} %",
            quality(kind, src, src), quality(kind, src, plain), quality(kind, src, out),
            f"{base:.3f} → {pruned:.3f} ({base / pruned:.2f}×)", f"{secs:.1f}",
        ))
        print(rows[-1], flush=True)
    head = ["model", "options", "MACs", "params", "fp32", "removal only", "removal + repair", "ORT latency ms", "prune s"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    stamp = f"Measured {datetime.date.today()} on {platform.machine()}, {os.cpu_count()} cores, onnxruntime {ort.__version__}."
    text = stamp + "\n\n" + "\n".join(lines) + "\n"
    os.makedirs(os.path.join(BENCH, "results"), exist_ok=True)
    open(os.path.join(BENCH, "results", "structured.md"), "w").write(text)
    print(text)


if __name__ == "__main__":
    main()
