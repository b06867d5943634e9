"""A thread's tells to services of its own process, run later by the same thread.

Services that run on the sending thread when idle (see `runtime.local._inline`)
let a thread put its tells in their mailboxes without running them
(`defer_tells`), and run them later (`run_deferred`): the task router sends
a chunk to its agent first and writes the chunk's records while the agent
works. Each tell is in its actor's queue, in order, from the moment it is
sent, so whoever puts a message there later (a read of the records, from any
thread or process) is handled after it, whoever runs it.

A thread may also stop deferring without running what it deferred
(`carry_deferred`): the task router does so with a task's end, whose
records then get written while the next task's agent works. What is
carried is taken up by the thread's next `defer_tells` (and run at its next
`run_deferred`); if the thread does not come back within `CARRY` seconds,
the timer thread runs it. Meanwhile a message anyone else puts in one of
those mailboxes runs the queue ahead of it first (`InlineInbox.put`).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from actors._timers import call_later

__all__ = ["CARRY", "carry_deferred", "defer_tells", "deferring", "run_deferred"]

CARRY = 0.001  # seconds a thread's carried tells wait for it before the timer thread runs them


class _Carried:
    """The mailboxes holding tells one thread carried, and the timer watching them.

    Invariant (under `_lock`): while `_inboxes` is not empty, `_pending` is
    true: a timer call `_due(_timer, ...)` will come, by `_due_at`; calls
    of an older `_timer` number do nothing. `_taken` counts the times the
    thread took its carried tells back.
    """

    __slots__ = ("_due_at", "_inboxes", "_lock", "_pending", "_taken", "_timer")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inboxes: list[Any] = []
        self._pending = False
        self._due_at = 0.0
        self._timer = 0
        self._taken = 0

    def add(self, inboxes: list[Any]) -> None:
        due_at = time.monotonic() + CARRY
        with self._lock:
            held = self._inboxes
            held += [inbox for inbox in inboxes if inbox not in held]
            if self._pending and self._due_at <= due_at:
                return  # the pending timer comes soon enough (one per CARRY, not one per carry)
            self._pending = True
            self._timer += 1
            self._due_at = due_at
            timer, taken = self._timer, self._taken
        call_later(CARRY, self._due, timer, taken)

    def take(self) -> list[Any]:
        with self._lock:
            inboxes, self._inboxes = self._inboxes, []
            self._taken += 1
        return inboxes

    def _due(self, timer: int, taken: int) -> None:
        # In the timer thread. A thread that took its tells back since the
        # timer was set is busy sending more: look again later, rather than
        # take the GIL from it to run what it will run itself.
        with self._lock:
            if timer != self._timer:
                return  # a sooner one took over
            if not self._inboxes:
                self._pending = False
                return
            if self._taken != taken:
                taken = self._taken
                self._due_at = time.monotonic() + CARRY
                inboxes = None
            else:
                inboxes, self._inboxes = self._inboxes, []
                self._pending = False
        if inboxes is None:
            call_later(CARRY, self._due, timer, taken)
            return
        for inbox in inboxes:
            inbox._run_deferred()


class _Deferral(threading.local):
    inboxes: list[Any] | None = None  # while this thread defers: the mailboxes holding its deferred tells
    carried: _Carried | None = None  # made on this thread's first carry


_deferral = _Deferral()


def defer_tells() -> bool:
    """From now on, this thread's tells to services that run on the sending
    thread (see `runtime.local._inline`) are queued in order, not run,
    until `run_deferred`: so a thread can send what it waits for first and
    do that work meanwhile. What it carried (`carry_deferred`) and nobody
    ran yet is deferred again, to run with the rest. False if this thread
    defers already (then the outer caller runs them)."""
    if _deferral.inboxes is not None:
        return False
    carried = _deferral.carried
    _deferral.inboxes = carried.take() if carried is not None else []
    return True


def run_deferred(*, stop: bool = True) -> None:
    """Run the tells this thread deferred, here; with `stop`, stop deferring.

    Called before a deferring thread waits (`stop=False`), so nothing it
    deferred waits for its wait."""
    inboxes = _deferral.inboxes
    if inboxes is None:
        return
    _deferral.inboxes = None if stop else []
    for inbox in inboxes:
        inbox._run_deferred()


def carry_deferred() -> None:
    """Stop deferring, leaving what this thread deferred queued: its next
    `defer_tells` takes it up, or the timer thread runs it after `CARRY` s."""
    inboxes = _deferral.inboxes
    if inboxes is None:
        return
    _deferral.inboxes = None
    if inboxes:
        carried = _deferral.carried
        if carried is None:
            carried = _deferral.carried = _Carried()
        carried.add(inboxes)


def deferring() -> list[Any] | None:
    """The mailboxes holding this thread's deferred tells, if it defers."""
    return _deferral.inboxes
