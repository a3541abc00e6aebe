"""prunq: prune and quantize ONNX models, check they still work, write standard ONNX.

    import numpy as np, prunq
    calib = dict(np.load("digits_calib.npz"))
    result = prunq.quantize("model.onnx", "model.int8.onnx", data=calib, mode="static")
    print(result.comparison)          # the report, as the CLI's --report writes it

Every function runs one of the library's jobs: the result is run beside the original and refused
when it turns non-finite or misses a budget you set, written atomically (or returned as an
``onnx.ModelProto`` when no output is given), compared on data, timed in the runtime and reported.
ONNX Runtime is used from this interpreter's ``onnxruntime`` package when installed, else tract.
"""

from ._prunq import DataError, ModelError, PrunqError, RuntimeFailure, UsageError, __version__
from ._api import apply, bench, compare, convert, defaults, evaluate, optimize, prune, quantize, set_data_options
from ._results import Result
from ._runtime import litert_library, ort_library, set_runtime
from . import _prunq as _core

# This interpreter's ONNX Runtime and LiteRT (found, not loaded: the first model run loads them).
_core.configure("auto", ort_library(), None, litert_library())

__all__ = [
    "__version__",
    "apply",
    "bench",
    "compare",
    "convert",
    "defaults",
    "evaluate",
    "optimize",
    "prune",
    "quantize",
    "set_data_options",
    "set_runtime",
    "ort_library",
    "Result",
    "PrunqError",
    "ModelError",
    "DataError",
    "UsageError",
    "RuntimeFailure",
]
