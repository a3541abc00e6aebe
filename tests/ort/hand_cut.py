"""Shared by the hand-cut oracle scripts: a small image model and the files they write."""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def image_model(name, nodes, initializers):
    """A checked opset-13 model from x [N, 3, 8, 8] to out [N, 10]; initializers: name -> array."""
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(v, k) for k, v in initializers.items()],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def write(out, full, expected, rows, seed):
    """full.onnx, expected.onnx (the same model cut by hand) and data.npz with `rows` random images."""
    onnx.save(full, os.path.join(out, "full.onnx"))
    onnx.save(expected, os.path.join(out, "expected.onnx"))
    x = np.random.default_rng(seed).standard_normal((rows, 3, 8, 8)).astype(np.float32)
    np.savez(os.path.join(out, "data.npz"), x=x)
