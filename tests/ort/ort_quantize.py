"""ONNX Runtime's own quantizer, as users run it today, for comparison with prunq.

usage: ort_quantize.py static|dynamic MODEL OUT [CALIB.npz] [--method minmax|entropy|percentile]
Static: QDQ format, per-channel, int8 weights and int8 activations (ORT's defaults for QDQ with
per_channel=True), calibrated on every sample of CALIB.npz. Dynamic: quantize_dynamic defaults.
Prints the seconds it took.
"""
import sys
import time

import numpy as np
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quantize_dynamic, quantize_static)


class Reader(CalibrationDataReader):
    def __init__(self, path, names):
        arrays = dict(np.load(path))
        if len(names) == 1 and names[0] not in arrays:
            arrays = {names[0]: next(v for k, v in arrays.items() if k not in ("label", "labels", "y"))}
        n = len(next(iter(arrays.values())))
        self.items = iter([{k: arrays[k][i : i + 1] for k in names} for i in range(n)])

    def get_next(self):
        return next(self.items, None)


def main():
    mode, model, out = sys.argv[1:4]
    method = sys.argv[sys.argv.index("--method") + 1] if "--method" in sys.argv else "minmax"
    start = time.perf_counter()
    if mode == "dynamic":
        quantize_dynamic(model, out)
    else:
        import onnx

        names = [i.name for i in onnx.load(model, load_external_data=False).graph.input]
        methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                   "percentile": CalibrationMethod.Percentile}
        quantize_static(model, out, Reader(sys.argv[4], names), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=methods[method])
    print(f"{time.perf_counter() - start:.3f}")


if __name__ == "__main__":
    main()
