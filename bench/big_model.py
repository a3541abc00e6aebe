"""A model past 2 GB with external data through inspect, weight-only quantization
and unstructured pruning: wall time, throughput and peak memory (`/usr/bin/time -v`).

usage: python bench/big_model.py [--layers N] [--width W]   (after `cargo build --release`)
Generates a stack of N MatMuls with W×W float32 weights (default 9 × 8192² = 2.4 GB, all in
external data) in a temporary folder — never committed — and writes bench/results/big_model.md.
Then serving in ONNX Runtime (`--serving-only` runs just this part): the smaller model as fp32,
int4 weights in the portable form (unpacked to float at load) and as MatMulNBits (kept packed):
speed as a ratio of models taking turns in one `prunq bench` run, and each model's peak RSS
when a fresh process loads it and runs one row.
"""
import json
import datetime
import os
import platform
import re
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
PRUNQ = os.path.join(ROOT, "target", "release", "prunq")


def arg(name, default):
    return int(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


def generate(folder, layers, width):
    """Writes big.onnx and big.onnx.data one weight at a time (bounded memory)."""
    data = os.path.join(folder, "big.onnx.data")
    inits, nodes, offset = [], [], 0
    rng = np.random.default_rng(0)
    with open(data, "wb") as f:
        for k in range(layers):
            w = (rng.standard_normal((width, width), dtype=np.float32) / np.sqrt(width)).astype(np.float32)
            f.write(w.tobytes())
            t = TensorProto(name=f"w{k}", data_type=TensorProto.FLOAT, dims=[width, width])
            t.data_location = TensorProto.EXTERNAL
            for key, value in (("location", "big.onnx.data"), ("offset", str(offset)), ("length", str(w.nbytes))):
                entry = t.external_data.add()
                entry.key, entry.value = key, value
            offset += w.nbytes
            inits.append(t)
            nodes.append(helper.make_node("MatMul", [f"h{k}" if k else "x", f"w{k}"], [f"h{k + 1}"]))
    graph = helper.make_graph(
        nodes, "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
        [helper.make_tensor_value_info(f"h{layers}", TensorProto.FLOAT, [1, width])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = os.path.join(folder, "big.onnx")
    with open(path, "wb") as f:
        f.write(model.SerializeToString())
    return path, offset


def timed(cmd):
    """Runs cmd under /usr/bin/time -v: (seconds, peak RSS in bytes)."""
    out = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr).group(1)) * 1024
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", out.stderr).group(1)
    parts = [float(p) for p in wall.split(":")]
    secs = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    return secs, rss


def measure(layers, width):
    """Rows of the table for one model size."""
    folder = tempfile.mkdtemp(dir=os.environ.get("PRUNQ_BIG_DIR"))
    src, weight_bytes = generate(folder, layers, width)
    mb = weight_bytes / 1e6
    steps = [
        ("inspect", [PRUNQ, "-q", "inspect", src]),
        ("quantize --mode weights (int8)", [PRUNQ, "-q", "quantize", src, "-o", os.path.join(folder, "q.onnx"), "--mode", "weights"]),
        ("prune --sparsity 0.5 (magnitude)", [PRUNQ, "-q", "prune", src, "-o", os.path.join(folder, "p.onnx"), "--sparsity", "0.5", "--prune-ends"]),
    ]
    rows = []
    for label, cmd in steps:
        secs, rss = timed(cmd)
        rows.append((f"{mb:.0f} MB", label, f"{secs:.1f}", f"{mb / secs:.0f}", f"{rss / 1e6:.0f}", f"{rss / weight_bytes:.2f}×"))
        print(rows[-1], flush=True)
    # The outputs are whole models: load them back.
    for out in ("q.onnx", "p.onnx"):
        subprocess.run([PRUNQ, "-q", "inspect", os.path.join(folder, out)], check=True, capture_output=True)
    subprocess.run(["rm", "-rf", folder])
    return rows


SERVE = """
import sys, numpy as np, onnxruntime as ort
options = ort.SessionOptions()
options.intra_op_num_threads = 1
s = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
s.run(None, {"x": np.ones((1, int(sys.argv[2])), np.float32)})
"""


def serving(layers, width):
    """Lines of the serving table: fp32 against int4 portable and int4 MatMulNBits in ONNX Runtime."""
    folder = tempfile.mkdtemp(dir=os.environ.get("PRUNQ_BIG_DIR"))
    src, weight_bytes = generate(folder, layers, width)
    forms = [("fp32", src)]
    for label, fmt in (("int4 portable (unpacked at load)", "portable"), ("int4 MatMulNBits (packed)", "matmul-nbits")):
        out = os.path.join(folder, f"{fmt}.onnx")
        subprocess.run([PRUNQ, "-q", "quantize", src, "-o", out, "--mode", "weights", "--bits", "4",
                        "--weight-format", fmt, "--no-latency-check"], check=True, capture_output=True)
        forms.append((label, out))
    x = os.path.join(folder, "x.npy")
    np.save(x, np.ones((1, width), np.float32))
    bench = subprocess.run([PRUNQ, "-q", "bench", *[p for _, p in forms], "--data", x, "--runtime", "ort",
                            "--threads", "1", "--runs", "30", "--warmup", "3", "--json"],
                           capture_output=True, text=True)
    if bench.returncode != 0:
        raise SystemExit(f"prunq bench failed:\n{bench.stderr[-2000:]}")
    speed = [m["speedup"] for m in json.loads(bench.stdout)[0]["models"]]
    lines = []
    for (label, path), ratio in zip(forms, speed):
        _, rss = timed([sys.executable, "-c", SERVE, path, str(width)])
        size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)
                   if f.startswith(os.path.basename(path).split(".")[0] + "."))
        lines.append(f"| {weight_bytes / 1e6:.0f} MB | {label} | {size / 1e6:.0f} | {ratio:.2f}× | {rss / 1e6:.0f} |")
        print(lines[-1], flush=True)
    subprocess.run(["rm", "-rf", folder])
    return lines


def main():
    layers, width = arg("--layers", 9), arg("--width", 8192)
    serve = [
        "",
        "Serving in ONNX Runtime (batch 1, one thread): fp32 time / model time, models taking turns in one",
        "`prunq bench` run; peak RSS of a fresh process that loads the model and runs one row.",
        "",
        "| weights | form | file MB | speed | peak RSS (MB) |",
        "| --- | --- | --- | --- | --- |",
    ] + serving(max(1, layers // 3), width)
    if "--serving-only" in sys.argv:
        print("\n".join(serve))
        return
    rows = measure(max(1, layers // 3), width) + measure(layers, width)
    lines = [
        f"Measured {datetime.date.today()} on {platform.machine()}, {os.cpu_count()} cores: stacks of MatMuls with "
        f"{width}×{width} float32 weights, all in external data (the model file itself is ~1 KB); "
        "both outputs are loaded back afterwards.",
        "",
        "| weights | step | seconds | MB/s of weights | peak RSS (MB) | peak RSS / weights |",
        "| --- | --- | --- | --- | --- | --- |",
    ] + ["| " + " | ".join(r) + " |" for r in rows] + serve
    text = "\n".join(lines) + "\n"
    open(os.path.join(BENCH, "results", "big_model.md"), "w").write(text)
    print(text)


if __name__ == "__main__":
    main()
