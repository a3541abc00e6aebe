"""ONNX Runtime's own quantizer, as users run it, for comparison with prunq.

usage: ort_quantize.py static|dynamic MODEL OUT [CALIB.npz] [--method minmax|entropy|percentile]
                       [--format qdq|qoperator] [--activations s8|u8] [--preprocess] [--rows N]
Static: per-channel int8 weights, calibrated on every sample of CALIB.npz (the first N with --rows).
Defaults: QDQ format with int8 activations (ORT's defaults for QDQ with per_channel=True).
--activations u8 and --preprocess (onnxruntime.quantization.quant_pre_process first: shape inference
and ONNX Runtime's own graph optimizations) are ORT's recommended best settings for x86.
Dynamic: quantize_dynamic defaults. Prints the seconds it took.
"""
import os
import sys
import tempfile
import time

import numpy as np
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quantize_dynamic, quantize_static)


class Reader(CalibrationDataReader):
    def __init__(self, path, names, rows=None):
        arrays = dict(np.load(path))
        if len(names) == 1 and names[0] not in arrays:
            arrays = {names[0]: next(v for k, v in arrays.items() if k not in ("label", "labels", "y"))}
        n = len(next(iter(arrays.values())))
        n = min(n, rows) if rows else n
        self.items = iter([{k: arrays[k][i : i + 1] for k in names} for i in range(n)])

    def get_next(self):
        return next(self.items, None)


def option(name, default=None):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def main():
    mode, model, out = sys.argv[1:4]
    method = option("--method", "minmax")
    start = time.perf_counter()
    if mode == "dynamic":
        quantize_dynamic(model, out)
    else:
        import onnx

        with tempfile.TemporaryDirectory() as tmp:
            if "--preprocess" in sys.argv:
                from onnxruntime.quantization.shape_inference import quant_pre_process

                prepared = os.path.join(tmp, "prepared.onnx")
                quant_pre_process(model, prepared)
                model = prepared
            graph = onnx.load(model, load_external_data=False).graph
            initializers = {t.name for t in graph.initializer}
            names = [i.name for i in graph.input if i.name not in initializers]
            rows = int(option("--rows", 0)) or None
            methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                       "percentile": CalibrationMethod.Percentile}
            formats = {"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}
            activations = {"s8": QuantType.QInt8, "u8": QuantType.QUInt8}
            quantize_static(model, out, Reader(sys.argv[4], names, rows), quant_format=formats[option("--format", "qdq")],
                            per_channel=True, activation_type=activations[option("--activations", "s8")],
                            weight_type=QuantType.QInt8, calibrate_method=methods[method])
    print(f"{time.perf_counter() - start:.3f}")


if __name__ == "__main__":
    main()
