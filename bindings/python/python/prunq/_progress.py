"""What a call tells its user while it runs: the lines the library says (the quality line,
notes, warnings) printed as the CLI prints them, stages as tqdm bars when tqdm is installed (not
terminal bars on stderr, which notebooks do not show), or every event to a callback."""

from __future__ import annotations

import sys
from typing import Any, Callable, Optional

#: ``callback(event, text, count)``: event ``start`` (text: the stage, count: its units),
#: ``advance`` (count: units done), ``finish``, or ``say`` (text: one line for the user).
ProgressCallback = Callable[[str, str, int], Any]


class Reporter:
    """The callable the core calls; ``progress`` is True (bars when tqdm is installed), False, or
    a callback; ``quiet`` silences the lines said."""

    def __init__(self, progress: bool | ProgressCallback = True, quiet: bool = False):
        self.callback: Optional[ProgressCallback] = progress if callable(progress) else None
        self.quiet = quiet
        self.bars = progress is True and self.callback is None
        self.bar: Any = None

    def __call__(self, event: str, text: str, count: int) -> None:
        if self.callback is not None:
            self.callback(event, text, count)
            return
        if event == "say":
            if not self.quiet:
                self._close()
                print(text, file=sys.stdout, flush=True)
        elif self.bars and not self.quiet:
            self._bar(event, text, count)

    def _bar(self, event: str, text: str, count: int) -> None:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return
        if event == "start":
            self._close()
            self.bar = tqdm(total=count or None, desc=text, leave=False)
        elif event == "advance" and self.bar is not None:
            self.bar.update(count)
        elif event == "finish":
            self._close()

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
