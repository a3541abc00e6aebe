"""The ``prunq`` command, from the wheel: the same CLI as the Rust binary, run by the extension."""

from __future__ import annotations

import os
import signal
import sys
from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs ``prunq`` on ``argv`` (default: this process's arguments); returns its exit status."""
    from . import _prunq
    from ._runtime import ort_library

    # The CLI looks for ONNX Runtime through $ORT_DYLIB_PATH first: this interpreter's package.
    library = ort_library()
    if library and not os.environ.get("ORT_DYLIB_PATH"):
        os.environ["ORT_DYLIB_PATH"] = library
    # Ctrl-C ends the command as it ends the binary (writes are atomic: no partial file).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    args = list(sys.argv[1:] if argv is None else argv)
    sys.stdout.flush()
    return _prunq.run_cli(["prunq", *args])


if __name__ == "__main__":
    sys.exit(main())
