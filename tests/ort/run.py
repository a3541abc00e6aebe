"""Runs a model in ONNX Runtime on the arrays of an .npz and saves its outputs.

usage: run.py MODEL DATA.npz OUT.npz [--rows N] [--batch B] [--unoptimized]
--batch B runs B rows at a time (default: all at once); dynamic quantization sees one range per batch.
--unoptimized runs the graph as written (ORT_DISABLE_ALL): no fused kernels rounding differently.
Inputs are matched by name (a single-input model takes the single non-label array).
"""
import sys

import numpy as np
import onnxruntime as ort


def main():
    model, data, out = sys.argv[1:4]
    rows = int(sys.argv[sys.argv.index("--rows") + 1]) if "--rows" in sys.argv else None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    if "--unoptimized" in sys.argv:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    arrays = dict(np.load(data))
    inputs = sess.get_inputs()
    feed = {}
    for i in inputs:
        if i.name in arrays:
            a = arrays[i.name]
        else:
            others = [k for k in arrays if k not in ("label", "labels", "y")]
            assert len(inputs) == 1 and len(others) == 1, f"no array for input {i.name}"
            a = arrays[others[0]]
        feed[i.name] = a[:rows] if rows else a
    names = [o.name for o in sess.get_outputs()]
    n = len(next(iter(feed.values())))
    batch = int(sys.argv[sys.argv.index("--batch") + 1]) if "--batch" in sys.argv else n
    parts = [sess.run(names, {k: v[i : i + batch] for k, v in feed.items()}) for i in range(0, n, batch)]
    results = [np.concatenate([p[j] for p in parts]) for j in range(len(names))]
    np.savez(out, **dict(zip(names, results)))


if __name__ == "__main__":
    main()
