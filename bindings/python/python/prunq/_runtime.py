"""Which runtime measures: ONNX Runtime is found in the running interpreter's ``onnxruntime``
package (never by asking another ``python3``), loaded by prunq's core in the same process — the
same library file, so a process that already imported ``onnxruntime`` shares it."""

from __future__ import annotations

import glob
import importlib.util
import os
import warnings

from . import _prunq


def _library(env_var: str, package: str, patterns: tuple[str, ...]) -> str | None:
    """The file ``$env_var`` names, else the first file matching ``patterns`` (relative to the
    package's folder) in this interpreter's ``package`` — found, not imported."""
    explicit = os.environ.get(env_var)
    if explicit:
        return explicit
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        found = sorted(f for n in patterns for f in glob.glob(os.path.join(folder, n)))
        # A versioned file (libonnxruntime.so.1.x.y) over the bare link name.
        found.sort(key=lambda f: (not os.path.basename(f).count("."), len(f)), reverse=True)
        if found:
            return found[0]
    return None


def ort_library() -> str | None:
    """The ONNX Runtime shared library of this interpreter's ``onnxruntime`` package, if installed."""
    return _library("ORT_DYLIB_PATH", "onnxruntime",
                    ("capi/libonnxruntime.so*", "capi/libonnxruntime*.dylib", "capi/onnxruntime.dll"))


def litert_library() -> str | None:
    """LiteRT's C library (``libLiteRt.so``) of this interpreter's ``ai_edge_litert`` package, if
    installed (``$LITERT_LIB`` first): what runs the ``.tflite`` files prunq writes."""
    return _library("LITERT_LIB", "ai_edge_litert", ("libLiteRt.so", "libLiteRt.dylib", "LiteRt.dll"))


def set_runtime(runtime: str = "auto", threads: int | None = None) -> str:
    """Choose what measures every later call: ``"auto"`` (ONNX Runtime when it loads, else tract,
    with a warning saying why), ``"ort"`` or ``"tract"``; ``threads`` caps prunq's own threads.
    Returns the runtime now in use, e.g. ``"onnxruntime 1.32.0"``."""
    _prunq.configure(runtime, ort_library(), threads, litert_library())
    used, why = _prunq.runtime_in_use()
    if runtime == "auto" and why is not None:
        warnings.warn(f"prunq measures in tract: ONNX Runtime did not load ({why})", RuntimeWarning, stacklevel=2)
    return used
