"""Median ONNX Runtime latency of models at batch 1 on one thread.

usage: ort_latency.py DATA.npz MODEL [MODEL ...]
Prints one line per model: path, median ms, and speed-up over the first model.
Inputs come from the first row of DATA.npz (matched by name, or the one array).
"""
import sys
import time

import numpy as np
import onnxruntime as ort


def feed_for(sess, arrays):
    feed = {}
    for i in sess.get_inputs():
        if i.name in arrays:
            a = arrays[i.name]
        else:
            others = [k for k in arrays if k not in ("label", "labels", "y")]
            a = arrays[others[0]]
        feed[i.name] = a[:1]
    return feed


def session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def medians_ms(paths, arrays, rounds=40, runs=25, warmup=30):
    """Models take turns, `runs` calls each per round, so a noisy moment hits all alike."""
    sessions = [session(p) for p in paths]
    feeds = [feed_for(s, arrays) for s in sessions]
    for s, f in zip(sessions, feeds):
        for _ in range(warmup):
            s.run(None, f)
    times = [[] for _ in paths]
    for _ in range(rounds):
        for k, (s, f) in enumerate(zip(sessions, feeds)):
            for _ in range(runs):
                t = time.perf_counter()
                s.run(None, f)
                times[k].append(time.perf_counter() - t)
    return [float(np.median(t)) * 1000.0 for t in times]


def main():
    data, models = sys.argv[1], sys.argv[2:]
    arrays = dict(np.load(data))
    ms = medians_ms(models, arrays)
    for m, t in zip(models, ms):
        print(f"{m}\t{t:.3f} ms\t{ms[0] / t:.2f}x")


if __name__ == "__main__":
    main()
