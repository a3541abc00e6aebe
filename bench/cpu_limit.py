"""The CPU's own int8 limit at the shared models' layer sizes (issue 34): one layer at a time in ONNX
Runtime, fp32 against the QDQ int8 form ONNX Runtime fuses into its integer kernels (uint8 activations
per tensor, int8 weights per output channel, the output quantized too), batch 1, one thread, the two
models taking turns. A model whose int8 output runs at a share of its layers' ratio loses the rest
outside these kernels (Q/DQ boundaries, float ops, requantization).

usage: python bench/cpu_limit.py [--rounds N]   (test venv: onnx, onnxruntime, numpy)
Prints a Markdown table and the CPU class.
"""
import argparse
import os
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(__file__))
from cpu_class import cpu_class  # noqa: E402

# (model, layer, kind, input shape, weight shape, group)
LAYERS = [
    ("minilm_l6", "MatMul 64×384 · 384×1536 (FFN in)", "matmul", [64, 384], [384, 1536], 1),
    ("minilm_l6", "MatMul 64×1536 · 1536×384 (FFN out)", "matmul", [64, 1536], [1536, 384], 1),
    ("minilm_l6", "MatMul 64×384 · 384×384 (Q, K, V, out)", "matmul", [64, 384], [384, 384], 1),
    ("digits_cnn", "Conv 3×3 32→64 at 16×16", "conv", [1, 32, 16, 16], [64, 32, 3, 3], 1),
    ("digits_cnn", "Conv 3×3 64→128 at 8×8", "conv", [1, 64, 8, 8], [128, 64, 3, 3], 1),
    ("digits_cnn", "Conv 3×3 128→128 at 4×4", "conv", [1, 128, 4, 4], [128, 128, 3, 3], 1),
    ("digits_resnet", "Conv 1×1 32→64 at 16×16", "conv", [1, 32, 16, 16], [64, 32, 1, 1], 1),
    ("digits_resnet", "Conv 3×3 depthwise 64 at 16×16", "conv", [1, 64, 16, 16], [64, 1, 3, 3], 64),
    ("digits_resnet", "Conv 1×1 128→64 at 8×8", "conv", [1, 128, 8, 8], [64, 128, 1, 1], 1),
    ("ppocr_rec_v4", "Conv 1×1 96→384 at 24×80 (issue's size)", "conv", [1, 96, 24, 80], [384, 96, 1, 1], 1),
    ("ppocr_rec_v4", "Conv 3×3 depthwise 96 at 24×80", "conv", [1, 96, 24, 80], [96, 1, 3, 3], 96),
    ("issue 34", "Conv 3×3 64→64 at 16×16", "conv", [1, 64, 16, 16], [64, 64, 3, 3], 1),
    ("issue 34", "Conv 3×3 256→256 at 28×28", "conv", [1, 256, 28, 28], [256, 256, 3, 3], 1),
]


def layer_models(kind, x_shape, w_shape, group, rng):
    """The fp32 layer and its QDQ int8 form, as ModelProtos."""
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = (rng.standard_normal(w_shape) / np.sqrt(np.prod(w_shape[1:]) if kind == "conv" else w_shape[0])).astype(
        np.float32
    )
    attrs = {}
    if kind == "conv":
        k = w_shape[2]
        attrs = {"pads": [k // 2] * 4, "group": group}
    op = "Conv" if kind == "conv" else "MatMul"
    fp32_out = _run(_graph(op, attrs, x_shape, w, None), x)
    # Ranges from this input: what calibration would give.
    x_scale, x_zp = _uint8_params(x)
    y_scale, y_zp = _uint8_params(fp32_out)
    axis = 0 if kind == "conv" else 1
    reduce = tuple(i for i in range(w.ndim) if i != axis)
    w_scale = (np.abs(w).max(axis=reduce) / 127.0).astype(np.float32)
    shape = [-1 if i == axis else 1 for i in range(w.ndim)]
    wq = np.clip(np.round(w / w_scale.reshape(shape)), -127, 127).astype(np.int8)
    qdq = dict(x=(x_scale, x_zp), y=(y_scale, y_zp), w=(wq, w_scale, axis))
    return _graph(op, attrs, x_shape, w, None), _graph(op, attrs, x_shape, w, qdq), x


def _uint8_params(a):
    lo, hi = min(float(a.min()), 0.0), max(float(a.max()), 0.0)
    scale = (hi - lo) / 255.0 or 1.0
    return np.float32(scale), np.uint8(round(-lo / scale))


def _graph(op, attrs, x_shape, w, qdq):
    nodes, inits = [], []
    x_in, w_in, y_out = "x", "w", "y"
    if qdq is None:
        inits.append(numpy_helper.from_array(w, "w"))
        nodes.append(helper.make_node(op, ["x", "w"], ["y"], **attrs))
    else:
        (xs, xz), (ys, yz), (wq, ws, axis) = qdq["x"], qdq["y"], qdq["w"]
        inits += [
            numpy_helper.from_array(np.array(xs, np.float32), "xs"),
            numpy_helper.from_array(np.array(xz, np.uint8), "xz"),
            numpy_helper.from_array(np.array(ys, np.float32), "ys"),
            numpy_helper.from_array(np.array(yz, np.uint8), "yz"),
            numpy_helper.from_array(wq, "wq"),
            numpy_helper.from_array(ws, "ws"),
            numpy_helper.from_array(np.zeros(ws.shape, np.int8), "wz"),
        ]
        nodes += [
            helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
            helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
            helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=axis),
            helper.make_node(op, ["xd", "wd"], ["yf"], **attrs),
            helper.make_node("QuantizeLinear", ["yf", "ys", "yz"], ["yq"]),
            helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"]),
        ]
    graph = helper.make_graph(
        nodes,
        "layer",
        [helper.make_tensor_value_info(x_in, TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info(y_out, TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _session(model):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _run(model, x):
    return _session(model).run(None, {"x": x})[0]


def ratio(fp32, int8, x, rounds, calls):
    """fp32 time / int8 time: the median of per-round ratios, the models taking turns."""
    sessions = [_session(fp32), _session(int8)]
    for s in sessions:
        for _ in range(20):
            s.run(None, {"x": x})
    ratios = []
    for r in range(rounds):
        t = [0.0, 0.0]
        order = (0, 1) if r % 2 == 0 else (1, 0)
        for i in order:
            start = time.perf_counter()
            for _ in range(calls):
                sessions[i].run(None, {"x": x})
            t[i] = time.perf_counter() - start
        ratios.append(t[0] / t[1])
    return float(np.median(ratios)), t[0] / calls * 1e3


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=60)
    a = p.parse_args()
    rng = np.random.default_rng(0)
    print(f"CPU: {cpu_class()}; onnxruntime {ort.__version__}; batch 1, one thread, fp32 and int8 taking turns\n")
    print("| model | layer | fp32 ms | int8 / fp32 speed |")
    print("| --- | --- | --- | --- |")
    for model, name, kind, x_shape, w_shape, group in LAYERS:
        fp32, int8, x = layer_models(kind, x_shape, w_shape, group, rng)
        # Calls per round: about 5 ms of fp32 work.
        probe = _session(fp32)
        start = time.perf_counter()
        for _ in range(10):
            probe.run(None, {"x": x})
        calls = max(1, int(0.005 / ((time.perf_counter() - start) / 10)))
        r, ms = ratio(fp32, int8, x, a.rounds, calls)
        print(f"| {model} | {name} | {ms:.3f} | {r:.2f}× |")


if __name__ == "__main__":
    main()
