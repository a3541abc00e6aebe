"""Independent parameter and MAC counts with the onnx package, for checking `prunq inspect`.

usage: count.py MODEL NAME=DxDxD...   prints JSON {"parameters": P, "macs": M}
Parameters: elements of all float initializers and Constant-node tensors.
MACs: Conv, ConvTranspose, Gemm, MatMul, from the shapes ONNX Runtime actually produces when it
runs the model (every node output exposed) on zeros of the given input shapes.
"""
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper


def main():
    m = onnx.load(sys.argv[1])
    shapes = dict(a.split("=") for a in sys.argv[2:])
    for i in m.graph.input:
        if i.name in shapes:
            dims = [int(d) for d in shapes[i.name].split("x")]
            for d, v in zip(i.type.tensor_type.shape.dim, dims):
                d.ClearField("dim_param")
                d.dim_value = v
        else:
            for d in i.type.tensor_type.shape.dim:
                if not d.HasField("dim_value"):
                    d.ClearField("dim_param")
                    d.dim_value = 1
    params = 0
    known = {}
    for t in m.graph.initializer:
        a = numpy_helper.to_array(t)
        known[t.name] = list(a.shape)
        params += a.size if a.dtype.kind == "f" else 0
    for n in m.graph.node:
        if n.op_type == "Constant" and n.attribute[0].name == "value":
            a = numpy_helper.to_array(n.attribute[0].t)
            known[n.output[0]] = list(a.shape)
            params += a.size if a.dtype.kind == "f" else 0
    feed = {}
    types = {1: np.float32, 7: np.int64, 6: np.int32}
    for i in m.graph.input:
        if i.name in known:
            continue
        dims = [d.dim_value for d in i.type.tensor_type.shape.dim]
        feed[i.name] = np.zeros(dims, types[i.type.tensor_type.elem_type])
    existing = {o.name for o in m.graph.output}
    for n in m.graph.node:
        for o in n.output:
            if o and o not in existing and o not in known:
                m.graph.output.append(onnx.ValueInfoProto(name=o))
                existing.add(o)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    for name, value in zip(names, sess.run(names, feed)):
        known.setdefault(name, list(np.shape(value)))
    macs = 0
    for n in m.graph.node:
        s = lambda name: known[name]
        if n.op_type == "Conv":
            macs += int(np.prod(s(n.output[0]))) * int(np.prod(s(n.input[1])[1:]))
        elif n.op_type == "ConvTranspose":
            macs += int(np.prod(s(n.input[0]))) * int(np.prod(s(n.input[1])[1:]))
        elif n.op_type == "Gemm":
            trans_a = next((a.i for a in n.attribute if a.name == "transA"), 0)
            a = s(n.input[0])
            macs += int(np.prod(s(n.output[0]))) * (a[0] if trans_a else a[-1])
        elif n.op_type == "MatMul":
            macs += int(np.prod(s(n.output[0]))) * s(n.input[0])[-1]
    print(json.dumps({"parameters": int(params), "macs": int(macs)}))


if __name__ == "__main__":
    main()
