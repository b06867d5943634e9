"""Reading a process's connections to their end, and its snapshots in batches.

The registry counts the inbound connections of each peer process that are
still being read (`OpenConnections`): once a process has exited and its
count is zero, every frame it wrote has been delivered, so whatever asks
after that (a restarted agent's `restore`) is handled after all of them.

An agent whose store keeps snapshots in memory tells them on a connection
of their own (`runtime.local._host.snapshot_sender`), whose first frame is
a SNAPSHOT; its reader then runs `read_snapshots` instead of the usual loop.
(With a state file they are acknowledged, and read by `_journal` instead.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from runtime.wire._frames import FrameReader

__all__ = ["SNAPSHOT_LINGER", "OpenConnections", "read_snapshots"]

# How long the reader of an agent's snapshots waits between reads, so that
# a busy agent's snapshots arrive in batches (each superseding the last).
SNAPSHOT_LINGER = 0.001


class OpenConnections:
    """How many inbound connections of each peer pid are being read (any thread)."""

    def __init__(self) -> None:
        self._open: dict[int, int] = {}
        self._cond = threading.Condition(threading.Lock())

    @contextmanager
    def of(self, pid: int) -> Iterator[None]:
        """Count one connection of `pid` (if known: > 0) while the block reads it."""
        if pid <= 0:
            yield
            return
        with self._cond:
            self._open[pid] = self._open.get(pid, 0) + 1
        try:
            yield
        finally:
            with self._cond:
                left = self._open.pop(pid) - 1
                if left:
                    self._open[pid] = left
                else:
                    self._cond.notify_all()

    def wait_drained(self, pid: int, timeout: float | None) -> bool:
        """Wait until no connection of `pid` is being read; False at `timeout`."""
        with self._cond:
            return self._cond.wait_for(lambda: pid not in self._open, timeout)


def read_snapshots(reader: FrameReader, frame: memoryview, deliver: Callable[[memoryview], None]) -> None:
    """Deliver the snapshots of one agent's connection for them, in batches,
    until its end (`frame` is the first).

    Each snapshot supersedes the one before, so of those read at once only
    the last is delivered, and the reader lingers between reads while more
    gather: a busy agent costs the runtime's process one wake-up per batch,
    not one per message (its asker's, right then). Its agent sent each
    before its reply, so it is in the socket already.
    """
    while True:
        while reader.buffered():
            frame = reader.read()
        deliver(frame)
        del frame  # nothing kept of it while this thread lingers
        time.sleep(SNAPSHOT_LINGER)
        try:
            frame = reader.read()
        except (EOFError, OSError):
            return
