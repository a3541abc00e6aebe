"""Issue 33's peer row: onnx2tf's int8 LiteRT models beside prunq's, on the seven shared models.

usage: ONNX2TF=/path/to/venv/bin/onnx2tf python bench/onnx2tf_vs_prunq.py [model …]
  (run from the test venv — onnxruntime, numpy, ai-edge-litert; after `cargo build --release`).
  onnx2tf lives in its own venv: `python3.11 -m venv o2t && o2t/bin/pip install "onnx2tf==1.29.*"
  "tensorflow==2.19.*" "tf_keras==2.19.*" onnx onnxruntime onnx_graphsurgeon sng4onnx psutil
  ai-edge-litert onnxsim onnxslim` (1.29 is what Python 3.11 gets; it simplifies with onnxsim first).

Both tools get the same calibration rows (every row of the model's *_calib.npz) and write a
float-interface int8 model: onnx2tf `-oiqt -cind` → `*_integer_quant.tflite` (its best int8 form
with float inputs and outputs; onnx2tf turns image inputs NHWC, so those rows are transposed for
it), prunq `quantize --mode static --calib … -o x.tflite` (its defaults). Both run in the same
LiteRT (this venv's ai_edge_litert Interpreter, 1 thread, batch 1) on the test split; quality is
judged as prunq's tests judge it (accuracy, top-1 agreement with ONNX Runtime fp32, exact CTC lines,
cosine with fp32) and the speed is each int8 model against its own tool's float32 `.tflite`,
timed taking turns. A failed conversion is a row saying so. Prints a Markdown table.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort
import ai_edge_litert
from ai_edge_litert.interpreter import Interpreter

from cpu_class import cpu_class

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("PRUNQ_SHARED", os.path.join(ROOT, "..", "shared"))
PRUNQ = os.environ.get("PRUNQ", os.path.join(ROOT, "target", "release", "prunq"))
ONNX2TF = os.environ.get("ONNX2TF", "onnx2tf")
# prunq checks and times its .tflite in the LiteRT this script measures with.
os.environ.setdefault("VIRTUAL_ENV", sys.prefix)  # prunq's ONNX Runtime: this venv's, as a user's
os.environ.setdefault("LITERT_LIB", os.path.join(os.path.dirname(ai_edge_litert.__file__), "libLiteRt.so"))

# model: (calibration, test, the quality judged, fixed input size or None)
MODELS = {
    "digits_mlp": ("digits_calib", "digits_test", "accuracy", None),
    "digits_cnn": ("digits_calib", "digits_test", "accuracy", None),
    "digits_resnet": ("digits_calib", "digits_test", "accuracy", None),
    "digits_vit": ("digits_calib", "digits_test", "accuracy", None),
    "ppocr_cls_v2": ("ocr_cls_calib", "ocr_cls_test", "agreement", [1, 3, 48, 192]),
    "ppocr_rec_v4": ("ocr_lines_calib", "ocr_lines_test", "lines", [1, 3, 48, 320]),
    "minilm_l6": ("sentences_calib", "sentences_test", "cosine", [1, 64]),
}


def arrays(name):
    return dict(np.load(os.path.join(SHARED, "data", name + ".npz")))


def interpreter(path):
    it = Interpreter(model_path=path, num_threads=1)
    it.allocate_tensors()
    return it


def feed(it, row):
    """Sets the interpreter's inputs from one row (ONNX names and NCHW), transposing where the
    model's input is NHWC; returns a function that runs it and reads its first output."""
    details = it.get_input_details()
    for d in details:
        name = d["name"].split(":")[0]
        key = next((k for k in row if name == k or name.endswith(k) or k in name), None)
        if key is None and len(details) == 1:
            key = next(iter(row))
        x = row[key]
        if x.ndim == 4 and list(x.shape) != list(d["shape"]) and list(x.transpose(0, 2, 3, 1).shape) == list(d["shape"]):
            x = x.transpose(0, 2, 3, 1)
        it.set_tensor(d["index"], x.astype(d["dtype"]))

    def run():
        it.invoke()
        return it.get_tensor(it.get_output_details()[0]["index"])

    return run


def rows(test, n=None):
    k = len(next(iter(test.values())))
    for i in range(k if n is None else min(n, k)):
        yield {key: v[i : i + 1] for key, v in test.items() if key != "label"}


def ctc(out, alphabet):
    best = out[0].argmax(-1)
    text, prev = [], 0
    for k in best:
        if k != 0 and k != prev:
            text.append(alphabet[k - 1] if k - 1 < len(alphabet) else " ")
        prev = k
    return "".join(text)


def quality(model, path, test, kind, reference):
    it = interpreter(path)
    outs = [feed(it, r)().copy() for r in rows(test)]
    if kind == "accuracy":
        return float(np.mean([o.argmax() == l for o, l in zip(outs, test["label"])]))
    if kind == "agreement":
        return float(np.mean([o.argmax() == r.argmax() for o, r in zip(outs, reference)]))
    if kind == "lines":
        import onnx

        meta = {p.key: p.value for p in onnx.load(os.path.join(SHARED, "models", model + ".onnx")).metadata_props}
        alphabet = meta["character"].split("\n")
        with open(os.path.join(SHARED, "data", "ocr_lines_test.txt"), encoding="utf-8") as f:
            texts = f.read().splitlines()
        return float(np.mean([ctc(o, alphabet) == t for o, t in zip(outs, texts)]))
    cos = [float((o.ravel() @ r.ravel()) / (np.linalg.norm(o) * np.linalg.norm(r) + 1e-12)) for o, r in zip(outs, reference)]
    return float(np.mean(cos))


def speed(a, b, test, runs=200):
    """Median time ratio a/b, the two taking turns on the first test row."""
    row = next(rows(test))
    ra, rb = feed(interpreter(a), row), feed(interpreter(b), row)
    ta, tb = [], []
    for i in range(runs + 20):
        for r, t in ((ra, ta), (rb, tb)) if i % 2 == 0 else ((rb, tb), (ra, ta)):
            s = time.perf_counter()
            r()
            if i >= 20:
                t.append(time.perf_counter() - s)
    return float(np.median(ta) / np.median(tb))


def onnx2tf(model, calib, size, work):
    os.makedirs(work, exist_ok=True)
    # onnx2tf simplifies its input file in place (onnxsim overwrites it, read-only bits or not):
    # it gets a copy, never ../shared's model.
    src = os.path.join(work, model + ".onnx")
    shutil.copyfile(os.path.join(SHARED, "models", model + ".onnx"), src)
    args = [ONNX2TF, "-i", src, "-o", work, "-oiqt", "-b", "1"]
    for name, x in calib.items():
        if name == "label":
            continue
        if x.ndim == 4:
            x = x.transpose(0, 2, 3, 1)
        npy = os.path.join(work, name + ".calib.npy")
        np.save(npy, x)
        zero = "[" * x.ndim + "0.0" + "]" * x.ndim
        one = "[" * x.ndim + "1.0" + "]" * x.ndim
        args += ["-cind", name, npy, zero, one]
        if size is not None:
            args += ["-ois", f"{name}:{','.join(map(str, size))}"]
    # onnx2tf runs its venv's onnxsim (the simplification its README installs it with).
    env = dict(os.environ, PATH=os.path.dirname(os.path.abspath(ONNX2TF)) + os.pathsep + os.environ["PATH"])
    # For 3-channel image inputs onnx2tf checks its conversion on 20 sample images it downloads from
    # GitHub into the working directory unless they are there; offline, seeded noise stands in (its
    # int8 calibration is our -cind rows either way).
    sample = os.path.join(work, "calibration_image_sample_data_20x128x128x3_float32.npy")
    np.save(sample, np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32))
    found = lambda suffix: next((os.path.join(work, f) for f in os.listdir(work) if f == model + suffix), None)
    # Its best try: as documented, then with its automatic parameter-replacement JSON on error.
    for extra in ([], ["--auto_generate_json_on_error"]):
        done = subprocess.run(args + extra, capture_output=True, text=True, timeout=3600, env=env, cwd=work)
        int8, fp32 = found("_integer_quant.tflite"), found("_float32.tflite")
        if done.returncode == 0 and int8 is not None:
            break
    if done.returncode != 0 or int8 is None:
        lines = [l.strip() for l in (done.stdout + done.stderr).splitlines()]
        said = [l for l in lines if "Error" in l and not l.startswith(("File", "raise", "Traceback"))]
        op = [l for l in lines if "onnx_op_name:" in l]
        return None, None, ((op[-1].split("onnx_op_name:")[-1].strip() + ": ") if op else "") + (said or lines)[-1][:160]
    return int8, fp32, None


def prunq(model, calib_name, test_name, work):
    src = os.path.join(SHARED, "models", model + ".onnx")
    data = os.path.join(SHARED, "data", calib_name + ".npz")
    int8, fp32 = os.path.join(work, model + ".int8.tflite"), os.path.join(work, model + ".tflite")
    subprocess.run([PRUNQ, "-q", "convert", src, "-o", fp32, "--calib", data], check=True)
    subprocess.run([PRUNQ, "-q", "quantize", src, "-o", int8, "--mode", "static", "--calib", data], check=True)
    return int8, fp32


def main():
    chosen = sys.argv[1:] or list(MODELS)
    from importlib.metadata import version

    cpu = cpu_class()
    print(f"CPU: {cpu}; LiteRT {version('ai-edge-litert')} Interpreter, 1 thread, batch 1\n")
    print("| model | metric | ONNX Runtime fp32 | onnx2tf int8 | prunq int8 | onnx2tf speed vs its fp32 | prunq speed vs its fp32 |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for model in chosen:
        calib_name, test_name, kind, size = MODELS[model]
        calib, test = arrays(calib_name), arrays(test_name)
        sess = ort.InferenceSession(os.path.join(SHARED, "models", model + ".onnx"), providers=["CPUExecutionProvider"])
        reference = [sess.run(None, r)[0] for r in rows(test)]
        base = 1.0 if kind in ("agreement", "cosine") else None
        with tempfile.TemporaryDirectory() as work:
            o_int8, o_fp32, failed = onnx2tf(model, calib, size, os.path.join(work, "o2t"))
            p_int8, p_fp32 = prunq(model, calib_name, test_name, work)
            p_q = quality(model, p_int8, test, kind, reference)
            if base is None:  # the fp32 model's own accuracy or lines, in LiteRT (same as ORT's)
                base = quality(model, p_fp32, test, kind, reference)
            p_s = 1.0 / speed(p_int8, p_fp32, test)
            if failed:
                o_q, o_s = f"failed: {failed}", "—"
            else:
                try:
                    o_q = f"{quality(model, o_int8, test, kind, reference):.4f}"
                    o_s = f"{1.0 / speed(o_int8, o_fp32, test):.2f}×"
                except Exception as e:  # noqa: BLE001 — a model that does not run is a result
                    o_q, o_s = f"does not run: {str(e).splitlines()[0][:120]}", "—"
        print(f"| {model} | {kind} | {base:.4f} | {o_q} | {p_q:.4f} | {o_s} | {p_s:.2f}× |", flush=True)


if __name__ == "__main__":
    main()
