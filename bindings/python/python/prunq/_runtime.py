"""Which runtime measures: ONNX Runtime is found in the running interpreter's ``onnxruntime``
package (never by asking another ``python3``), loaded by prunq's core in the same process — the
same library file, so a process that already imported ``onnxruntime`` shares it."""

from __future__ import annotations

import glob
import importlib.util
import os
import warnings

from . import _prunq


def ort_library() -> str | None:
    """The ONNX Runtime shared library of this interpreter's ``onnxruntime`` package, if installed."""
    explicit = os.environ.get("ORT_DYLIB_PATH")
    if explicit:
        return explicit
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        names = ("libonnxruntime.so*", "libonnxruntime*.dylib", "onnxruntime.dll")
        found = sorted(f for n in names for f in glob.glob(os.path.join(folder, "capi", n)))
        # The versioned file (libonnxruntime.so.1.x.y) over the bare link name.
        found.sort(key=lambda f: (not os.path.basename(f).count("."), len(f)), reverse=True)
        if found:
            return found[0]
    return None


def litert_library() -> str | None:
    """LiteRT's C library (``libLiteRt.so``) of this interpreter's ``ai_edge_litert`` package, if
    installed (``$LITERT_LIB`` first): what runs the ``.tflite`` files prunq writes."""
    explicit = os.environ.get("LITERT_LIB")
    if explicit:
        return explicit
    spec = importlib.util.find_spec("ai_edge_litert")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        for name in ("libLiteRt.so", "libLiteRt.dylib", "LiteRt.dll"):
            if os.path.isfile(os.path.join(folder, name)):
                return os.path.join(folder, name)
    return None


def set_runtime(runtime: str = "auto", threads: int | None = None) -> str:
    """Choose what measures every later call: ``"auto"`` (ONNX Runtime when it loads, else tract,
    with a warning saying why), ``"ort"`` or ``"tract"``; ``threads`` caps prunq's own threads.
    Returns the runtime now in use, e.g. ``"onnxruntime 1.32.0"``."""
    _prunq.configure(runtime, ort_library(), threads, litert_library())
    used, why = _prunq.runtime_in_use()
    if runtime == "auto" and why is not None:
        warnings.warn(f"prunq measures in tract: ONNX Runtime did not load ({why})", RuntimeWarning, stacklevel=2)
    return used
