"""NNCF's accuracy control beside `prunq optimize` on ppocr_cls_v2 (the issue's comparison).

usage: python bench/nncf_accuracy_control.py   (a venv with nncf, onnx, onnxruntime, numpy; after
`cargo build --release`; `pip install -r bench/requirements.txt`)

NNCF: `nncf.quantize_with_accuracy_control` on the ONNX backend, calibrated on ocr_cls_calib (every
sample), validated on ocr_cls_test with the metric `prunq optimize --metric agreement` uses (top-1
agreement with fp32, in ONNX Runtime), `max_drop=0.01` absolute — once on the model as exported and once
converted to opset 13 (ONNX Runtime's advice for old exports). prunq: `optimize --metric agreement
--max-drop 1` with the same data. Each output is then judged the same way: agreement and size, and
speed as fp32 time / output time in one `prunq bench` run in ONNX Runtime (batch 1, one thread, taking
turns). Prints a Markdown table.
"""
import json
import os
import subprocess
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("PRUNQ_SHARED", os.path.join(ROOT, "..", "shared"))
PRUNQ = os.path.join(ROOT, "target", "release", "prunq")
MODEL = os.path.join(SHARED, "models", "ppocr_cls_v2.onnx")
CALIB = os.path.join(SHARED, "data", "ocr_cls_calib.npz")
TEST = os.path.join(SHARED, "data", "ocr_cls_test.npz")


def predictions(model_bytes, x):
    s = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    return np.concatenate([s.run(None, {name: x[i:i + 32]})[0].argmax(-1) for i in range(0, len(x), 32)])


def main():
    import nncf

    x_calib = next(iter(np.load(CALIB).values()))
    x_test = next(iter(np.load(TEST).values()))
    reference = predictions(open(MODEL, "rb").read(), x_test)
    name = ort.InferenceSession(MODEL, providers=["CPUExecutionProvider"]).get_inputs()[0].name

    # Validation items carry their index: NNCF's ranker validates on subsets.
    def validate(model, items):
        items = list(items)
        got = predictions(model.SerializeToString(), np.concatenate([x for _, x in items]))
        return float((got == reference[[i for i, _ in items]]).mean())

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        original = onnx.load(MODEL)
        variants = [("as exported", original), ("opset 13", onnx.version_converter.convert_version(original, 13))]
        for label, model in variants:
            started = time.time()
            q = nncf.quantize_with_accuracy_control(
                model,
                nncf.Dataset([{name: x_calib[i:i + 1]} for i in range(len(x_calib))]),
                nncf.Dataset([(i, x_test[i:i + 1]) for i in range(len(x_test))], lambda item: {name: item[1]}),
                validation_fn=validate,
                max_drop=0.01,
                drop_type=nncf.DropType.ABSOLUTE,
                subset_size=len(x_calib),
            )
            seconds = time.time() - started
            out = os.path.join(tmp, f"nncf_{len(rows)}.onnx")
            onnx.save(q, out)
            rows.append((f"NNCF accuracy control ({label})", out, seconds))
        out = os.path.join(tmp, "prunq.onnx")
        started = time.time()
        subprocess.run([PRUNQ, "-q", "--runtime", "ort", "optimize", MODEL, "-o", out, "--calib", CALIB, "--val", TEST,
                        "--metric", "agreement", "--max-drop", "1"], check=True, capture_output=True)
        rows.append(("prunq optimize", out, time.time() - started))
        bench = json.loads(subprocess.run([PRUNQ, "-q", "--runtime", "ort", "bench", MODEL, *[r[1] for r in rows],
                                           "--data", TEST, "--runs", "400", "--json"],
                                          check=True, capture_output=True, text=True).stdout)[0]["models"]
        lines = ["| tool | agreement | size | speed-up (ORT) | time to run |", "| --- | --- | --- | --- | --- |"]
        for (label, path, seconds), timed in zip(rows, bench[1:]):
            agree = (predictions(open(path, "rb").read(), x_test) == reference).mean()
            size = os.path.getsize(path) / os.path.getsize(MODEL)
            lines.append(f"| {label} | {100 * agree:.1f} % | {size:.2f}× | {timed['speedup']:.2f}× | {seconds:.0f} s |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
