"""Writes a CNN that splits and slices its channels, the same CNN with its dead
channels cut out by hand, and input data (the oracle for channel-axis Split
and Slice in structured pruning).

usage: split_channels.py OUT_DIR   writes full.onnx, expected.onnx, data.npz

conv s (8 channels, 1 and 6 dead) -> Relu -> Split [4, 4] -> p, q;
p2 = Slice(p, 1:4); Concat(p, q, p2) -> GlobalAveragePool -> Flatten -> Gemm.
Cut by hand: s keeps 0,2,3,4,5,7; the split becomes [3, 3], the slice 1:3.
"""
import sys

import numpy as np
from hand_cut import image_model, write
from onnx import helper

KEEP = [0, 2, 3, 4, 5, 7]


def weights():
    r = np.random.default_rng(2)
    w = {
        "s_w": r.standard_normal((8, 3, 3, 3)).astype(np.float32),
        # A positive bias keeps the live channels from dying in the Relu.
        "s_b": r.uniform(1.0, 2.0, 8).astype(np.float32),
        "fc_w": r.standard_normal((10, 11)).astype(np.float32),
        "fc_b": r.standard_normal(10).astype(np.float32),
    }
    for k in (1, 6):
        w["s_w"][k] = 0
        w["s_b"][k] = 0
    return w


def model(w, split, bounds):
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "s_w", "s_b"], ["s0"], pads=[1, 1, 1, 1]),
        n("Relu", ["s0"], ["s"]),
        n("Split", ["s", "sizes"], ["p", "q"], axis=1),
        n("Slice", ["p", "starts", "ends", "axes"], ["p2"]),
        n("Concat", ["p", "q", "p2"], ["cat"], axis=1),
        n("GlobalAveragePool", ["cat"], ["g"]),
        n("Flatten", ["g"], ["flat"]),
        n("Gemm", ["flat", "fc_w", "fc_b"], ["out"], transB=1),
    ]
    consts = {
        "sizes": np.array(split, np.int64),
        "starts": np.array([bounds[0]], np.int64),
        "ends": np.array([bounds[1]], np.int64),
        "axes": np.array([1], np.int64),
    }
    return image_model("split_channels", nodes, {**w, **consts})


def main():
    w = weights()
    # Concat positions: p = s0..s3, q = s4..s7, p2 = s1..s3.
    cat = [0, 1, 2, 3, 4, 5, 6, 7, 1, 2, 3]
    cols = [i for i, c in enumerate(cat) if c in KEEP]
    cut = {"s_w": w["s_w"][KEEP], "s_b": w["s_b"][KEEP], "fc_w": w["fc_w"][:, cols], "fc_b": w["fc_b"]}
    write(sys.argv[1], model(w, [4, 4], (1, 4)), model(cut, [3, 3], (1, 3)), rows=32, seed=3)


if __name__ == "__main__":
    main()
