"""The runtimes issue's benchmark: prunq's ONNX Runtime backend against Python ONNX Runtime.

usage: python bench/runtimes.py [--skip-quantize]   (test venv, after `cargo build --release`)

1. `prunq bench` agrees with a Python ONNX Runtime timing of the same pair (digits_cnn fp32 vs its
   prunq static int8 output; batch 1, one thread, runs interleaved) — the speed-up ratio within 15 %.
2. Static quantization time with default options, `--runtime ort` and `--runtime tract`, against
   `onnxruntime.quantization.quantize_static` (QDQ, MinMax, uint8 activations, per-channel, the same
   calibration set), each run once, one after another; quality judged in ONNX Runtime (prunq's
   in-process ORT, tested equal to Python's): ppocr_rec exact lines, minilm mean cosine to fp32.
Writes bench/results/runtimes.md.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort

from cpu_class import cpu_class

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared")
PRUNQ = os.path.join(ROOT, "target", "release", "prunq")


def shared(*p):
    return os.path.join(SHARED, *p)


def prunq(*args):
    out = subprocess.run([PRUNQ, "--quiet", *args], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"prunq {' '.join(args)} failed:\n{out.stderr}")
    return out.stdout


def python_ratio(a, b, data, runs=300, warmup=20):
    """Median over rounds of time(b) / time(a), the models taking turns, as prunq bench does."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sa = ort.InferenceSession(a, opts, providers=["CPUExecutionProvider"])
    sb = ort.InferenceSession(b, opts, providers=["CPUExecutionProvider"])
    x = np.load(data)["input"]
    ratios = []
    for i in range(warmup + runs):
        feed = {"input": x[i % 64 : i % 64 + 1]}
        t0 = time.perf_counter()
        sa.run(None, feed)
        t1 = time.perf_counter()
        sb.run(None, feed)
        t2 = time.perf_counter()
        if i >= warmup:
            ratios.append((t2 - t1) / (t1 - t0))
    return float(np.median(ratios))


def bench_agreement(tmp):
    fp32 = shared("models", "digits_cnn.onnx")
    q = os.path.join(tmp, "cnn.int8.onnx")
    prunq("quantize", fp32, "-o", q, "--mode", "static", "--calib", shared("data", "digits_calib.npz"))
    rows = []
    for _ in range(3):
        report = json.loads(prunq("--runtime", "ort", "--threads", "1", "bench", fp32, q, "--data",
                                  shared("data", "digits_test.npz"), "--runs", "300", "--warmup", "20", "--json"))
        ours = report[0]["models"][1]["time_ratio"]
        theirs = python_ratio(fp32, q, shared("data", "digits_test.npz"))
        rows.append((ours, theirs, abs(ours / theirs - 1)))
    return rows


def quantize_times(tmp):
    sys.path.insert(0, os.path.join(ROOT, "tests", "ort"))
    cases = [("ppocr_rec_v4", "ocr_lines_calib.npz", "ocr_lines_test"), ("minilm_l6", "sentences_calib.npz", "sentences_test")]
    rows = []
    for name, calib, test in cases:
        src = shared("models", f"{name}.onnx")
        calib = shared("data", calib)
        outs = {}
        t = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "ort", "ort_quantize.py"), "static", src,
                            os.path.join(tmp, f"{name}.ort.onnx"), calib, "--activations", "u8"],
                           capture_output=True, text=True)
        outs["ORT quantize_static (MinMax, u8)"] = (os.path.join(tmp, f"{name}.ort.onnx"), float(t.stdout.split()[-1]))
        for runtime in ["ort", "tract"]:
            out = os.path.join(tmp, f"{name}.{runtime}.onnx")
            t0 = time.perf_counter()
            prunq("--runtime", runtime, "quantize", src, "-o", out, "--mode", "static", "--calib", calib)
            outs[f"prunq --runtime {runtime}"] = (out, time.perf_counter() - t0)
        for how, (path, secs) in outs.items():
            if name == "ppocr_rec_v4":
                r = json.loads(prunq("--runtime", "ort", "eval", path, "--data", shared("data", f"{test}.npz"),
                                     "--text", shared("data", f"{test}.txt"), "--json"))
                quality = f"{r['exact_match'] * 100:.1f} % exact lines"
            else:
                r = json.loads(prunq("--runtime", "ort", "compare", src, path, "--data", shared("data", f"{test}.npz"),
                                     "--json"))
                quality = f"cosine {r['outputs'][0]['cosine_mean']:.4f}"
            rows.append((name, how, secs, quality))
    return rows


def main():
    with tempfile.TemporaryDirectory() as tmp:
        agreement = bench_agreement(tmp)
        times = [] if "--skip-quantize" in sys.argv else quantize_times(tmp)
    cpu = cpu_class()
    lines = [f"# Runtimes benchmark ({time.strftime('%Y-%m-%d')}, onnxruntime {ort.__version__}, "
             f"{os.cpu_count()} cores, {cpu})", "",
             "## prunq bench vs Python ONNX Runtime: digits_cnn fp32 vs prunq static int8 (batch 1, 1 thread)", "",
             "| trial | prunq bench time ratio | Python ORT time ratio | difference |", "| --- | --- | --- | --- |"]
    lines += [f"| {i + 1} | {a:.3f} | {b:.3f} | {d * 100:.1f} % |" for i, (a, b, d) in enumerate(agreement)]
    if times:
        lines += ["", "## Static quantization time (default options) and quality in ONNX Runtime", "",
                  "| model | quantizer | seconds | quality |", "| --- | --- | --- | --- |"]
        lines += [f"| {n} | {h} | {s:.1f} | {q} |" for n, h, s, q in times]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(ROOT, "bench", "results", "runtimes.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
