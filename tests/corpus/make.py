"""Builds the corpus of small models in the styles real exports use and prunq once failed on
(issue 13), each with an .npz of inputs: `make.py OUTDIR`. Nothing is downloaded; weights are
seeded random, so the files are the same on every run.

  detector       symbolic dims everywhere (value_info too), shape-derived Reshape, a head that
                 concatenates box coordinates (hundreds of pixels) with class scores (0-1)
  streaming_rnn  batch on axis 1 of `state`, axis 0 of `input`, an unbatched scalar `sr`
  fixed_batch    batch fixed at 1 ([1, 16, 96]), a constant Reshape that needs it
  if_head        classifier weights inside both branches of an If
  if_only        every weight inside the branches of an If chosen by the sample rate `sr` (an
                 int64 scalar), a state carried (Silero VAD's style)
  scan_rnn       recurrent weights inside a Scan body
  fp16_hazards   a float Range, power values past float16's range, a BatchNormalization
                 variance of 9.8e7
  tiny_acts      activations of 1e-10 into a layer with an ordinary bias (degenerate scales)
  conv1d         a Conv1d stack with a channel shuffle and an SE block gated by HardSigmoid
  keyword        a keyword spotter on raw audio: waveform [N, 1, 1600] (0.1 s at 16 kHz),
                 strided Conv1d front end (the data tests feed it WAV files)
  yolo_head      YOLOv8's output [N, 4 + 16 classes, anchors]: box coordinates in pixels (0-640)
                 concatenated with sigmoid class scores on the fixed axis 1, 1024 anchors last
  raw_head       the same layout from one conv: pixel boxes beside scores of about 0.1
  reflect_audio  a voice-activity front end on raw audio [N, samples]: reflect padding of 32 and a
                 strided Conv1d of kernel 64 — at 2 samples neither runs
  computed_bias  convs whose biases are computed from constants (a Mul, a Cast from float64), as
                 GoogLeNet's and EfficientNet's exports write them
  layernorm_channels  a ConvNeXt block: channels-last LayerNorm written with ReduceSum, an FFN of
                 two MatMuls with the exact GELU, a layer scale, added to the trunk
  upsample_head  a text detector's head: stride-2 conv, ConvTranspose back up, a 1x1 mask conv
  fpn            a feature pyramid: three stride-2 convs, then each level upsampled ×2 and
                 concatenated with the one above — only sizes divisible by 8 run
  shufflenet     two ShuffleNet v2 units (a downsampling one, then split -> branch -> concat),
                 each ending in a channel shuffle; trunk channels SHUFFLE_DEAD are dead (zero
                 filters, biases and the head's columns that read them), so removing exactly
                 them must leave the outputs as they are
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
rng = np.random.default_rng(13)


def w(name, *shape, scale=None):
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
    s = scale if scale is not None else 1.0 / np.sqrt(max(fan_in, 1))
    return numpy_helper.from_array((rng.standard_normal(shape) * s).astype(np.float32), name)


def const(name, value, dtype=np.float32):
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def vi(name, dims, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, dims)


def save(out, name, graph, data, opset=OPSET):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="prunq-corpus")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, os.path.join(out, name + ".onnx"))
    np.savez(os.path.join(out, name + ".npz"), **data)


def smooth_images(n, c, h, wd):
    x = rng.standard_normal((n, c, h, wd)).astype(np.float32)
    # a little spatial correlation so convolutions see image-like inputs
    x = (x + np.roll(x, 1, 2) + np.roll(x, 1, 3) + np.roll(x, (1, 1), (2, 3))) / 2
    return x.astype(np.float32)


def downsample_4x():
    """images -> c1 -> r1 -> c2 -> r2: two stride-2 3x3 convs with ReLU (weights c1.*, c2.*)."""
    n = helper.make_node
    return [
        n("Conv", ["images", "c1.w", "c1.b"], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1]),
        n("Relu", ["c1"], ["r1"]),
        n("Conv", ["r1", "c2.w", "c2.b"], ["c2"], strides=[2, 2], pads=[1, 1, 1, 1]),
        n("Relu", ["c2"], ["r2"]),
    ]


def detector(out):
    n = helper.make_node
    nodes = downsample_4x() + [
        n("Conv", ["r2", "c3.w", "c3.b"], ["c3"], pads=[1, 1, 1, 1]),
        n("Relu", ["c3"], ["r3"]),
        n("Conv", ["r3", "head.w", "head.b"], ["head"]),
        # export style: the Reshape target is computed from the tensor's own shape
        n("Shape", ["head"], ["head_shape"]),
        n("Gather", ["head_shape", "zero"], ["batch"], axis=0),
        n("Unsqueeze", ["batch", "axes0"], ["batch1"]),
        n("Concat", ["batch1", "seven", "minus_one"], ["target"], axis=0),
        n("Reshape", ["head", "target"], ["flat"]),
        n("Transpose", ["flat"], ["anchors"], perm=[0, 2, 1]),
        n("Slice", ["anchors", "s0", "s4", "axes2"], ["box_raw"]),
        n("Slice", ["anchors", "s4", "s7", "axes2"], ["cls_raw"]),
        n("Sigmoid", ["box_raw"], ["box_unit"]),
        n("Mul", ["box_unit", "img_size"], ["boxes"]),
        n("Sigmoid", ["cls_raw"], ["scores"]),
        n("Concat", ["boxes", "scores"], ["detections"], axis=2),
    ]
    init = [
        w("c1.w", 32, 3, 3, 3), const("c1.b", rng.standard_normal(32) * 0.1),
        w("c2.w", 32, 32, 3, 3), const("c2.b", rng.standard_normal(32) * 0.1),
        w("c3.w", 48, 32, 3, 3), const("c3.b", rng.standard_normal(48) * 0.1),
        w("head.w", 7, 48, 1, 1), const("head.b", rng.standard_normal(7) * 0.1),
        const("zero", 0, np.int64), const("axes0", [0], np.int64), const("seven", [7], np.int64),
        const("minus_one", [-1], np.int64), const("s0", [0], np.int64), const("s4", [4], np.int64),
        const("s7", [7], np.int64), const("axes2", [2], np.int64), const("img_size", 640.0),
    ]
    sym = ["batch", 3, "height", "width"]
    value_info = [
        vi("c1", ["batch", 32, "h2", "w2"]), vi("r1", ["batch", 32, "h2", "w2"]),
        vi("c2", ["batch", 32, "h4", "w4"]), vi("r2", ["batch", 32, "h4", "w4"]),
        vi("c3", ["batch", 48, "h4", "w4"]), vi("r3", ["batch", 48, "h4", "w4"]),
        vi("head", ["batch", 7, "h4", "w4"]), vi("flat", ["batch", 7, "n"]), vi("anchors", ["batch", "n", 7]),
        vi("boxes", ["batch", "n", 4]), vi("scores", ["batch", "n", 3]),
    ]
    g = helper.make_graph(nodes, "detector", [vi("images", sym)], [vi("detections", ["batch", "n", 7])], init,
                          value_info=value_info)
    save(out, "detector", g, {"images": smooth_images(24, 3, 32, 48)})


def streaming_rnn(out):
    n = helper.make_node
    nodes = [
        n("Gather", ["state", "zero"], ["h0"], axis=0),
        n("Gather", ["state", "one"], ["h1"], axis=0),
        n("MatMul", ["input", "w_in"], ["x"]),
        n("MatMul", ["h0", "u0"], ["hu0"]),
        n("Add", ["x", "hu0"], ["a_pre"]),
        n("Cast", ["sr"], ["sr_f"], to=TensorProto.FLOAT),
        n("Mul", ["sr_f", "sr_scale"], ["sr_bias"]),
        n("Add", ["a_pre", "sr_bias"], ["a_pre2"]),
        n("Tanh", ["a_pre2"], ["a"]),
        n("MatMul", ["a", "w_mid"], ["am"]),
        n("MatMul", ["h1", "u1"], ["hu1"]),
        n("Add", ["am", "hu1"], ["b_pre"]),
        n("Tanh", ["b_pre"], ["b"]),
        n("MatMul", ["b", "w_out"], ["logit"]),
        n("Sigmoid", ["logit"], ["output"]),
        n("Unsqueeze", ["a", "axes0"], ["a1"]),
        n("Unsqueeze", ["b", "axes0"], ["b1"]),
        n("Concat", ["a1", "b1"], ["stateN"], axis=0),
    ]
    init = [
        const("zero", 0, np.int64), const("one", 1, np.int64), const("axes0", [0], np.int64),
        w("w_in", 512, 128, scale=1 / np.sqrt(512)), w("u0", 128, 128, scale=0.5 / np.sqrt(128)),
        w("w_mid", 128, 128), w("u1", 128, 128, scale=0.5 / np.sqrt(128)), w("w_out", 128, 1),
        const("sr_scale", 1 / 16000),
    ]
    inputs = [vi("input", ["N", 512]), vi("state", [2, "N", 128]), vi("sr", [], TensorProto.INT64)]
    outputs = [vi("output", ["N", 1]), vi("stateN", [2, "N", 128])]
    g = helper.make_graph(nodes, "streaming_rnn", inputs, outputs, init)
    data = {
        "input": rng.standard_normal((64, 512)).astype(np.float32),
        "state": (rng.standard_normal((2, 64, 128)) * 0.5).astype(np.float32),
        "sr": np.array(16000, dtype=np.int64),
    }
    save(out, "streaming_rnn", g, data)


def fixed_batch(out):
    n = helper.make_node
    nodes = [
        n("Reshape", ["x", "flat_shape"], ["rows"]),
        n("MatMul", ["rows", "w1"], ["h"]),
        n("Add", ["h", "b1"], ["hb"]),
        n("Relu", ["hb"], ["hr"]),
        n("MatMul", ["hr", "w2"], ["y"]),
        n("Reshape", ["y", "out_shape"], ["logits"]),
    ]
    init = [
        const("flat_shape", [16, 96], np.int64), const("out_shape", [1, 16, 10], np.int64),
        w("w1", 96, 64, scale=1 / np.sqrt(96)), const("b1", rng.standard_normal(64) * 0.1),
        w("w2", 64, 10, scale=1 / np.sqrt(64)),
    ]
    g = helper.make_graph(nodes, "fixed_batch", [vi("x", [1, 16, 96])], [vi("logits", [1, 16, 10])], init)
    save(out, "fixed_batch", g, {"x": rng.standard_normal((20, 16, 96)).astype(np.float32)})


def if_head(out):
    n = helper.make_node

    def branch(name):
        return helper.make_graph(
            [n("Gemm", ["feat", name + ".w", name + ".b"], [name + ".out"], transB=1)],
            name,
            [],
            [vi(name + ".out", ["N", 10])],
            [w(name + ".w", 10, 64), const(name + ".b", rng.standard_normal(10) * 0.1)],
        )

    nodes = [
        n("MatMul", ["x", "w0"], ["h"]),
        n("Relu", ["h"], ["feat"]),
        n("ReduceMean", ["x"], ["m"], keepdims=0),
        n("Greater", ["m", "threshold"], ["cond"]),
        n("If", ["cond"], ["logits"], then_branch=branch("then"), else_branch=branch("else")),
    ]
    init = [w("w0", 32, 64), const("threshold", -100.0)]
    g = helper.make_graph(nodes, "if_head", [vi("x", ["N", 32])], [vi("logits", ["N", 10])], init)
    save(out, "if_head", g, {"x": rng.standard_normal((64, 32)).astype(np.float32)})


def if_only(out):
    """A streaming voice-activity model's style (Silero VAD): every weight inside the branches of an
    If that the sample rate `sr` (an int64 scalar) chooses, one branch per rate, a state carried."""
    global rng
    n = helper.make_node
    # Its own random stream; the shared one advances as the earlier version of this model drew
    # (5,632 values), so the models built after it keep their weights.
    shared, rng = rng, np.random.default_rng(1600)
    shared.standard_normal(5632)

    def branch(name, hidden):
        return helper.make_graph(
            [
                n("Concat", ["x", "state"], [name + ".xs"], axis=1),
                n("MatMul", [name + ".xs", name + ".w1"], [name + ".h"]),
                n("Relu", [name + ".h"], [name + ".r"]),
                n("MatMul", [name + ".r", name + ".w2"], [name + ".out"]),
                n("MatMul", [name + ".r", name + ".ws"], [name + ".s"]),
                n("Tanh", [name + ".s"], [name + ".state"]),
            ],
            name,
            [],
            [vi(name + ".out", ["N", 8]), vi(name + ".state", ["N", 16])],
            [w(name + ".w1", 80, hidden), w(name + ".w2", hidden, 8), w(name + ".ws", hidden, 16)],
        )

    nodes = [
        n("Equal", ["sr", "rate_16k"], ["is_16k"]),
        n("If", ["is_16k"], ["y", "state_next"], then_branch=branch("at_16k", 128), else_branch=branch("at_8k", 64)),
    ]
    inputs = [vi("x", ["N", 64]), vi("state", ["N", 16]), vi("sr", [], TensorProto.INT64)]
    outputs = [vi("y", ["N", 8]), vi("state_next", ["N", 16])]
    g = helper.make_graph(nodes, "if_only", inputs, outputs, [const("rate_16k", 16000, np.int64)])
    data = {
        "x": rng.standard_normal((16, 64)).astype(np.float32),
        "state": (rng.standard_normal((16, 16)) * 0.5).astype(np.float32),
        "sr": np.array(16000, dtype=np.int64),
    }
    rng = shared
    save(out, "if_only", g, data)


def scan_rnn(out):
    n = helper.make_node
    body = helper.make_graph(
        [
            n("MatMul", ["x_t", "wx"], ["xw"]),
            n("MatMul", ["h", "wh"], ["hw"]),
            n("Add", ["xw", "hw"], ["pre"]),
            n("Tanh", ["pre"], ["h_next"]),
            n("Identity", ["h_next"], ["y_t"]),
        ],
        "body",
        [vi("h", ["N", 32]), vi("x_t", ["N", 16])],
        [vi("h_next", ["N", 32]), vi("y_t", ["N", 32])],
        [w("wx", 16, 32, scale=1 / 4), w("wh", 32, 32, scale=0.5 / np.sqrt(32))],
    )
    nodes = [
        n("Transpose", ["seq"], ["steps"], perm=[1, 0, 2]),
        n("Scan", ["h0", "steps"], ["h_last", "ys"], num_scan_inputs=1, body=body),
        n("MatMul", ["h_last", "w_out"], ["out"]),
    ]
    init = [w("w_out", 32, 4)]
    inputs = [vi("seq", ["N", 8, 16]), vi("h0", ["N", 32])]
    g = helper.make_graph(nodes, "scan_rnn", inputs, [vi("out", ["N", 4])], init)
    data = {
        "seq": rng.standard_normal((32, 8, 16)).astype(np.float32),
        "h0": np.zeros((32, 32), dtype=np.float32),
    }
    save(out, "scan_rnn", g, data)


def fp16_hazards(out):
    n = helper.make_node
    nodes = [
        # a float Range (Range has no float16 form)
        n("Shape", ["frames"], ["shape"]),
        n("Gather", ["shape", "two"], ["len_i"], axis=0),
        n("Cast", ["len_i"], ["len_f"], to=TensorProto.FLOAT),
        n("Range", ["zero_f", "len_f", "one_f"], ["pos"]),
        n("Mul", ["pos", "pos_scale"], ["ramp"]),
        n("Add", ["frames", "ramp"], ["framed"]),
        # an audio front end: power spectrum of 300-sample frames, past 65504
        n("MatMul", ["framed", "dft"], ["spec"]),
        n("Mul", ["spec", "spec"], ["power"]),
        n("Add", ["power", "eps"], ["power_eps"]),
        n("Log", ["power_eps"], ["logmel"]),
        # a conv whose BatchNormalization variance is 9.8e7
        n("Unsqueeze", ["logmel", "axes1"], ["img"]),
        n("Conv", ["img", "cw", "cb"], ["conv"], pads=[1, 1, 1, 1]),
        n("Mul", ["conv", "gain"], ["loud"]),
        n("BatchNormalization", ["loud", "bn_s", "bn_b", "bn_m", "bn_v"], ["bn"]),
        n("Relu", ["bn"], ["act"]),
        n("ReduceMean", ["act"], ["pooled"], axes=[2, 3], keepdims=0),
        n("Gemm", ["pooled", "fc.w", "fc.b"], ["scores"], transB=1),
    ]
    var = np.full(4, 1.0, dtype=np.float32)
    var[1] = 9.8e7
    init = [
        const("two", 2, np.int64), const("zero_f", 0.0), const("one_f", 1.0), const("pos_scale", 1e-3),
        w("dft", 300, 40, scale=1.0), const("eps", 1e-6), const("axes1", [1], np.int64),
        w("cw", 4, 1, 3, 3), const("cb", np.zeros(4)), const("gain", 3000.0),
        const("bn_s", np.ones(4)), const("bn_b", np.zeros(4)), const("bn_m", np.zeros(4)), const("bn_v", var),
        w("fc.w", 5, 4), const("fc.b", np.zeros(5)),
    ]
    inputs = [vi("frames", ["N", 20, 300])]
    g = helper.make_graph(nodes, "fp16_hazards", inputs, [vi("scores", ["N", 5])], init)
    frames = (rng.standard_normal((16, 20, 300)) * 3.0).astype(np.float32)
    save(out, "fp16_hazards", g, {"frames": frames})


def tiny_acts(out):
    n = helper.make_node
    nodes = [
        n("Mul", ["x", "tiny"], ["xs"]),
        n("Conv", ["xs", "c1.w", "c1.b"], ["c1"], pads=[1, 1, 1, 1]),
        n("Relu", ["c1"], ["r1"]),
        n("Conv", ["r1", "c2.w", "c2.b"], ["c2"], pads=[1, 1, 1, 1]),
        n("Relu", ["c2"], ["r2"]),
        n("GlobalAveragePool", ["r2"], ["p"]),
        n("Flatten", ["p"], ["f"]),
        n("Gemm", ["f", "fc.w", "fc.b"], ["logits"], transB=1),
    ]
    init = [
        const("tiny", 1e-10),
        w("c1.w", 8, 3, 3, 3), const("c1.b", rng.standard_normal(8) * 1e-3),
        w("c2.w", 8, 8, 3, 3), const("c2.b", rng.standard_normal(8) * 1e-11),
        w("fc.w", 10, 8), const("fc.b", rng.standard_normal(10) * 1e-10),
    ]
    g = helper.make_graph(nodes, "tiny_acts", [vi("x", ["N", 3, 16, 16])], [vi("logits", ["N", 10])], init)
    save(out, "tiny_acts", g, {"x": smooth_images(32, 3, 16, 16)})


def conv1d(out):
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "c1.w", "c1.b"], ["c1"], pads=[1, 1]),
        n("Relu", ["c1"], ["r1"]),
        # channel shuffle (ShuffleNet): [N, 2, 8, L] -> swap -> [N, 16, L]
        n("Reshape", ["r1", "split_shape"], ["g"]),
        n("Transpose", ["g"], ["gt"], perm=[0, 2, 1, 3]),
        n("Reshape", ["gt", "merge_shape"], ["shuffled"]),
        n("Conv", ["shuffled", "c2.w", "c2.b"], ["c2"], pads=[1, 1], group=2),
        n("Relu", ["c2"], ["r2"]),
        # squeeze-and-excitation gated by HardSigmoid
        n("GlobalAveragePool", ["r2"], ["se_p"]),
        n("Conv", ["se_p", "se1.w", "se1.b"], ["se1"]),
        n("Relu", ["se1"], ["se_r"]),
        n("Conv", ["se_r", "se2.w", "se2.b"], ["se2"]),
        n("HardSigmoid", ["se2"], ["gate"], alpha=1 / 6, beta=0.5),
        n("Mul", ["r2", "gate"], ["excited"]),
        n("Conv", ["excited", "c3.w", "c3.b"], ["c3"], pads=[1, 1]),
        n("Relu", ["c3"], ["r3"]),
        n("GlobalAveragePool", ["r3"], ["p"]),
        n("Flatten", ["p"], ["f"]),
        n("Gemm", ["f", "fc.w", "fc.b"], ["logits"], transB=1),
    ]
    init = [
        w("c1.w", 16, 4, 3), const("c1.b", rng.standard_normal(16) * 0.1),
        const("split_shape", [0, 2, 8, -1], np.int64), const("merge_shape", [0, 16, -1], np.int64),
        w("c2.w", 16, 8, 3), const("c2.b", rng.standard_normal(16) * 0.1),
        w("se1.w", 4, 16, 1), const("se1.b", np.zeros(4)),
        w("se2.w", 16, 4, 1), const("se2.b", np.zeros(16)),
        w("c3.w", 24, 16, 3), const("c3.b", rng.standard_normal(24) * 0.1),
        w("fc.w", 6, 24), const("fc.b", np.zeros(6)),
    ]
    g = helper.make_graph(nodes, "conv1d", [vi("x", ["N", 4, 64])], [vi("logits", ["N", 6])], init)
    x = rng.standard_normal((48, 4, 64)).astype(np.float32)
    save(out, "conv1d", g, {"x": x, "label": np.argmax(rng.standard_normal((48, 6)), 1).astype(np.int64)})


def keyword(out):
    n = helper.make_node
    nodes = [
        n("Conv", ["audio", "fe.w", "fe.b"], ["fe"], strides=[20]),
        n("Relu", ["fe"], ["fr"]),
        n("Conv", ["fr", "c1.w", "c1.b"], ["c1"], pads=[1, 1]),
        n("Relu", ["c1"], ["r1"]),
        n("GlobalAveragePool", ["r1"], ["p"]),
        n("Flatten", ["p"], ["f"]),
        n("Gemm", ["f", "fc.w", "fc.b"], ["logits"], transB=1),
    ]
    init = [
        w("fe.w", 8, 1, 40), const("fe.b", rng.standard_normal(8) * 0.05),
        w("c1.w", 16, 8, 3), const("c1.b", rng.standard_normal(16) * 0.05),
        w("fc.w", 4, 16), const("fc.b", np.zeros(4)),
    ]
    g = helper.make_graph(nodes, "keyword", [vi("audio", ["N", 1, 1600])], [vi("logits", ["N", 4])], init)
    t = np.arange(1600) / 16000.0
    tones = [np.sin(2 * np.pi * f * t + p) for f, p in zip(rng.uniform(100, 4000, 32), rng.uniform(0, 6, 32))]
    x = (np.stack(tones)[:, None, :] * 0.5).astype(np.float32)
    save(out, "keyword", g, {"audio": x})


# Dead trunk channels k: filter k of both branches of the downsampling unit; after its
# shuffle they sit at positions 2k, 2k+1, which the second unit's split passes on whole
# (k < 8) and its shuffle pairs with that unit's branch filters 2k, 2k+1; after the second
# shuffle all four sit at 4k..4k+3, the head conv's input columns.
SHUFFLE_DEAD = [1, 5]


def shufflenet(out):
    n = helper.make_node

    def shuffle(x, y, c, hw):
        return [
            n("Reshape", [x, y + ".split"], [y + ".g"]),
            n("Transpose", [y + ".g"], [y + ".t"], perm=[0, 2, 1, 3, 4]),
            n("Reshape", [y + ".t", y + ".merge"], [y]),
        ], [const(y + ".split", [0, 2, c // 2, hw, hw], np.int64), const(y + ".merge", [0, c, hw, hw], np.int64)]

    def dw(x, y, c, stride):
        return n("Conv", [x, y + ".w", y + ".b"], [y], group=c, strides=[stride, stride], pads=[1, 1, 1, 1])

    def pw(x, y):
        return n("Conv", [x, y + ".w", y + ".b"], [y])

    sh1, sh1_init = shuffle("cat1", "sh1", 32, 8)
    sh2, sh2_init = shuffle("cat2", "sh2", 32, 8)
    nodes = [
        n("Conv", ["x", "stem.w", "stem.b"], ["stem"], pads=[1, 1, 1, 1]), n("Relu", ["stem"], ["s"]),
        # unit 1 (stride 2): both branches convolve
        dw("s", "b1dw", 16, 2), pw("b1dw", "b1pw"), n("Relu", ["b1pw"], ["a"]),
        pw("s", "b2c1"), n("Relu", ["b2c1"], ["b2r"]), dw("b2r", "b2dw", 16, 2), pw("b2dw", "b2c2"),
        n("Relu", ["b2c2"], ["b0"]),
        n("Concat", ["a", "b0"], ["cat1"], axis=1), *sh1,
        # unit 2 (stride 1): half passes through, half is convolved
        n("Split", ["sh1", "halves"], ["x1", "x2"], axis=1),
        pw("x2", "u2c1"), n("Relu", ["u2c1"], ["u2r"]), dw("u2r", "u2dw", 16, 1), pw("u2dw", "u2c2"),
        n("Relu", ["u2c2"], ["b1"]),
        n("Concat", ["x1", "b1"], ["cat2"], axis=1), *sh2,
        pw("sh2", "head"), n("Relu", ["head"], ["h"]),
        n("GlobalAveragePool", ["h"], ["p"]), n("Flatten", ["p"], ["f"]),
        n("Gemm", ["f", "fc.w", "fc.b"], ["logits"], transB=1),
    ]
    shapes = {"stem": (16, 3, 3, 3), "b1dw": (16, 1, 3, 3), "b1pw": (16, 16, 1, 1), "b2c1": (16, 16, 1, 1),
              "b2dw": (16, 1, 3, 3), "b2c2": (16, 16, 1, 1), "u2c1": (16, 16, 1, 1), "u2dw": (16, 1, 3, 3),
              "u2c2": (16, 16, 1, 1), "head": (48, 32, 1, 1)}
    arrays = {}
    for name, shape in shapes.items():
        arrays[name + ".w"] = numpy_helper.to_array(w(name + ".w", *shape)).copy()
        arrays[name + ".b"] = (rng.standard_normal(shape[0]) * 0.1).astype(np.float32)
    for k in SHUFFLE_DEAD:
        for layer, rows in (("b1pw", [k]), ("b2c2", [k]), ("u2c2", [2 * k, 2 * k + 1])):
            arrays[layer + ".w"][rows] = 0
            arrays[layer + ".b"][rows] = 0
        arrays["head.w"][:, 4 * k:4 * k + 4] = 0
    init = [numpy_helper.from_array(v, k) for k, v in arrays.items()]
    init += sh1_init + sh2_init + [const("halves", [16, 16], np.int64), w("fc.w", 10, 48), const("fc.b", np.zeros(10))]
    g = helper.make_graph(nodes, "shufflenet", [vi("x", ["N", 3, 16, 16])], [vi("logits", ["N", 10])], init)
    save(out, "shufflenet", g, {"x": smooth_images(32, 3, 16, 16)})


CLASSES = 16


def detector_head(out, name, hw, rows, head):
    """Two stride-2 convs from `images` to `r2` (48 channels), then `head(n)` -> (nodes, initializers)
    ending in `detections` [N, 4 + CLASSES, anchors]; saved with `rows` images of `hw` pixels."""
    n = helper.make_node
    nodes = downsample_4x()
    init = [
        w("c1.w", 32, 3, 3, 3), const("c1.b", rng.standard_normal(32) * 0.1),
        w("c2.w", 48, 32, 3, 3), const("c2.b", rng.standard_normal(48) * 0.1),
        const("target", [0, 4 + CLASSES, -1], np.int64),
    ]
    head_nodes, head_init = head(n)
    g = helper.make_graph(nodes + head_nodes, name, [vi("images", ["batch", 3, *hw])],
                          [vi("detections", ["batch", 4 + CLASSES, "anchors"])], init + head_init)
    save(out, name, g, {"images": smooth_images(rows, 3, *hw)})


def yolo_head(out):
    """YOLOv8's output: Concat(boxes in pixels, sigmoid(class logits)) on axis 1, anchors last."""
    def head(n):
        nodes = [
            n("Conv", ["r2", "box.w", "box.b"], ["box_raw"]),
            n("Sigmoid", ["box_raw"], ["box_unit"]),
            n("Mul", ["box_unit", "img_size"], ["boxes_map"]),
            n("Conv", ["r2", "cls.w", "cls.b"], ["cls_raw"]),
            n("Sigmoid", ["cls_raw"], ["scores_map"]),
            n("Concat", ["boxes_map", "scores_map"], ["head"], axis=1),
            n("Reshape", ["head", "target"], ["detections"]),
        ]
        init = [
            w("box.w", 4, 48, 1, 1), const("box.b", rng.standard_normal(4) * 0.1),
            w("cls.w", CLASSES, 48, 1, 1, scale=1.0), const("cls.b", np.full(CLASSES, -4.0)),
            const("img_size", 640.0),
        ]
        return nodes, init
    detector_head(out, "yolo_head", (128, 128), 8, head)


def raw_head(out):
    """One conv makes both: box coordinates in pixels (channels 0-3) and class scores (4-19)."""
    def head(n):
        box_w = rng.standard_normal((4, 48, 1, 1)) * 60.0
        cls_w = rng.standard_normal((CLASSES, 48, 1, 1)) * 0.02
        init = [
            const("head.w", np.concatenate([box_w, cls_w])),
            const("head.b", np.concatenate([np.full(4, 320.0), np.full(CLASSES, 0.1)])),
        ]
        return [n("Conv", ["r2", "head.w", "head.b"], ["head"]), n("Reshape", ["head", "target"], ["detections"])], init
    detector_head(out, "raw_head", (64, 96), 32, head)


def reflect_audio(out):
    n = helper.make_node
    nodes = [
        n("Unsqueeze", ["audio", "axes1"], ["wave"]),
        n("Pad", ["wave", "pads"], ["padded"], mode="reflect"),
        n("Conv", ["padded", "stft.w", "stft.b"], ["frames"], strides=[16]),
        n("Relu", ["frames"], ["r1"]),
        n("ReduceMean", ["r1"], ["pooled"], axes=[2], keepdims=0),
        n("Gemm", ["pooled", "fc.w", "fc.b"], ["speech"], transB=1),
    ]
    init = [
        const("axes1", [1], np.int64), const("pads", [0, 0, 32, 0, 0, 32], np.int64),
        w("stft.w", 24, 1, 64), const("stft.b", rng.standard_normal(24) * 0.1),
        w("fc.w", 2, 24), const("fc.b", np.zeros(2)),
    ]
    g = helper.make_graph(nodes, "reflect_audio", [vi("audio", ["batch", "samples"])], [vi("speech", ["batch", 2])], init)
    save(out, "reflect_audio", g, {"audio": (rng.standard_normal((16, 512)) * 0.1).astype(np.float32)})


def fpn(out):
    n = helper.make_node
    nodes = [
        n("Conv", ["images", "d1.w", "d1.b"], ["p1"], strides=[2, 2], pads=[1, 1, 1, 1]),
        n("Conv", ["p1", "d2.w", "d2.b"], ["p2"], strides=[2, 2], pads=[1, 1, 1, 1]),
        n("Conv", ["p2", "d3.w", "d3.b"], ["p3"], strides=[2, 2], pads=[1, 1, 1, 1]),
        n("Resize", ["p3", "", "scale2"], ["u3"], mode="nearest"),
        n("Concat", ["u3", "p2"], ["m2"], axis=1),
        n("Resize", ["m2", "", "scale2"], ["u2"], mode="nearest"),
        n("Concat", ["u2", "p1"], ["m1"], axis=1),
        n("Conv", ["m1", "out.w", "out.b"], ["mask"]),
    ]
    init = [
        w("d1.w", 8, 3, 3, 3), const("d1.b", np.zeros(8)), w("d2.w", 8, 8, 3, 3), const("d2.b", np.zeros(8)),
        w("d3.w", 8, 8, 3, 3), const("d3.b", np.zeros(8)), const("scale2", [1.0, 1.0, 2.0, 2.0]),
        w("out.w", 1, 24, 1, 1), const("out.b", np.zeros(1)),
    ]
    g = helper.make_graph(nodes, "fpn", [vi("images", ["batch", 3, "height", "width"])],
                          [vi("mask", ["batch", 1, "h2", "w2"])], init)
    save(out, "fpn", g, {"images": smooth_images(8, 3, 32, 48)})


def computed_bias(out):
    n = helper.make_node
    nodes = [
        n("Mul", ["b1_raw", "b1_scale"], ["b1"]),
        n("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]), n("Relu", ["c1"], ["r1"]),
        n("Cast", ["b2_raw"], ["b2"], to=TensorProto.FLOAT),
        n("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]), n("Relu", ["c2"], ["r2"]),
        n("GlobalAveragePool", ["r2"], ["g"]), n("Flatten", ["g"], ["f"]),
        n("Gemm", ["f", "fc.w", "fc.b"], ["logits"], transB=1),
    ]
    init = [
        w("w1", 32, 3, 3, 3), const("b1_raw", rng.standard_normal(32) * 0.1), const("b1_scale", 2.0),
        w("w2", 32, 32, 3, 3), const("b2_raw", rng.standard_normal(32) * 0.1, np.float64),
        w("fc.w", 10, 32), const("fc.b", np.zeros(10)),
    ]
    g = helper.make_graph(nodes, "computed_bias", [vi("x", ["batch", 3, 16, 16])], [vi("logits", ["batch", 10])], init)
    save(out, "computed_bias", g, {"x": smooth_images(16, 3, 16, 16)})


def upsample_head(out):
    """A text detector's head: a stride-2 conv, then a ConvTranspose (kernel 4, stride 2) back to
    the input's size, then a 1x1 conv to a 2-channel mask."""
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "c1.w", "c1.b"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
        n("Relu", ["c1"], ["r1"]),
        n("ConvTranspose", ["r1", "up.w", "up.b"], ["u"], kernel_shape=[4, 4], strides=[2, 2], pads=[1, 1, 1, 1]),
        n("Relu", ["u"], ["r2"]),
        n("Conv", ["r2", "head.w"], ["mask"], kernel_shape=[1, 1]),
    ]
    init = [
        w("c1.w", 32, 3, 3, 3), const("c1.b", rng.standard_normal(32) * 0.1),
        w("up.w", 32, 16, 4, 4, scale=1 / np.sqrt(32 * 4)), const("up.b", np.zeros(16)), w("head.w", 2, 16, 1, 1),
    ]
    g = helper.make_graph(nodes, "upsample_head", [vi("x", ["N", 3, 32, 32])], [vi("mask", ["N", 2, 32, 32])], init)
    save(out, "upsample_head", g, {"x": smooth_images(16, 3, 32, 32)})


def layernorm_channels(out):
    """A ConvNeXt block as torchvision exports it: depthwise conv, then channels-last (Transpose), a
    LayerNorm over the channels written with ReduceSum, an FFN of two MatMuls (C -> 4C -> C) with the
    exact GELU, a layer scale, back to channels-first and added to the trunk."""
    n = helper.make_node
    c, h = 32, 128
    nodes = [
        n("Conv", ["x", "stem.w", "stem.b"], ["s"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        n("Conv", ["s", "dw.w", "dw.b"], ["d"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=c),
        n("Transpose", ["d"], ["t"], perm=[0, 2, 3, 1]),
        n("ReduceSum", ["t", "last"], ["s1"], keepdims=1), n("Div", ["s1", "width"], ["mu"]), n("Sub", ["t", "mu"], ["dc"]),
        n("Mul", ["dc", "dc"], ["sq"]), n("ReduceSum", ["sq", "last"], ["s2"], keepdims=1), n("Div", ["s2", "width"], ["var"]),
        n("Add", ["var", "eps"], ["ve"]), n("Sqrt", ["ve"], ["sd"]), n("Div", ["dc", "sd"], ["nrm"]),
        n("Mul", ["nrm", "ln.g"], ["ng"]), n("Add", ["ng", "ln.b"], ["ln"]),
        n("MatMul", ["ln", "fc1.w"], ["h0"]), n("Add", ["h0", "fc1.b"], ["h"]),
        n("Div", ["h", "sqrt2"], ["hd"]), n("Erf", ["hd"], ["he"]), n("Add", ["he", "one"], ["he1"]),
        n("Mul", ["h", "he1"], ["hm"]), n("Mul", ["hm", "half"], ["g"]),
        n("MatMul", ["g", "fc2.w"], ["o0"]), n("Add", ["o0", "fc2.b"], ["o"]), n("Mul", ["o", "gamma"], ["os"]),
        n("Transpose", ["os"], ["ob"], perm=[0, 3, 1, 2]), n("Add", ["s", "ob"], ["r"]),
        n("GlobalAveragePool", ["r"], ["gp"]), n("Flatten", ["gp"], ["f"]),
        n("Gemm", ["f", "head.w", "head.b"], ["logits"], transB=1),
    ]
    init = [
        w("stem.w", c, 3, 3, 3), const("stem.b", np.zeros(c)), w("dw.w", c, 1, 3, 3), const("dw.b", np.zeros(c)),
        const("last", [-1], np.int64), const("width", float(c)), const("eps", 1e-6),
        const("ln.g", np.ones(c)), const("ln.b", np.zeros(c)),
        w("fc1.w", c, h, scale=1 / np.sqrt(c)), const("fc1.b", rng.standard_normal(h) * 0.1),
        w("fc2.w", h, c, scale=1 / np.sqrt(h)), const("fc2.b", np.zeros(c)), const("gamma", np.full(c, 0.5)),
        const("sqrt2", np.sqrt(2.0)), const("one", 1.0), const("half", 0.5),
        w("head.w", 10, c), const("head.b", np.zeros(10)),
    ]
    g = helper.make_graph(nodes, "layernorm_channels", [vi("x", ["N", 3, 16, 16])], [vi("logits", ["N", 10])], init)
    save(out, "layernorm_channels", g, {"x": smooth_images(16, 3, 16, 16)})


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for build in (detector, streaming_rnn, fixed_batch, if_head, if_only, scan_rnn, fp16_hazards, tiny_acts, conv1d, keyword,
                  shufflenet, yolo_head, raw_head, reflect_audio, fpn, computed_bias, upsample_head, layernorm_channels):
        build(out)


if __name__ == "__main__":
    main()
