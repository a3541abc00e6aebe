"""prunq's quantizer against ONNX Runtime's own, on the shared models and data.

usage: python bench/quant_vs_ort.py [--quick]      (from the project root, after `cargo build --release`)
Writes the table to bench/results/quant_vs_ort.md and prints it. Every model is judged in ONNX Runtime:
quality on the test split, file size, time to quantize, and latency at batch 1 on 1 thread (median).
"""
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("PRUNQ_SHARED", os.path.join(ROOT, "..", "shared"))
PRUNQ = os.path.join(ROOT, "target", "release", "prunq")
sys.path.insert(0, os.path.join(ROOT, "tests", "ort"))
from ocr_eval import score  # noqa: E402


def data(name):
    return dict(np.load(os.path.join(SHARED, "data", name)))


def session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def run(path, feed, batch=32):
    s = session(path)
    n = len(next(iter(feed.values())))
    outs = [s.run(None, {k: v[i : i + batch] for k, v in feed.items()})[0] for i in range(0, n, batch)]
    return np.concatenate(outs)


def feed_for(path, arrays):
    names = [i.name for i in session(path).get_inputs()]
    if len(names) == 1 and names[0] not in arrays:
        return {names[0]: next(v for k, v in arrays.items() if k not in ("label", "labels"))}
    return {k: arrays[k] for k in names}


def latencies_ms(paths, feed, runs):
    """Median batch-1 latency of each model; the models take turns, run after run, so a
    slower stretch of the machine falls on all of them alike."""
    sessions = [session(p) for p in paths]
    one = {k: v[:1] for k, v in feed.items()}
    for s in sessions:
        for _ in range(5):
            s.run(None, one)
    times = [[] for _ in paths]
    for _ in range(runs):
        for s, t in zip(sessions, times):
            start = time.perf_counter()
            s.run(None, one)
            t.append((time.perf_counter() - start) * 1e3)
    return [float(np.median(t)) for t in times]


def nn(e):
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    s = e @ e.T
    np.fill_diagonal(s, -9)
    return s.argmax(1)


def quality(kind, original, path):
    if kind == "digits":
        d = data("digits_test.npz")
        return f"{(run(path, feed_for(path, d)).argmax(1) == d['label']).mean() * 100:.1f} % acc"
    if kind == "cls":
        d = data("ocr_cls_test.npz")
        a, b = run(original, feed_for(original, d)), run(path, feed_for(path, d))
        return f"{(a.argmax(1) == b.argmax(1)).mean() * 100:.1f} % agree"
    if kind == "rec":
        d = data("ocr_lines_test.npz")
        meta = {p.key: p.value for p in onnx.load(original, load_external_data=False).metadata_props}
        chars = meta["character"].split("\n")
        want = open(os.path.join(SHARED, "data", "ocr_lines_test.txt"), encoding="utf-8").read().split("\n")
        exact, cer = score(run(path, feed_for(path, d)), want, chars)
        return f"{exact * 100:.1f} % lines, CER {cer * 100:.1f} %"
    d = data("sentences_test.npz")
    a, b = run(original, d), run(path, d)
    cos = ((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).mean()
    return f"cos {cos:.4f}, NN {(nn(a) == nn(b)).mean() * 100:.1f} %"


MODELS = [
    ("digits_mlp", "digits", "digits_calib.npz"),
    ("digits_cnn", "digits", "digits_calib.npz"),
    ("digits_resnet", "digits", "digits_calib.npz"),
    ("digits_vit", "digits", "digits_calib.npz"),
    ("ppocr_cls_v2", "cls", "ocr_cls_calib.npz"),
    ("ppocr_rec_v4", "rec", "ocr_lines_calib.npz"),
    ("minilm_l6", "minilm", "sentences_calib.npz"),
]


def main():
    quick = "--quick" in sys.argv
    rows = []
    tmp = tempfile.mkdtemp()
    for name, kind, calib in MODELS:
        src = os.path.join(SHARED, "models", name + ".onnx")
        calib_path = os.path.join(SHARED, "data", calib)
        test = {"digits": "digits_test.npz", "cls": "ocr_cls_test.npz", "rec": "ocr_lines_test.npz"}.get(kind, "sentences_test.npz")
        feed = feed_for(src, data(test))
        runs = 20 if kind == "rec" else 200
        size0 = os.path.getsize(src)
        first = len(rows)
        timed = [src]
        rows.append([name, "fp32", quality(kind, src, src), "1.00", "-", None])
        variants = [("ORT static MinMax", ["static", "minmax"])]
        if not quick and kind != "minilm":
            variants += [("ORT static Percentile", ["static", "percentile"])]
        if kind == "minilm":
            variants += [("ORT dynamic", ["dynamic"])]
        variants += [("prunq static", ["prunq", "static"])]
        if kind == "minilm":
            variants += [("prunq dynamic", ["prunq", "dynamic"])]
        if kind == "rec":
            variants += [("prunq weights int8", ["prunq", "weights"])]
        for label, how in variants:
            out = os.path.join(tmp, f"{name}.{label.replace(' ', '_')}.onnx")
            t = time.perf_counter()
            try:
                if how[0] == "prunq":
                    cmd = [PRUNQ, "quantize", src, "-o", out, "--mode", how[1], "-q"]
                    if how[1] == "static":
                        cmd += ["--calib", calib_path]
                    subprocess.run(cmd, check=True, capture_output=True)
                else:
                    args = [sys.executable, os.path.join(ROOT, "tests", "ort", "ort_quantize.py"), how[0], src, out]
                    if how[0] == "static":
                        args += [calib_path, "--method", how[1]]
                    subprocess.run(args, check=True, capture_output=True)
                secs = time.perf_counter() - t
                rows.append([name, label, quality(kind, src, out), f"{os.path.getsize(out) / size0:.2f}",
                             f"{secs:.1f}", out])
                timed.append(out)
            except subprocess.CalledProcessError as e:
                err = (e.stderr or b"").decode(errors="replace").strip().splitlines()
                rows.append([name, label, "fails: " + (err[-1][:80] if err else "?"), "-", "-", None])
        by_path = dict(zip(timed, latencies_ms(timed, feed, runs)))
        for row in rows[first:]:
            row[5] = by_path.get(row[5] if row[1] != "fp32" else src)
            print(tuple(row), flush=True)
    lines = [
        f"Measured {datetime.date.today()} on {platform.machine()}, {os.cpu_count()} cores, "
        f"onnxruntime {ort.__version__}; latency: batch 1, 1 thread, median, a model's variants taking turns.",
        "",
        "| model | method | quality (in ONNX Runtime) | size vs fp32 | quantize time (s) | latency (ms) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, label, q, size, secs, lat in rows:
        lines.append(f"| {name} | {label} | {q} | {size}× | {secs} | {'-' if lat is None else f'{lat:.2f}'} |")
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "quant_vs_ort.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
