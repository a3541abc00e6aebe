"""prunq's quantizer against the peers at their best settings, on the shared models and data.

usage: python bench/quant_vs_ort.py [MODEL...]   (from the project root, after `cargo build --release`)
Peers (each skipped with a note when its package is missing; `pip install -r bench/requirements.txt`):
- ONNX Runtime static: `quant_pre_process` first, uint8 activations, per-channel int8 weights, QDQ, MinMax,
  opset raised to 13 for older exports — ONNX Runtime's recommended x86 settings; dynamic for the
  transformers (its recommendation for them);
- NNCF's ONNX backend: `nncf.quantize` with `model_type=TRANSFORMER` for the transformers;
- onnxsim 0.8.1: `simplify`, then `quantize_static` (uint8, per channel) on the same calibration data,
  and `quantize_dynamic` for the transformers.
Every output is judged in ONNX Runtime on the test split: quality, size, time to quantize, and speed as
fp32 time / model time at batch 1 on one thread, all of a model's variants taking turns in one
`prunq bench` run (the order reversed every other round).
Writes bench/results/quant_vs_ort.md and prints it.
"""
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.abspath(os.environ.get("PRUNQ_SHARED", os.path.join(ROOT, "..", "shared")))
PRUNQ = os.path.join(ROOT, "target", "release", "prunq")
sys.path.insert(0, os.path.join(ROOT, "tests", "ort"))
from ocr_eval import score  # noqa: E402
from cpu_class import cpu_class  # noqa: E402


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
    ("digits_cnn", "digits", "digits_calib.npz"),
    ("digits_resnet", "digits", "digits_calib.npz"),
    ("digits_vit", "digits", "digits_calib.npz"),
    ("ppocr_cls_v2", "cls", "ocr_cls_calib.npz"),
    ("ppocr_rec_v4", "rec", "ocr_lines_calib.npz"),
    ("minilm_l6", "minilm", "sentences_calib.npz"),
]
TRANSFORMERS = ("digits_vit", "minilm_l6")


def calibration(src, calib_path):
    """The calibration set as one-row feeds, as every peer takes it."""
    feed = feed_for(src, data(calib_path))
    n = len(next(iter(feed.values())))
    return [{k: v[i : i + 1] for k, v in feed.items()} for i in range(n)]


def at_opset_13(src, tmp):
    """Old exports (opset < 13) converted with onnx's version converter, as ONNX Runtime advises for
    per-channel QDQ."""
    m = onnx.load(src)
    version = next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
    if version >= 13:
        return src
    out = os.path.join(tmp, os.path.basename(src).replace(".onnx", ".opset13.onnx"))
    onnx.save(onnx.version_converter.convert_version(m, 13), out)
    return out


def pre_processed(src, tmp):
    """ONNX Runtime's `quant_pre_process`; where its symbolic shape inference fails on a model (an
    assertion on digits_vit), the same without that step, as its error message advises."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = os.path.join(tmp, "prepared.onnx")
    try:
        quant_pre_process(src, out)
    except Exception:
        quant_pre_process(src, out, skip_symbolic_shape=True)
    return out


def ort_static(src, out, calib, calib_path, tmp):
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_static)

    prepared = pre_processed(at_opset_13(src, tmp), tmp)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(calib)

        def get_next(self):
            return next(self.items, None)

    quantize_static(prepared, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)


def ort_dynamic(src, out, calib, calib_path, tmp):
    from onnxruntime.quantization import quantize_dynamic

    quantize_dynamic(pre_processed(src, tmp), out)


def nncf_static(src, out, calib, calib_path, tmp):
    import nncf

    kwargs = {"model_type": nncf.ModelType.TRANSFORMER} if any(t in src for t in TRANSFORMERS) else {}
    q = nncf.quantize(onnx.load(at_opset_13(src, tmp)), nncf.Dataset(calib), subset_size=len(calib), **kwargs)
    onnx.save(q, out)


def onnxsim_static(src, out, calib, calib_path, tmp):
    import onnxsim

    simplified, _ = onnxsim.simplify(onnx.load(src))
    onnx.save(onnxsim.quantize_static(simplified, calibration_data=calib, num_calibration_samples=len(calib),
                                      activation_type="uint8", per_channel=True), out)


def onnxsim_dynamic(src, out, calib, calib_path, tmp):
    import onnxsim

    simplified, _ = onnxsim.simplify(onnx.load(src))
    onnx.save(onnxsim.quantize_dynamic(simplified), out)


def prunq(mode):
    def run(src, out, calib, calib_path, tmp):
        cmd = [PRUNQ, "quantize", src, "-o", out, "--mode", mode, "-q", "--no-latency-check"]
        if mode == "static":
            # The CLI's default: keep int8 only where it measures faster (the latency check's trials).
            cmd = [c for c in cmd if c != "--no-latency-check"] + ["--calib", calib_path]
        subprocess.run(cmd, check=True, capture_output=True)
    return run


def speedups(paths, test_path):
    """fp32 time / model time for each model (the first is fp32), taking turns in one prunq bench run."""
    out = subprocess.run([PRUNQ, "-q", "bench", *paths, "--data", test_path, "--runtime", "ort", "--threads", "1",
                          "--runs", "300", "--json"], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"prunq bench failed: {out.stderr[-1000:]}")
    return [m["speedup"] for m in json.loads(out.stdout)[0]["models"]]


def main():
    chosen = [a for a in sys.argv[1:] if not a.startswith("-")]
    rows = []
    tmp = tempfile.mkdtemp()
    # ONNX Runtime's pre-processing writes its temporary files (shape inference, a large model's
    # external data) into the working directory: keep them out of the checkout.
    os.chdir(tmp)
    for name, kind, calib in MODELS:
        if chosen and name not in chosen:
            continue
        src = os.path.join(SHARED, "models", name + ".onnx")
        calib_path = os.path.join(SHARED, "data", calib)
        test = {"digits": "digits_test.npz", "cls": "ocr_cls_test.npz", "rec": "ocr_lines_test.npz"}.get(kind, "sentences_test.npz")
        test_path = os.path.join(SHARED, "data", test)
        calib_rows = calibration(src, calib)
        size0 = os.path.getsize(src)
        first = len(rows)
        timed = [src]
        rows.append([name, "fp32", quality(kind, src, src), "1.00", "-", src])
        transformer = name in TRANSFORMERS
        variants = [("ONNX Runtime static (pre-processed, u8, per channel)", ort_static)]
        if transformer:
            variants += [("ONNX Runtime dynamic (pre-processed)", ort_dynamic)]
        variants += [("NNCF" + (" (TRANSFORMER)" if transformer else ""), nncf_static),
                     ("onnxsim 0.8.1 simplify + static", onnxsim_static)]
        if transformer:
            variants += [("onnxsim 0.8.1 simplify + dynamic", onnxsim_dynamic)]
        variants += [("prunq static", prunq("static"))]
        if transformer:
            variants += [("prunq dynamic", prunq("dynamic"))]
        for label, make in variants:
            out = os.path.join(tmp, f"{name}.{len(rows)}.onnx")
            t = time.perf_counter()
            try:
                make(src, out, calib_rows, calib_path, tmp)
                secs = time.perf_counter() - t
                rows.append([name, label, quality(kind, src, out), f"{os.path.getsize(out) / size0:.2f}", f"{secs:.1f}", out])
                timed.append(out)
            except ImportError as e:
                rows.append([name, label, f"not installed ({e.name})", "-", "-", None])
            except Exception as e:  # a peer failing on a model is a result too
                err = getattr(e, "stderr", None)
                lines = err.decode(errors="replace").strip().splitlines() if err else str(e).splitlines()
                msg = (lines or [type(e).__name__])[-1 if err else 0]
                rows.append([name, label, "fails: " + msg[:80], "-", "-", None])
        by_path = dict(zip(timed, speedups(timed, test_path)))
        for row in rows[first:]:
            row[5] = by_path.get(row[5])
            print(tuple(row), flush=True)
    lines = [
        f"Measured {datetime.date.today()} on {cpu_class()} ({os.cpu_count()} cores), onnxruntime "
        f"{ort.__version__}; speed: fp32 time / model time in ONNX Runtime, batch 1, one thread, a model's "
        "variants taking turns in one run (bench/quant_vs_ort.py).",
        "",
        "| model | method | quality (in ONNX Runtime) | size vs fp32 | quantize time (s) | speed vs fp32 |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, label, q, size, secs, speed in rows:
        lines.append(f"| {name} | {label} | {q} | {size}× | {secs} | {'-' if speed is None else f'{speed:.2f}×'} |")
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "quant_vs_ort.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
