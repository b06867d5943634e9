"""One timer thread per process, for every delayed call an actor asks for.

`threading.Timer` starts a thread per call: a parked lock request with a
timeout, or the state store's 2 ms window gathering STATE_CHANGED events,
paid for a thread's start (and its stack) each time. Here one daemon
thread, started on first use, sleeps until the earliest due call. Calls
are meant to be short (they tell an actor something): a call that raises
is logged and the others still run.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["TimerHandle", "call_later"]

logger = logging.getLogger("actors")


class TimerHandle:
    """A pending call; `cancel()` it to have it not run (if it hasn't yet)."""

    __slots__ = ("args", "cancelled", "fn")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class _TimerThread:
    """A heap of (due, sequence, handle); its thread runs each when due.

    Invariant: the thread waits on `_cond` no longer than until the
    earliest due entry; `call_later` notifies it when it adds an earlier one.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._cond = threading.Condition(threading.Lock())
        self._sequence = itertools.count()  # ties run in the order they were asked
        self._thread: threading.Thread | None = None
        self._compact_at = 1024  # heap size at which cancelled entries are swept out

    def call_later(self, delay: float, fn: Callable[..., Any], args: tuple[Any, ...]) -> TimerHandle:
        handle = TimerHandle(fn, args)
        due = time.monotonic() + max(delay, 0.0)
        with self._cond:
            if len(self._heap) >= self._compact_at:
                # Cancelled calls (a lock granted long before its timeout)
                # would otherwise stay until due: sweep them out, at a size
                # that doubles, so the cost per call stays constant.
                self._heap = [entry for entry in self._heap if not entry[2].cancelled]
                heapq.heapify(self._heap)
                self._compact_at = max(1024, 2 * len(self._heap))
            heapq.heappush(self._heap, (due, next(self._sequence), handle))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="actor-timers", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is handle:
                self._cond.notify()  # the new call is the earliest: wake up sooner
        return handle

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        _due, _seq, handle = heapq.heappop(self._heap)
                        break
                    self._cond.wait(self._heap[0][0] - now if self._heap else None)
            if handle.cancelled:
                continue
            try:
                handle.fn(*handle.args)
            except Exception:
                logger.exception("a timed call failed: %r", handle.fn)


_timers = _TimerThread()


def _after_fork() -> None:
    # A forked child has no timer thread (only the forking thread survives).
    global _timers
    _timers = _TimerThread()


os.register_at_fork(after_in_child=_after_fork)


def call_later(delay: float, fn: Callable[..., Any], *args: Any) -> TimerHandle:
    """Run `fn(*args)` in this process's timer thread after `delay` seconds."""
    return _timers.call_later(delay, fn, args)
