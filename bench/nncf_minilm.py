"""Issue 15's peer rows re-measured: NNCF's post-training presets on minilm_l6, scored like prunq's.

usage: python bench/nncf_minilm.py   (a venv with nncf, onnx, onnxruntime, numpy — `pip install -r
bench/requirements.txt`; after `cargo build --release`)

NNCF on the ONNX backend with every calibration sentence (sentences_calib), at its best settings for a
transformer: `nncf.quantize(model_type=TRANSFORMER)`; `nncf.compress_weights` int8 (its default,
asymmetric); int4 symmetric in groups of 32 with AWQ and scale estimation on the calibration data (the
issue's run; its asymmetric int4 writes MatMulNBits zero points ONNX Runtime 1.32 refuses to load). Each
output is judged by `prunq --runtime ort compare` against fp32 on sentences_test (mean
cosine, nearest-neighbour agreement), the same command that scores prunq's rows; size as written.
Prints a Markdown table.
"""
import json
import os
import subprocess
import tempfile
import time

import numpy as np
import onnx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("PRUNQ_SHARED", os.path.join(ROOT, "..", "shared"))
PRUNQ = os.path.join(ROOT, "target", "release", "prunq")
MODEL = os.path.join(SHARED, "models", "minilm_l6.onnx")
CALIB = os.path.join(SHARED, "data", "sentences_calib.npz")
TEST = os.path.join(SHARED, "data", "sentences_test.npz")


def calibration():
    """One-sentence feeds, as NNCF takes them."""
    import onnxruntime as ort

    names = [i.name for i in ort.InferenceSession(MODEL, providers=["CPUExecutionProvider"]).get_inputs()]
    arrays = np.load(CALIB)
    n = len(arrays[names[0]])
    return [{k: arrays[k][i : i + 1] for k in names} for i in range(n)]


def scored(out):
    done = subprocess.run([PRUNQ, "-q", "--runtime", "ort", "compare", MODEL, out, "--data", TEST, "--json"],
                          capture_output=True, text=True, check=True)
    r = json.loads(done.stdout)["outputs"][0]
    return r["cosine_mean"], r["nn_agreement"]


def main():
    import nncf
    from nncf import CompressWeightsMode

    calib = calibration()
    runs = [
        ("NNCF `quantize(model_type=TRANSFORMER)`",
         lambda m: nncf.quantize(m, nncf.Dataset(calib), subset_size=len(calib), model_type=nncf.ModelType.TRANSFORMER)),
        ("NNCF `compress_weights` int8", lambda m: nncf.compress_weights(m)),
        ("NNCF `compress_weights` int4 group 32 + AWQ + scale estimation",
         lambda m: nncf.compress_weights(m, mode=CompressWeightsMode.INT4_SYM, ratio=1.0, group_size=32,
                                         dataset=nncf.Dataset(calib), subset_size=len(calib), awq=True,
                                         scale_estimation=True)),
    ]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, (label, run) in enumerate(runs):
            out = os.path.join(tmp, f"nncf{k}.onnx")
            started = time.time()
            onnx.save(run(onnx.load(MODEL)), out)
            seconds = time.time() - started
            cosine, nn = scored(out)
            size = os.path.getsize(out) / os.path.getsize(MODEL)
            rows.append(f"| {label} | {size:.3f}× | {cosine:.4f} | {100 * nn:.1f} % | {seconds:.0f} s |")
            print(rows[-1], flush=True)
    print(f"\nNNCF {nncf.__version__}\n\n| minilm_l6 | size | cosine | NN agreement | time |\n| --- | --- | --- | --- | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
