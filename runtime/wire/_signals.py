"""Blocking waits of the main thread look at signals every `SIGNAL_CHECK` s.

A signal sent to a process (Ctrl-C, SIGTERM, `kill`) is taken by one of its
threads, the one the kernel picks: normally the main thread, but not
always (not if that thread has another signal pending, or blocks this
one). CPython runs every handler in the main thread, at its next bytecode,
and only a signal taken by the main thread itself ends a system call it is
blocked in. So a Ctrl-C taken by another thread reached a script waiting
in `map` over hour-long tasks only when the wait ended for another reason:
an hour later. So every long wait in this package's hot paths (a blocking
ask, an in-process ask, `map`'s results; with no deadline, or one further
than `SIGNAL_CHECK`) blocks the main thread at most `SIGNAL_CHECK` s at a
time, then blocks again; other threads get no signals and wait in one call.
"""

from __future__ import annotations

import os
import threading

__all__ = ["SIGNAL_CHECK", "slice_for_signals"]

SIGNAL_CHECK = 0.2  # seconds: how late a signal another thread took may be seen

_main = threading.main_thread().ident


def slice_for_signals(timeout: float | None) -> float | None:
    """How long this thread may block in one call out of `timeout` (None:
    no deadline): all of it, except in the main thread, where at most
    `SIGNAL_CHECK` (the caller waits again if it is not done)."""
    if threading.get_ident() != _main or (timeout is not None and timeout <= SIGNAL_CHECK):
        return timeout
    return SIGNAL_CHECK


def _after_fork() -> None:
    global _main
    _main = threading.get_ident()  # the forking thread is the child's only, and main, thread


os.register_at_fork(after_in_child=_after_fork)
