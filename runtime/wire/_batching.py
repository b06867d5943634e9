"""Batching of tells: frames that follow each other closely share one write.

A tell sent within `BURST` seconds of the previous tell on its connection,
with no request in between, is queued instead of written (as Erlang's
``delay_send``). A lone tell, or one that follows an ask, goes at once. Queued tells go
out, in order and ahead of anything sent after them, when the first of
these happens:

- the queue reaches `BATCH_BYTES` (written by the sending thread, which
  blocks if the receiver lags: that is the backpressure);
- the sending thread sends anything else (an ask, a lookup) or waits for a
  reply, so a request never overtakes the tells sent before it;
- the sending thread's actor goes idle (its mailbox is empty);
- `LINGER` seconds pass (the flusher thread below, for threads that block
  in ways this package can't see, such as `time.sleep`).

The flusher never blocks on a receiver: it writes what the socket takes and
tries the rest later, so one stuck receiver can't hold up the others.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from typing import Protocol

__all__ = ["BATCH_BYTES", "BURST", "LINGER", "flush_all", "flush_thread", "queued", "retry_later"]

BURST = 100e-6  # a tell this soon after the previous one joins a batch
BATCH_BYTES = 8192  # small enough that the receiver works while we fill the next
LINGER = 0.0005  # the longest a queued tell waits when its sender goes quiet
_MAX_RETRY = 0.02  # back-off cap while a receiver's socket stays full


class Batched(Protocol):
    """What the flusher needs of a connection with queued tells."""

    def flush(self) -> None:
        """Write every queued frame (in the owning thread; may block)."""

    def try_flush(self) -> bool:
        """Write what the socket takes now; True if nothing is left queued."""


_local = threading.local()  # .dirty: connections this thread left with queued tells


def queued(channel: Batched) -> None:
    """Note that `channel` (owned by this thread) just got its first queued tell."""
    dirty = _local.__dict__.get("dirty")
    if dirty is None:
        dirty = _local.dirty = set()
    dirty.add(channel)  # a set: a thread that never flushes keeps one entry per channel
    _FLUSHER.schedule(channel)


def retry_later(pending: Batched) -> None:
    """Have the flusher write what `pending` holds once its socket takes it."""
    _FLUSHER.schedule(pending)


def flush_thread(sending: Batched | None = None) -> None:
    """Write this thread's queued tells now (before it blocks or asks).

    `sending` is left alone: it is about to write its queue together with
    the frame being sent, in one system call, so the receiver reads both at
    once rather than waking for the tells and again for the request.
    """
    dirty = _local.__dict__.get("dirty")
    while dirty:
        channel = dirty.pop()
        if channel is not sending:
            channel.flush()


def flush_all() -> None:
    """Write every queued tell of this process, as far as sockets take them
    (at exit, and when a node closes)."""
    _FLUSHER.drain()


class _Flusher:
    """One daemon thread per process, writing tails left by quiet senders.

    It is woken only from its sleep on the condition; while it is between
    passes new work just joins the list, so a busy sender costs no wake-up
    per batch. New work goes out within LINGER even while a stuck receiver
    is retried less and less often.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._waiting: list[Batched] = []
        self._thread: threading.Thread | None = None
        self._asleep = False

    def schedule(self, channel: Batched) -> None:
        with self._cond:
            self._waiting.append(channel)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tell-flusher", daemon=True)
                self._thread.start()
            elif self._asleep:
                self._asleep = False
                self._cond.notify()

    def _take(self) -> list[Batched]:
        with self._cond:
            taken, self._waiting = self._waiting, []
        return taken

    def _run(self) -> None:
        stuck: list[Batched] = []  # receivers whose socket was full last time
        pause = LINGER  # how long stuck ones wait for their next try
        while True:
            with self._cond:
                while not self._waiting and not stuck:
                    self._asleep = True
                    self._cond.wait()
                if not self._waiting:  # only stuck ones: new work wakes us early
                    self._asleep = True
                    self._cond.wait(pause)
                self._asleep = False
                fresh = bool(self._waiting)
            if fresh:
                time.sleep(LINGER)  # let the sender's burst finish first
            stuck = [channel for channel in self._take() + stuck if not channel.try_flush()]
            pause = min(pause * 2, _MAX_RETRY) if stuck else LINGER

    def drain(self) -> None:
        stuck = [channel for channel in self._take() if not channel.try_flush()]
        if stuck:
            with self._cond:
                self._waiting.extend(stuck)


_FLUSHER = _Flusher()
atexit.register(flush_all)


def _forget_in_child() -> None:
    # A forked child has neither the parent's flusher thread nor its sockets.
    global _FLUSHER, _local
    _FLUSHER = _Flusher()
    _local = threading.local()


os.register_at_fork(after_in_child=_forget_in_child)
