"""Writes a small CNN with dead channels, the same CNN with those channels cut
out by hand, and input data: the oracle for structured pruning's slicing.

usage: dead_channels.py OUT_DIR   writes full.onnx, expected.onnx, data.npz

The model covers the channel-coupling patterns a structured pruner must follow:
BatchNorm, a Concat along channels, a depthwise conv, a squeeze-excite gate
(GlobalAveragePool -> Conv -> Relu -> Conv -> Sigmoid -> Mul), a residual Add,
and Flatten -> Gemm (each channel is 8x8 features of the Gemm). A dead channel's
filter and bias are zero (BatchNorm passes 0 through), so removing exactly the
dead channels must leave the outputs unchanged.
"""
import sys

import numpy as np
from hand_cut import image_model, write
from onnx import helper

DEAD = {
    "a": [1, 5, 9, 13],  # conv a: 16 channels, then BatchNorm
    "b": [2, 6],  # conv b: 8 channels; concat(a, b) -> depthwise
    "c": [4, 11],  # pointwise c: 16 channels, shared by the SE gate and the residual conv
    "se": [3],  # SE squeeze: 8 channels
}
SIZES = {"a": 16, "b": 8, "c": 16, "se": 8}


def weights(seed=0):
    r = np.random.default_rng(seed)
    f = lambda *s: r.standard_normal(s).astype(np.float32) * 0.5
    w = {
        "a_w": f(16, 3, 3, 3), "a_b": f(16),
        "bn_s": r.uniform(0.5, 1.5, 16).astype(np.float32), "bn_b": f(16),
        "bn_m": f(16), "bn_v": r.uniform(0.5, 1.5, 16).astype(np.float32),
        "b_w": f(8, 3, 1, 1), "b_b": f(8),
        "dw_w": f(24, 1, 3, 3), "dw_b": f(24),
        "c_w": f(16, 24, 1, 1), "c_b": f(16),
        # A positive bias keeps the live squeeze channels from dying in the Relu.
        "se1_w": f(8, 16, 1, 1) * 0.1, "se1_b": r.uniform(1.0, 2.0, 8).astype(np.float32),
        "se2_w": f(16, 8, 1, 1), "se2_b": f(16),
        "p_w": f(16, 16, 3, 3), "p_b": f(16),
        "fc_w": f(10, 16 * 64), "fc_b": f(10),
    }
    # Dead channels: zero filter and bias; BatchNorm maps 0 to 0.
    for k in DEAD["a"]:
        w["a_w"][k] = 0; w["a_b"][k] = 0; w["bn_b"][k] = 0; w["bn_m"][k] = 0
    for k in DEAD["b"]:
        w["b_w"][k] = 0; w["b_b"][k] = 0
    for k in DEAD["a"] + [16 + j for j in DEAD["b"]]:
        w["dw_b"][k] = 0
    for k in DEAD["c"]:
        w["c_w"][k] = 0; w["c_b"][k] = 0; w["p_w"][k] = 0; w["p_b"][k] = 0
    for k in DEAD["se"]:
        w["se1_w"][k] = 0; w["se1_b"][k] = 0
    return w


def cut(w):
    """The same weights with the dead channels removed from every tensor they touch."""
    keep = {g: [i for i in range(n) if i not in DEAD[g]] for g, n in SIZES.items()}
    cat = keep["a"] + [16 + j for j in keep["b"]]
    fc_cols = [c * 64 + k for c in keep["c"] for k in range(64)]
    return {
        "a_w": w["a_w"][keep["a"]], "a_b": w["a_b"][keep["a"]],
        "bn_s": w["bn_s"][keep["a"]], "bn_b": w["bn_b"][keep["a"]],
        "bn_m": w["bn_m"][keep["a"]], "bn_v": w["bn_v"][keep["a"]],
        "b_w": w["b_w"][keep["b"]], "b_b": w["b_b"][keep["b"]],
        "dw_w": w["dw_w"][cat], "dw_b": w["dw_b"][cat],
        "c_w": w["c_w"][keep["c"]][:, cat], "c_b": w["c_b"][keep["c"]],
        "se1_w": w["se1_w"][keep["se"]][:, keep["c"]], "se1_b": w["se1_b"][keep["se"]],
        "se2_w": w["se2_w"][keep["c"]][:, keep["se"]], "se2_b": w["se2_b"][keep["c"]],
        "p_w": w["p_w"][keep["c"]][:, keep["c"]], "p_b": w["p_b"][keep["c"]],
        "fc_w": w["fc_w"][:, fc_cols], "fc_b": w["fc_b"],
    }


def model(w):
    depth = w["dw_w"].shape[0]
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "a_w", "a_b"], ["a0"], pads=[1, 1, 1, 1]),
        n("BatchNormalization", ["a0", "bn_s", "bn_b", "bn_m", "bn_v"], ["a1"]),
        n("Relu", ["a1"], ["a"]),
        n("Conv", ["x", "b_w", "b_b"], ["b0"]),
        n("Relu", ["b0"], ["b"]),
        n("Concat", ["a", "b"], ["cat"], axis=1),
        n("Conv", ["cat", "dw_w", "dw_b"], ["d0"], group=depth, pads=[1, 1, 1, 1]),
        n("Relu", ["d0"], ["d"]),
        n("Conv", ["d", "c_w", "c_b"], ["h0"]),
        n("Relu", ["h0"], ["h"]),
        n("GlobalAveragePool", ["h"], ["g0"]),
        n("Conv", ["g0", "se1_w", "se1_b"], ["g1"]),
        n("Relu", ["g1"], ["g2"]),
        n("Conv", ["g2", "se2_w", "se2_b"], ["g3"]),
        n("Sigmoid", ["g3"], ["gate"]),
        n("Mul", ["h", "gate"], ["e"]),
        n("Conv", ["e", "p_w", "p_b"], ["q"], pads=[1, 1, 1, 1]),
        n("Add", ["q", "e"], ["res"]),
        n("Relu", ["res"], ["s"]),
        n("Flatten", ["s"], ["flat"], axis=1),
        n("Gemm", ["flat", "fc_w", "fc_b"], ["out"], transB=1),
    ]
    return image_model("dead_channels", nodes, w)


def main():
    w = weights()
    write(sys.argv[1], model(w), model(cut(w)), rows=64, seed=1)


if __name__ == "__main__":
    main()
