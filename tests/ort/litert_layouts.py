"""Small models for the LiteRT writer's layout rules, each with its own trap, written to DIR.

Each model takes `x` [1,C,H,W] float32 and has one float output. Run: python litert_layouts.py DIR
"""
import sys
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

rng = np.random.default_rng(7)


def const(name, shape, scale=0.3):
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def save(directory, name, nodes, inits, x_shape, out_shape, opset=17):
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    onnx.save(model, f"{directory}/{name}.onnx")


def main(d):
    # Flatten after a conv whose output is 6×6: NHWC must go back to NCHW before the Flatten.
    save(d, "flatten_after_conv", [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"]),
        helper.make_node("Gemm", ["f", "fc", "fb"], ["y"], transB=1),
    ], [const("w", [4, 3, 3, 3]), const("b", [4]), const("fc", [5, 4 * 6 * 6], 0.05), const("fb", [5])], [1, 3, 6, 6], [1, 5])
    # Asymmetric pads (not SAME): an explicit PAD; stride 2 and dilation 2 beside it.
    save(d, "asymmetric_pads", [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[0, 1, 2, 1], strides=[2, 2]),
        helper.make_node("Conv", ["c", "w2"], ["y"], pads=[2, 2, 2, 2], dilations=[2, 2]),
    ], [const("w", [4, 3, 3, 3]), const("w2", [2, 4, 3, 3])], [1, 3, 9, 8], [1, 2, 5, 4])
    # Depthwise with a channel multiplier of 2, then a grouped conv (2 groups), a Clip(0,6) fused.
    save(d, "depthwise_grouped", [
        helper.make_node("Conv", ["x", "dw", "db"], ["a"], group=4, pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["a", "lo", "hi"], ["c"]),
        helper.make_node("Conv", ["c", "gw"], ["y"], group=2),
    ], [const("dw", [8, 1, 3, 3]), const("db", [8]), numpy_helper.from_array(np.array(0, np.float32), "lo"),
        numpy_helper.from_array(np.array(6, np.float32), "hi"), const("gw", [6, 4, 1, 1])], [1, 4, 7, 7], [1, 6, 7, 7])
    # Pools: max with SAME-like pads, average excluding the padding, global average then Reshape.
    save(d, "pools", [
        helper.make_node("MaxPool", ["x"], ["m"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("AveragePool", ["m"], ["a"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["a", "s"], ["p"]),
        helper.make_node("GlobalAveragePool", ["p"], ["g"]),
        helper.make_node("Reshape", ["g", "shape"], ["y"]),
    ], [const("s", [1, 3, 1, 1]), numpy_helper.from_array(np.array([1, 3], np.int64), "shape")], [1, 3, 8, 8], [1, 3])
    # Pad (reflect, then a constant) and Resize (PyTorch's nearest ×2, bilinear half-pixel to odd sizes,
    # bilinear align-corners) on NHWC values, pads permuted with the layout.
    save(d, "pad_resize", [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Pad", ["c", "p1"], ["r"], mode="reflect"),
        helper.make_node("Resize", ["r", "", "s2"], ["n"], mode="nearest", coordinate_transformation_mode="asymmetric",
                         nearest_mode="floor"),
        helper.make_node("Pad", ["n", "p2", "half"], ["k"], mode="constant"),
        helper.make_node("Resize", ["k", "", "", "z1"], ["l"], mode="linear"),
        helper.make_node("Resize", ["l", "", "", "z2"], ["y"], mode="linear", coordinate_transformation_mode="align_corners"),
    ], [const("w", [4, 3, 3, 3]), numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "p1"),
        numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "s2"),
        numpy_helper.from_array(np.array([0, 0, 0, 2, 0, 0, 1, 0], np.int64), "p2"),
        numpy_helper.from_array(np.array(0.5, np.float32), "half"),
        numpy_helper.from_array(np.array([1, 4, 7, 9], np.int64), "z1"),
        numpy_helper.from_array(np.array([1, 4, 10, 8], np.int64), "z2")], [1, 3, 6, 5], [1, 4, 10, 8])
    # Channel-axis ops on an NHWC value: Concat of two convs, Softmax over channels, Transpose out.
    save(d, "channel_axis", [
        helper.make_node("Conv", ["x", "w1"], ["a"]),
        helper.make_node("Conv", ["x", "w2"], ["b"]),
        helper.make_node("Concat", ["a", "b"], ["c"], axis=1),
        helper.make_node("Softmax", ["c"], ["s"], axis=1),
        helper.make_node("ReduceMean", ["s", "axes"], ["r"], keepdims=1),
        helper.make_node("Transpose", ["r"], ["y"], perm=[0, 2, 3, 1]),
    ], [const("w1", [2, 3, 1, 1]), const("w2", [3, 3, 1, 1]), numpy_helper.from_array(np.array([3], np.int64), "axes")],
       [1, 3, 5, 4], [1, 5, 1, 5], opset=18)
    # HardSigmoid·x (HARD_SWISH), HardSigmoid alone, Sigmoid gate, broadcast Add of a [C,1,1] constant.
    save(d, "activations", [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("HardSigmoid", ["c"], ["h"], alpha=1.0 / 6, beta=0.5),
        helper.make_node("Mul", ["c", "h"], ["hs"]),
        helper.make_node("HardSigmoid", ["hs"], ["g"], alpha=0.2, beta=0.5),
        helper.make_node("Sigmoid", ["g"], ["sg"]),
        helper.make_node("Add", ["sg", "bias"], ["y"]),
    ], [const("w", [4, 3, 1, 1], 2.0), const("bias", [4, 1, 1])], [1, 3, 5, 5], [1, 4, 5, 5])


if __name__ == "__main__":
    main(sys.argv[1])
