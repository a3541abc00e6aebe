"""What a call hands back: the library's typed report as plain Python values, and the model."""

from __future__ import annotations

import json
from typing import Any, Optional

from . import _prunq


class Result:
    """The report of one call (``quantize``, ``prune``, ``apply``, ``optimize``, ``compare``,
    ``evaluate``, ``bench``) as the library made it — the same fields as ``--report R.json`` —
    with the model when no output path was given.

    ``result.report`` is the report as a dict (its keys also read as attributes:
    ``result.comparison``); ``result.model`` the written or returned model as an
    ``onnx.ModelProto`` (needs the ``onnx`` package); ``result.model_bytes`` its encoded bytes
    when it was returned rather than written; ``result.output`` the path written."""

    def __init__(self, kind: str, report: Any, model_bytes: Optional[bytes] = None, output: Optional[str] = None):
        self.kind = kind
        self.report = report
        self.model_bytes = model_bytes
        self.output = output

    @property
    def model(self) -> Any:
        """The model as an ``onnx.ModelProto``: decoded from the returned bytes, else read from the
        output (None for ``convert``, whose model is LiteRT: ``model_bytes`` or the file)."""
        import onnx

        if self.kind == "convert":
            return None
        if self.model_bytes is not None:
            return onnx.ModelProto.FromString(self.model_bytes)
        if self.output is not None:
            return onnx.load(self.output)
        return None

    def to_dict(self) -> Any:
        """The report as plain Python values (a copy)."""
        return json.loads(json.dumps(self.report))

    def to_json(self, indent: Optional[int] = 2) -> str:
        """The report as JSON, as ``--report R.json`` writes it."""
        return json.dumps(self.report, indent=indent)

    def _repr_html_(self) -> str:
        """The HTML report (``prunq report``'s page) for Jupyter."""
        if not isinstance(self.report, dict):
            return "<pre>" + self.to_json().replace("&", "&amp;").replace("<", "&lt;") + "</pre>"
        return _prunq.render_html(json.dumps(self.report))

    def __getattr__(self, name: str) -> Any:
        report = self.__dict__.get("report")
        if isinstance(report, dict) and name in report:
            return report[name]
        raise AttributeError(f"{type(self).__name__} of {self.__dict__.get('kind')} has no field {name!r}")

    def __repr__(self) -> str:
        where = f" → {self.output}" if self.output else (" (model returned)" if self.model_bytes else "")
        return f"<prunq.Result of {self.kind}{where}>"
