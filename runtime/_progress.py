"""A one-line progress bar on stderr, for `map(progress=True)` and `actors run`.

It draws only when stderr is a terminal: redirected to a file or a pipe,
carriage returns would leave hundreds of bar fragments in it. Lines printed
while it is drawn go through `print_above`, which clears the bar, prints the
line and draws the bar again below it, so output and bar never share a line.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """A bar (with rate and ETA) for `total` steps, or a count if `total` is None.

    Not thread-safe: callers that step or print from several threads hold
    a lock around it.
    """

    def __init__(self, total: int | None, stream: TextIO | None = None) -> None:
        self.total = total
        self.done = 0
        self.started = time.monotonic()
        self._stream = sys.stderr if stream is None else stream
        self.visible = _isatty(self._stream)
        self._last = 0.0
        self._drawn = ""

    def step(self, count: int = 1) -> None:
        """`count` more tasks are done."""
        self.done += count
        now = time.monotonic()
        if now - self._last < 0.1 and self.done != self.total:
            return  # redraw at most ten times a second
        self._last = now
        self._draw()

    def print_above(self, text: str, out: TextIO | None = None) -> None:
        """Print `text` (a line, on stdout by default) above the bar."""
        out = sys.stdout if out is None else out
        if self.visible and self._drawn:
            self._stream.write("\r\033[K")  # erase the bar: the line goes where it was
            self._stream.flush()
        print(text, file=out, flush=True)
        if self.visible and self._drawn:
            self._draw()

    def _draw(self) -> None:
        if not self.visible:
            return
        rate = self.done / max(time.monotonic() - self.started, 1e-9)
        if self.total:
            width = 30
            filled = int(width * self.done / self.total)
            eta = (self.total - self.done) / rate if rate else 0.0
            line = f"[{'#' * filled}{'-' * (width - filled)}] {self.done}/{self.total} {rate:,.1f}/s ETA {eta:,.1f}s"
        else:
            line = f"{self.done} done {rate:,.1f}/s"
        self._drawn = line
        self._stream.write(f"\r\033[K{line}")
        self._stream.flush()

    def close(self) -> None:
        if self.visible and self._drawn:
            self._stream.write("\n")
            self._stream.flush()
        self._drawn = ""


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False
