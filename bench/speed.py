"""The speed issue's benchmark: how fast prunq's outputs run against their fp32 input, where they run.

usage: python bench/speed.py [--models digits_cnn,...]   (test venv, after `cargo build --release`)

For each shared model and each runtime (ONNX Runtime, tract), prunq quantizes it — static (calibrated,
default options: the accuracy fallback, then int8 kept only where it measures faster in that runtime),
data-free weight-only int8 in the default portable form and in the DequantizeLinear form
(`--weight-format qdq`), and int4 weights for minilm — and the ratio fp32 time / output time is read from the report's `latency`
(batch 1, one thread, the two models taking turns, every other round in reverse order, on the
calibration data). Writes bench/results/speed.md.
"""
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared")
PRUNQ = os.path.join(ROOT, "target", "release", "prunq")
CALIB = {
    "digits_cnn": "digits_calib.npz",
    "digits_resnet": "digits_calib.npz",
    "digits_vit": "digits_calib.npz",
    "ppocr_cls_v2": "ocr_cls_calib.npz",
    "ppocr_rec_v4": "ocr_lines_calib.npz",
    "minilm_l6": "sentences_calib.npz",
}
VARIANTS = [
    ("static", ["--mode", "static"]),
    ("weights int8", ["--mode", "weights"]),
    ("weights int8, DequantizeLinear form", ["--mode", "weights", "--weight-format", "qdq"]),
    ("weights int4", ["--mode", "weights", "--bits", "4"]),
]


def run(model, runtime, flags, tmp):
    out = os.path.join(tmp, "out.onnx")
    report = os.path.join(tmp, "report.json")
    calib = os.path.join(SHARED, "data", CALIB[model])
    # Weight-only runs data-free (with --calib it would keep sensitive layers float); the data then
    # only feeds the latency check (--val).
    data_flag = "--val" if flags[flags.index("--mode") + 1] == "weights" else "--calib"
    cmd = [PRUNQ, "--quiet", "--runtime", runtime, "quantize", os.path.join(SHARED, "models", f"{model}.onnx"),
           "-o", out, data_flag, calib, "--report", report, *flags]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        return None, done.stderr.strip().splitlines()[-1]
    r = json.load(open(report))
    size = os.path.getsize(out) / os.path.getsize(os.path.join(SHARED, "models", f"{model}.onnx"))
    return r["latency"]["speedup"], f"{size:.2f}×"


def main():
    models = sys.argv[sys.argv.index("--models") + 1].split(",") if "--models" in sys.argv else list(CALIB)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in models:
            for name, flags in VARIANTS:
                if "--bits" in flags and model != "minilm_l6":
                    continue
                cells = []
                for runtime in ["ort", "tract"]:
                    speedup, note = run(model, runtime, flags, tmp)
                    cells.append(f"{speedup:.2f}× (size {note})" if speedup else f"error: {note}")
                    print(model, name, runtime, cells[-1], flush=True)
                rows.append((model, name, *cells))
    import onnxruntime
    lines = [f"# Speed of prunq's outputs (onnxruntime {onnxruntime.__version__}, tract, 2 cores)", "",
             "fp32 time / output time, batch 1, one thread, models taking turns (from each run's latency check)", "",
             "| model | output | in ONNX Runtime | in tract |", "| --- | --- | --- | --- |"]
    lines += [f"| {' | '.join(r)} |" for r in rows]
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "speed.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
