"""Adaptive spinning: an asker polls for its reply briefly before it sleeps.

On a virtual machine an idle CPU halts, and waking it for a message costs
tens of microseconds: more than the rest of an ask. So a thread that has
just sent an ask first polls its socket without blocking for up to `SPIN`
seconds, yielding the CPU between polls (the agent answering may share
it), and only then sleeps in `read()`. A spin that finds nothing makes the
connection pass up its next 1, then 2, 4 and at most 8 chances to spin,
so asks that take long waste almost nothing.

Only askers spin. A receiving node's reader thread spinning for the next
request was measured too: it took the CPU from whoever was about to ask
and made asks slower, not faster.

``ACTORS_SPIN_US`` sets the budget in microseconds (default 200; 0 turns
spinning off). Agent processes inherit it from the runtime's environment.
"""

from __future__ import annotations

import os
import socket
import time

from runtime._wire import FrameReader, socket_view

__all__ = ["SPIN", "Spinner"]


def _budget() -> float:
    raw = os.environ.get("ACTORS_SPIN_US", "200")
    try:
        value = float(raw)
    except ValueError:
        msg = f"ACTORS_SPIN_US must be a number of microseconds, got {raw!r}"
        raise ValueError(msg) from None
    if value < 0:
        msg = f"ACTORS_SPIN_US must not be negative, got {raw!r}"
        raise ValueError(msg)
    return value * 1e-6


SPIN = _budget()
_MAX_SKIP = 8
_POLL_BYTES = 4096


class Spinner:
    """The spinning state of one connection (used by one reading thread at a time).

    Invariant: after a fruitless spin, the next `_skip` chances are passed
    up; a spin that finds a frame resets `_skip` to 0.
    """

    __slots__ = ("_skip", "_skipped")

    def __init__(self) -> None:
        self._skip = 0  # spins to leave out after the last fruitless one
        self._skipped = 0

    def read(self, fd: int, reader: FrameReader) -> None:
        """Poll `fd` for up to SPIN seconds; feed the first bytes that come to `reader`.

        The rest of a frame that started arriving follows at memory speed,
        so the caller's blocking read takes it from there, as it does after
        a timeout, EOF or error here (it then finds out which).
        """
        if not SPIN:
            return
        if self._skipped < self._skip:
            self._skipped += 1
            return
        view = socket_view(fd)
        try:
            end = time.perf_counter() + SPIN
            while True:
                try:
                    # Small: recv() allocates its whole buffer on every poll.
                    chunk = view.recv(_POLL_BYTES, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    if time.perf_counter() < end:
                        # The answering process may share our CPU (the
                        # scheduler likes to wake a task where its waker
                        # ran): let it run.
                        os.sched_yield()
                        continue
                    self._skip = min(self._skip * 2 or 1, _MAX_SKIP)
                    self._skipped = 0
                    return
                except OSError:
                    return
                if chunk:
                    reader.feed(chunk)
                    self._skip = 0
                return
        finally:
            view.detach()
