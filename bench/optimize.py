"""`prunq optimize` against the issue's floors, on the shared models (ONNX Runtime, batch 1, one thread).

usage: python bench/optimize.py [--models digits_cnn,...]   (test venv, after `cargo build --release`)

For each case, `prunq --runtime ort optimize` runs with the floor's budget and writes its report and
recipe; then, independently of the search's own measurements:
- `prunq apply` replays the recipe and the file must come out byte for byte the same;
- `prunq bench` times fp32 and the output taking turns (batch 1, one thread, 400 runs each) in ONNX
  Runtime and in tract: the speed-up is fp32 time / output time, measured side by side in one run;
- the quality is measured again in ONNX Runtime and in tract (`eval` with labels or texts, `compare`
  for agreement and cosine).
Writes bench/results/optimize.md and prints it.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("PRUNQ_SHARED", os.path.join(ROOT, "..", "shared"))
PRUNQ = os.path.join(ROOT, "target", "release", "prunq")


def d(name):
    return os.path.join(SHARED, "data", name)


# (model, calib, val, texts, metric, budget flags, floor text)
CASES = [
    ("digits_cnn", "digits_calib.npz", "digits_test.npz", None, "accuracy", ["--max-drop", "0.5"],
     "≥ 3× faster, ≤ 0.15× size"),
    ("ppocr_rec_v4", "ocr_lines_calib.npz", "ocr_lines_test.npz", "ocr_lines_test.txt", "exact-lines",
     ["--max-drop", "2"], "≥ 1.6× faster, ≤ 0.3× size"),
    ("minilm_l6", "sentences_calib.npz", "sentences_test.npz", None, "cosine", ["--min-quality", "0.99"],
     "≥ 2.2× faster, NN ≥ 85 %"),
    ("ppocr_cls_v2", "ocr_cls_calib.npz", "ocr_cls_test.npz", None, "agreement", ["--max-drop", "1"],
     "faster than fp32, ≤ 0.5× size, faster to run than NNCF's accuracy control (242 s)"),
]


def prunq(*args):
    done = subprocess.run([PRUNQ, "--quiet", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"prunq {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def quality(runtime, metric, model, out, val, texts):
    if metric in ("accuracy", "exact-lines"):
        extra = ["--text", d(texts)] if texts else []
        r = json.loads(prunq("--runtime", runtime, "eval", out, "--data", d(val), "--json", *extra))
        return (f"{100 * r['accuracy']:.1f} % acc" if metric == "accuracy"
                else f"{100 * r['exact_match']:.1f} % lines, CER {100 * r['cer']:.1f} %")
    r = json.loads(prunq("--runtime", runtime, "compare", model, out, "--data", d(val), "--json"))["outputs"][0]
    if metric == "agreement":
        return f"{100 * r['top1_agreement']:.1f} % agree"
    nn = f", NN {100 * r['nn_agreement']:.1f} %" if r.get("nn_agreement") is not None else ""
    return f"cos {r['cosine_mean']:.4f}{nn}"


def speed(runtime, model, out, val):
    r = json.loads(prunq("--runtime", runtime, "bench", model, out, "--data", d(val), "--runs", "400", "--json"))
    return r[0]["models"][1]["speedup"]


def main():
    only = sys.argv[sys.argv.index("--models") + 1].split(",") if "--models" in sys.argv else None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, calib, val, texts, metric, budget, floor in CASES:
            if only and name not in only:
                continue
            model = os.path.join(SHARED, "models", f"{name}.onnx")
            out, again = os.path.join(tmp, f"{name}.onnx"), os.path.join(tmp, f"{name}.again.onnx")
            recipe, report = os.path.join(tmp, f"{name}.toml"), os.path.join(tmp, f"{name}.json")
            extra = ["--text", d(texts)] if texts else []
            started = time.time()
            prunq("--runtime", "ort", "optimize", model, "-o", out, "--calib", d(calib), "--val", d(val),
                  "--metric", metric, *budget, *extra, "--save-recipe", recipe, "--report", report)
            seconds = time.time() - started
            prunq("--runtime", "ort", "apply", recipe, model, "-o", again, "--calib", d(calib), "--no-latency-check")
            same = open(out, "rb").read() == open(again, "rb").read()
            r = json.load(open(report))
            chosen = r["candidates"][r["chosen"]]["label"] if r["chosen"] is not None else "none (the input)"
            size = os.path.getsize(out) / os.path.getsize(model)
            cells = [name, " ".join([metric, *budget]), chosen, f"{size:.2f}×"]
            for runtime in ["ort", "tract"]:
                cells.append(f"{speed(runtime, model, out, val):.2f}×")
                cells.append(quality(runtime, metric, model, out, val, texts))
            cells += [f"{quality('ort', metric, model, model, val, texts)}", f"{seconds:.0f} s ({len(r['candidates'])})",
                      "yes" if same else "NO", floor]
            rows.append(cells)
            print(" | ".join(cells), flush=True)
    import onnxruntime
    lines = [
        f"# `prunq optimize` (onnxruntime {onnxruntime.__version__}, tract, 2 cores)", "",
        "Search in ONNX Runtime; speed = fp32 time / output time, batch 1, one thread, the two taking turns in one",
        "`prunq bench` run (400 runs each), measured after the search; quality measured again in each runtime.", "",
        "| model | budget | chosen | size | ORT speed | ORT quality | tract speed | tract quality | fp32 (ORT) "
        "| run (candidates) | apply same bytes | floor |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [f"| {' | '.join(r)} |" for r in rows]
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "optimize.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
