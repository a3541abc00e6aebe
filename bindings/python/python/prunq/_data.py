"""Data as the library takes it: a path (npz/npy, an image folder, a text file with a tokenizer,
WAV files — what the CLI takes) passes through; arrays in memory — a dict of numpy arrays
batched on axis 0, an iterable of such dicts, or any object with ``get_next()`` such as an ONNX
Runtime ``CalibrationDataReader`` — are joined along axis 0 and packed as .npz bytes, which the
library reads exactly as it reads an .npz file (same rows, same dtypes, same bytes out)."""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Mapping
from typing import Any, Union

import numpy as np

from ._prunq import DataError

#: What a data argument may be.
DataLike = Union[str, "os.PathLike[str]", Mapping[str, Any], Iterable[Mapping[str, Any]], Any]


def _rows_of(reader: Any) -> list[Mapping[str, Any]]:
    """Every dict a ``get_next()`` reader gives, until it returns None (as ONNX Runtime reads)."""
    rows = []
    while True:
        row = reader.get_next()
        if row is None:
            return rows
        rows.append(row)


def _joined(parts: list[Mapping[str, Any]], what: str) -> dict[str, np.ndarray]:
    if not parts:
        raise DataError(f"{what}: the data gave no samples")
    names = list(parts[0].keys())
    for i, part in enumerate(parts):
        if not isinstance(part, Mapping):
            raise DataError(f"{what}: sample {i} is a {type(part).__name__}, not a dict of input name to array")
        if set(part.keys()) != set(names):
            raise DataError(f"{what}: sample {i} has inputs {sorted(part.keys())}, the first had {sorted(names)}")
    joined = {}
    for name in names:
        arrays = [np.asarray(part[name]) for part in parts]
        if any(a.ndim == 0 for a in arrays):
            # A scalar input (a sample rate, a flag) is fed whole with every batch, as in an .npz:
            # every sample must give the same value.
            if any(a.ndim != 0 or a.dtype == object or a != arrays[0] for a in arrays):
                raise DataError(f"{what}: input '{name}' is a scalar in some samples and differs between them: "
                                "arrays are batched on axis 0, scalars are fed whole and must agree")
            joined[name] = arrays[0]
            continue
        for i, a in enumerate(arrays):
            if a.dtype == object:
                raise DataError(f"{what}: input '{name}' of sample {i} holds Python objects, not numbers")
        try:
            joined[name] = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
        except ValueError as e:
            shapes = sorted({a.shape for a in arrays})
            raise DataError(f"{what}: the samples of input '{name}' cannot be joined on axis 0 ({shapes}): {e}") from None
    return joined


def pack(data: DataLike | None, what: str) -> str | bytes | None:
    """``data`` as a path string or as .npz bytes; ``what`` names it in errors (calib, val, data)."""
    if data is None:
        return None
    if isinstance(data, (str, os.PathLike)):
        return os.fspath(data)
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)  # an .npz file's bytes
    if isinstance(data, Mapping):
        arrays = _joined([data], what)
    elif hasattr(data, "get_next"):
        arrays = _joined(_rows_of(data), what)
    elif isinstance(data, Iterable):
        arrays = _joined(list(data), what)
    else:
        raise TypeError(
            f"{what}: expected a path, a dict of numpy arrays, an iterable of such dicts or an object with "
            f"get_next(), not {type(data).__name__}"
        )
    for name, a in arrays.items():
        if not isinstance(name, str):
            raise DataError(f"{what}: input names must be strings, not {name!r}")
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()
