"""One function per capability, over the library's jobs: the pass, then the result run beside the
original (refused when its outputs turn non-finite or it misses a budget you set), saved
atomically, compared on data, timed where it will run, and reported — the same guarantees, the
same bytes as the ``prunq`` command with the same options.

An option left ``None`` takes the library's default (``prunq.defaults("quantize")`` lists them;
they are the CLI's defaults too)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union

from . import _prunq
from ._data import DataLike, pack
from ._progress import ProgressCallback, Reporter
from ._results import Result
from ._runtime import set_runtime

#: A model: a path, an ``onnx.ModelProto``, or its encoded bytes.
ModelLike = Union[str, "os.PathLike[str]", bytes, Any]
PathLike = Union[str, "os.PathLike[str]"]


def _model(model: ModelLike, what: str = "model") -> str | bytes:
    if isinstance(model, (str, os.PathLike)):
        return os.fspath(model)
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    if hasattr(model, "SerializeToString"):
        return model.SerializeToString()
    raise TypeError(f"{what}: expected a path, an onnx.ModelProto or bytes, not {type(model).__name__}")


def _path(p: Optional[PathLike]) -> Optional[str]:
    return None if p is None else os.fspath(p)


def _texts(texts: Optional[Union[PathLike, Sequence[str]]]) -> Optional[list[str]]:
    """Expected texts: a list, or a file with one a line (as the CLI's --text)."""
    if texts is None:
        return None
    if isinstance(texts, (str, os.PathLike)):
        with open(texts, encoding="utf-8") as f:
            return f.read().splitlines()
    return [str(t) for t in texts]


def _options(given: dict[str, Any]) -> str:
    """The options given (not None) under the library's serde names (kebab-case), as JSON."""
    return json.dumps({k.replace("_", "-"): v for k, v in given.items() if v is not None})


def _checks(
    latency_check: bool,
    external_data: bool,
    report: Optional[PathLike],
    max_drop: Optional[float],
    min_quality: Optional[float],
    metric: Optional[str],
    texts: Any,
    fix_inputs: Optional[Mapping[str, Any]] = None,
) -> str:
    return json.dumps(
        {
            "fix_inputs": _fixed(fix_inputs),
            "latency": latency_check,
            "external_data": external_data,
            "report": _path(report),
            "max_drop": max_drop,
            "min_quality": min_quality,
            "metric": metric,
            "texts": _texts(texts),
        }
    )


def _fixed(fix_inputs: Optional[Mapping[str, Any]]) -> dict[str, str]:
    """``{"sr": 16000}`` as the library takes it: each value written as ``--fix-input`` writes it
    (``True`` as ``true``, a sequence as numbers separated by commas)."""
    def text(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (list, tuple)):
            return ",".join(text(x) for x in v)
        return str(v.item() if hasattr(v, "item") and getattr(v, "size", 1) == 1 else v)
    return {str(k): text(v) for k, v in (fix_inputs or {}).items()}


def _prepared(runtime: Optional[str], threads: Optional[int]) -> bool:
    """Sets the runtime; whether models run in LiteRT (``"litert"``: an ONNX model is converted
    first; ONNX models a job measures itself keep running where ``"auto"`` says)."""
    litert = runtime == "litert"
    if runtime is not None or threads is not None:
        set_runtime("auto" if litert else (runtime or "auto"), threads)
    return litert


def _result(kind: str, handed: tuple[str, Optional[bytes]], output: Optional[PathLike]) -> Result:
    report, model_bytes = handed
    return Result(kind, json.loads(report), model_bytes, _path(output))


def quantize(
    model: ModelLike,
    output: Optional[PathLike] = None,
    *,
    data: Optional[DataLike] = None,
    val: Optional[DataLike] = None,
    mode: Optional[str] = None,
    bits: Optional[int] = None,
    algorithm: Optional[str] = None,
    scheme: Optional[str] = None,
    codebook: Optional[int] = None,
    block_size: Optional[int] = None,
    per_tensor: Optional[bool] = None,
    weight_format: Optional[str] = None,
    weight_type: Optional[str] = None,
    reduce_range: Optional[bool] = None,
    asymmetric: Optional[bool] = None,
    exclude: Optional[Sequence[str]] = None,
    method: Optional[str] = None,
    percentile: Optional[float] = None,
    activations: Optional[str] = None,
    target_sqnr: Optional[float] = None,
    fallback_int8: Optional[bool] = None,
    op_types: Optional[Sequence[str]] = None,
    fp16_io: Optional[bool] = None,
    bias_correction: Optional[bool] = None,
    smooth: Optional[Union[float, str]] = None,
    simplify: Optional[bool] = None,
    latency_check: bool = True,
    external_data: bool = False,
    report: Optional[PathLike] = None,
    max_drop: Optional[float] = None,
    min_quality: Optional[float] = None,
    metric: Optional[str] = None,
    texts: Optional[Union[PathLike, Sequence[str]]] = None,
    fix_inputs: Optional[Mapping[str, Any]] = None,
    runtime: Optional[str] = None,
    threads: Optional[int] = None,
    progress: Union[bool, ProgressCallback] = True,
    quiet: bool = False,
) -> Result:
    """Quantize ``model`` (as ``prunq quantize``) and write it to ``output``, or return it.

    ``mode``: ``"weights"`` (default; no data needed), ``"dynamic"``, ``"static"`` (needs
    ``data``) or ``"fp16"``. ``data`` is the calibration data: a path, a dict of numpy arrays
    batched on axis 0, an iterable of such dicts, or an ONNX Runtime ``CalibrationDataReader``
    (anything with ``get_next()``). ``val`` is held-out data the result is compared on.
    ``weight_type``: ``"auto"``, ``"int8"`` or ``"uint8"`` (static and dynamic weights).
    ``max_drop`` / ``min_quality`` (with ``val``) refuse a result past that budget in ``metric``.
    ``fix_inputs`` (``{"sr": 16000}``) freezes inputs first: each ``If`` they decide becomes the
    branch taken, and the result no longer takes them (``--fix-input``).
    Every other option is the CLI flag of the same name; ``None`` is the library's default.

    Raises ``prunq.UsageError`` for options that mean nothing together, ``prunq.ModelError`` /
    ``prunq.DataError`` naming the node, tensor or input at fault, ``FileNotFoundError``."""
    _prepared(runtime, threads)
    unsigned = {None: None, "auto": None, "int8": False, "uint8": True}
    if weight_type not in unsigned:
        raise _prunq.UsageError(f"weight_type {weight_type!r}: use auto, int8 or uint8")
    config = _options(
        dict(
            mode=mode, bits=bits, algorithm=algorithm, scheme=scheme, codebook=codebook, block_size=block_size,
            per_tensor=per_tensor, weight_format=weight_format, unsigned_weights=unsigned[weight_type],
            reduce_range=reduce_range, asymmetric=asymmetric, exclude=list(exclude) if exclude else None,
            method=method, percentile=percentile, activations=activations, target_sqnr=target_sqnr,
            fallback_int8=fallback_int8, op_types=list(op_types) if op_types else None, fp16_io=fp16_io,
            bias_correction=bias_correction, smooth=smooth, simplify=simplify,
        )
    )
    handed = _prunq.job(
        "quantize", config, _model(model), _path(output), pack(data, "data"), pack(val, "val"),
        _checks(latency_check, external_data, report, max_drop, min_quality, metric, texts, fix_inputs),
        Reporter(progress, quiet),
    )
    return _result("quantize", handed, output)


def prune(
    model: ModelLike,
    output: Optional[PathLike] = None,
    *,
    data: Optional[DataLike] = None,
    val: Optional[DataLike] = None,
    structured: Optional[bool] = None,
    sparsity: Optional[float] = None,
    method: Optional[str] = None,
    scope: Optional[str] = None,
    pattern: Optional[Union[str, tuple[int, int]]] = None,
    exclude: Optional[Sequence[str]] = None,
    prune_ends: Optional[bool] = None,
    prune_grouped: Optional[bool] = None,
    sparse_storage: Optional[bool] = None,
    ratio: Optional[float] = None,
    threshold: Optional[float] = None,
    target_macs: Optional[float] = None,
    target_params: Optional[float] = None,
    importance: Optional[str] = None,
    round_to: Optional[int] = None,
    min_channels: Optional[int] = None,
    repair: Optional[bool] = None,
    shape: Optional[dict[str, Sequence[int]]] = None,
    simplify: Optional[bool] = None,
    latency_check: bool = True,
    external_data: bool = False,
    report: Optional[PathLike] = None,
    max_drop: Optional[float] = None,
    min_quality: Optional[float] = None,
    metric: Optional[str] = None,
    texts: Optional[Union[PathLike, Sequence[str]]] = None,
    fix_inputs: Optional[Mapping[str, Any]] = None,
    runtime: Optional[str] = None,
    threads: Optional[int] = None,
    progress: Union[bool, ProgressCallback] = True,
    quiet: bool = False,
) -> Result:
    """Prune ``model`` (as ``prunq prune``): unstructured (``sparsity``), N:M (``pattern="2:4"``)
    or structured (``structured=True`` with ``ratio``, ``target_macs`` or ``target_params``;
    channels removed and the next layers repaired by least squares on ``data``). Writes ``output``
    or returns the model; the options and guarantees are ``quantize``'s."""
    _prepared(runtime, threads)
    if isinstance(pattern, str):
        n, _, m = pattern.partition(":")
        try:
            pattern = (int(n), int(m))
        except ValueError:
            raise _prunq.UsageError(f"pattern {pattern!r}: write N:M, e.g. 2:4") from None
    config = _options(
        dict(
            structured=structured, sparsity=sparsity, method=method, scope=scope,
            pattern=list(pattern) if pattern else None, exclude=list(exclude) if exclude else None,
            prune_ends=prune_ends, prune_grouped=prune_grouped, sparse_storage=sparse_storage, ratio=ratio,
            threshold=threshold, target_macs=target_macs, target_params=target_params, importance=importance,
            round_to=round_to, min_channels=min_channels, repair=repair,
            shape={k: list(v) for k, v in shape.items()} if shape else None, simplify=simplify,
        )
    )
    handed = _prunq.job(
        "prune", config, _model(model), _path(output), pack(data, "data"), pack(val, "val"),
        _checks(latency_check, external_data, report, max_drop, min_quality, metric, texts, fix_inputs),
        Reporter(progress, quiet),
    )
    return _result("prune", handed, output)


def apply(
    recipe: PathLike,
    model: ModelLike,
    output: Optional[PathLike] = None,
    *,
    data: Optional[DataLike] = None,
    val: Optional[DataLike] = None,
    latency_check: bool = True,
    external_data: bool = False,
    report: Optional[PathLike] = None,
    max_drop: Optional[float] = None,
    min_quality: Optional[float] = None,
    metric: Optional[str] = None,
    texts: Optional[Union[PathLike, Sequence[str]]] = None,
    fix_inputs: Optional[Mapping[str, Any]] = None,
    runtime: Optional[str] = None,
    threads: Optional[int] = None,
    progress: Union[bool, ProgressCallback] = True,
    quiet: bool = False,
) -> Result:
    """Replay a recipe (``optimize(save_recipe=...)`` or written by hand) on ``model``, as
    ``prunq apply``: the same bytes as the run that wrote it."""
    _prepared(runtime, threads)
    handed = _prunq.job(
        "apply", os.fspath(recipe), _model(model), _path(output), pack(data, "data"), pack(val, "val"),
        _checks(latency_check, external_data, report, max_drop, min_quality, metric, texts, fix_inputs),
        Reporter(progress, quiet),
    )
    return _result("apply", handed, output)


def optimize(
    model: ModelLike,
    output: Optional[PathLike] = None,
    *,
    data: DataLike,
    val: DataLike,
    metric: Optional[str] = None,
    max_drop: Optional[float] = None,
    min_quality: Optional[float] = None,
    objective: str = "size",
    time_budget: float = 600.0,
    texts: Optional[Union[PathLike, Sequence[str]]] = None,
    save_recipe: Optional[PathLike] = None,
    external_data: bool = False,
    report: Optional[PathLike] = None,
    runtime: Optional[str] = None,
    threads: Optional[int] = None,
    progress: Union[bool, ProgressCallback] = True,
    quiet: bool = False,
) -> Result:
    """Find the smallest (``objective="size"``), fastest (``"latency"``) or best-ratio (``"both"``)
    model that keeps the budget on ``val``, over pruning and quantization together, measured in
    the runtime (as ``prunq optimize``). ``time_budget`` in seconds. ``metric`` and the budget
    default as the CLI's. ``save_recipe`` writes the winner's steps for ``apply``."""
    _prepared(runtime, threads)
    options = dict(metric=metric, max_drop=max_drop, min_quality=min_quality, objective=objective,
                   time_budget=float(time_budget), texts=_texts(texts))
    checks = _checks(False, external_data, report, None, None, None, None)
    handed = _prunq.job(
        "optimize", json.dumps([options, _path(save_recipe)]), _model(model), _path(output), pack(data, "data"),
        pack(val, "val"), checks, Reporter(progress, quiet),
    )
    return _result("optimize", handed, output)


def compare(
    reference: ModelLike,
    candidate: ModelLike,
    data: DataLike,
    *,
    batch_size: int = 32,
    per_layer: bool = False,
    runtime: Optional[str] = None,
    threads: Optional[int] = None,
    progress: Union[bool, ProgressCallback] = True,
) -> Result:
    """Compare two models' outputs on ``data`` (as ``prunq compare``): agreement, cosine, SQNR,
    worst slice; ``per_layer=True`` compares every shared intermediate tensor. A ``.tflite``
    runs in LiteRT; ``runtime="litert"`` runs ONNX models there too, converted first."""
    litert = _prepared(runtime, threads)
    report = _prunq.compare(
        _model(reference, "reference"), _model(candidate, "candidate"), pack(data, "data"), batch_size, per_layer,
        litert, Reporter(progress, True),
    )
    return Result("compare", json.loads(report))


def evaluate(
    model: ModelLike,
    data: DataLike,
    *,
    batch_size: int = 32,
    labels: Optional[str] = None,
    texts: Optional[Union[PathLike, Sequence[str]]] = None,
    runtime: Optional[str] = None,
    threads: Optional[int] = None,
    progress: Union[bool, ProgressCallback] = True,
) -> Result:
    """Accuracy on labelled ``data`` (labels in the array ``labels``, default ``label``/``labels``/
    ``y``), or exact lines and CER with ``texts`` (as ``prunq eval``). A ``.tflite`` runs in
    LiteRT; ``runtime="litert"`` runs an ONNX model there too, converted first."""
    litert = _prepared(runtime, threads)
    report = _prunq.evaluate(
        _model(model), pack(data, "data"), batch_size, labels, _texts(texts), litert, Reporter(progress, True)
    )
    return Result("evaluate", json.loads(report))


def bench(
    models: Union[ModelLike, Sequence[ModelLike]],
    data: DataLike,
    *,
    runtime: str = "auto",
    batch_size: int = 1,
    runs: int = 100,
    warmup: int = 10,
    threads: int = 1,
    progress: Union[bool, ProgressCallback] = True,
) -> Result:
    """Time models side by side on ``data`` (as ``prunq bench``: taking turns, the ratios in one
    run). ``runtime``: ``"auto"``, ``"ort"``, ``"tract"``, ``"both"`` or ``"litert"`` (ONNX
    models converted first; a ``.tflite`` always runs there). The report is a list, one entry per
    runtime."""
    if runtime not in ("both", "litert"):
        _prepared(runtime, None)
    if isinstance(models, (str, os.PathLike, bytes)) or hasattr(models, "SerializeToString"):
        models = [models]
    named = [
        (os.fspath(m) if isinstance(m, (str, os.PathLike)) else f"model {i}", _model(m))
        for i, m in enumerate(models)
    ]
    report = _prunq.bench(named, pack(data, "data"), runtime, batch_size, runs, warmup, threads, Reporter(progress, True))
    return Result("bench", json.loads(report))


def convert(
    model: ModelLike,
    output: Optional[PathLike] = None,
    *,
    fp16: bool = False,
    dynamic_range: bool = True,
    input_shapes: Optional[dict[str, Sequence[int]]] = None,
    val: Optional[DataLike] = None,
    data: Optional[DataLike] = None,
    report: Optional[PathLike] = None,
    fix_inputs: Optional[Mapping[str, Any]] = None,
    quiet: bool = False,
    progress: Union[bool, ProgressCallback] = True,
) -> Result:
    """The model as LiteRT (TensorFlow Lite), as ``prunq convert``: run in LiteRT beside the
    original (on ``val``, else ``data``, else made-up inputs) before it is written, one quality
    line, refused when its outputs turn non-finite. ``input_shapes`` fixes inputs whose sizes
    are open besides the batch (else the data's first row gives them); ``fp16`` stores weights
    as float16; ``dynamic_range=False`` computes float layers with int8 weights in float rather than
    in LiteRT's dynamic-range form. Without ``output`` the ``.tflite`` bytes are
    ``result.model_bytes``."""
    options = json.dumps({"input_shapes": {k: [int(d) for d in v] for k, v in (input_shapes or {}).items()},
                          "fp16": bool(fp16), "dynamic_range": bool(dynamic_range),
                          "fix_inputs": _fixed(fix_inputs)})
    handed = _prunq.convert(
        _model(model), _path(output), options, pack(data, "data"), pack(val, "val"), _path(report),
        Reporter(progress, quiet),
    )
    return _result("convert", handed, output)


def defaults(kind: str = "quantize") -> dict[str, Any]:
    """The library's defaults for ``quantize`` or ``prune`` options (serde names, kebab-case)."""
    return json.loads(_prunq.defaults(kind))


def set_data_options(
    *,
    preprocess: Optional[str] = None,
    tokenizer: Optional[PathLike] = None,
    max_len: Optional[int] = None,
    sample_rate: Optional[int] = None,
) -> None:
    """How data given as paths that are not arrays become inputs, for the calls that follow:
    images (``preprocess``, as the CLI's ``--preprocess``), text (a ``tokenizer.json`` and
    ``max_len``), WAV files (``sample_rate``)."""
    _prunq.configure_data(preprocess, _path(tokenizer), max_len, sample_rate)


def _document_defaults() -> None:
    """Appends the library's defaults (read from the Rust configs, the one place they live) to the
    docstrings of ``quantize`` and ``prune``, so ``help()`` shows what ``None`` means."""
    skip = {"keep-faster", "decided", "unsigned-weights", "shape"}
    for function, kind in ((quantize, "quantize"), (prune, "prune")):
        pairs = [f"{k.replace('-', '_')}={v!r}" for k, v in defaults(kind).items() if k not in skip]
        function.__doc__ = (function.__doc__ or "") + "\n\n    Defaults (None): " + ", ".join(pairs) + "."


_document_defaults()
