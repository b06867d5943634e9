"""Adaptive spinning: an asker polls for its reply briefly before it sleeps.

On a virtual machine an idle CPU halts, and waking it for a message costs
tens of microseconds: more than the rest of an ask. So a thread that has
just sent an ask first polls its socket without blocking for up to `SPIN`
seconds, yielding the CPU between polls (the agent answering may share
it), and only then sleeps in `read()`. A spin that finds nothing makes the
connection pass up its next 1, then 2, 4 and at most 8 chances to spin,
so asks that take long waste almost nothing.

An agent whose mailbox runs empty polls its sockets the same way, for up
to `IDLE_SPIN`, before it sleeps (see `_reactor`), and so does a reader
thread of the runtime's process after each message: the next request then
finds a CPU awake, and its sender doesn't pay for waking one. Only a
thread that handles the messages it reads may do this (the agent's own
thread; a runtime reader, which runs idle services inline: `_inline`); a
reader thread spinning beside the thread that handles its messages would
take the GIL from it. And only one thread of a process spins at a time
(`_SPIN_SLOT`): the runtime's process has many waiting at once (its reader
threads, a batch's workers, threads asking agents), and each spinner
takes the GIL from the threads doing the work they all wait for.

``ACTORS_SPIN_US`` sets the askers' budget in microseconds (default 200),
``ACTORS_IDLE_SPIN_US`` the idle agents' (default 50); 0 turns either off.
Agent processes inherit both from the runtime's environment.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable

from runtime.wire._frames import FrameReader, socket_view

__all__ = ["IDLE_SPIN", "SPIN", "Backoff", "Spinner", "check_environment"]

# What was wrong with the variables when this module was imported. Not
# raised at import: `actors --version` must print one line, not the
# traceback of an import; `Runtime()` and the command line raise it.
_ENV_ERRORS: list[str] = []


def _budget(variable: str, default: str) -> float:
    raw = os.environ.get(variable, default)
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also NaN
        _ENV_ERRORS.append(f"{variable} must be a number of microseconds (0 or more), got {raw!r}")
        value = float(default)
    return value * 1e-6


def check_environment() -> None:
    """ValueError naming a bad ACTORS_SPIN_US / ACTORS_IDLE_SPIN_US, if any."""
    if _ENV_ERRORS:
        raise ValueError("; ".join(_ENV_ERRORS))


SPIN = _budget("ACTORS_SPIN_US", "200")
IDLE_SPIN = _budget("ACTORS_IDLE_SPIN_US", "50")
_MAX_SKIP = 8
_SPIN_SLOT = threading.Lock()  # held by the one thread of this process spinning now
_POLL_BYTES = 4096


class Backoff:
    """When and how to spin: after a fruitless spin, the next 1, 2, 4, at
    most 8 chances are passed up.

    Invariant: a spin that finds something resets the skip count to 0.
    """

    __slots__ = ("_skip", "_skipped")

    def __init__(self) -> None:
        self._skip = 0  # spins to leave out after the last fruitless one
        self._skipped = 0

    def turn(self, budget: float) -> bool:
        """Whether to spin at this chance (never with no budget)."""
        if not budget:
            return False
        if self._skipped < self._skip:
            self._skipped += 1
            return False
        return True

    def spin(self, budget: float, probe: Callable[[], object]) -> bool:
        """Call `probe()` without sleeping until it returns true or `budget`
        seconds pass, yielding the CPU between calls; whether it did.
        Callers ask `turn()` first.

        One thread of a process spins at a time: a second would only take
        the GIL from the first, and from the threads doing the work both
        wait for. Another that finds the slot taken sleeps in its read at
        once (its backoff unchanged)."""
        if not _SPIN_SLOT.acquire(blocking=False):
            return False
        try:
            return self._spin(budget, probe)
        finally:
            _SPIN_SLOT.release()

    def _spin(self, budget: float, probe: Callable[[], object]) -> bool:
        end = time.perf_counter() + budget
        while not probe():
            if time.perf_counter() >= end:
                self._skip = min(self._skip * 2 or 1, _MAX_SKIP)
                self._skipped = 0
                return False
            # The process we wait for may share this CPU (the scheduler
            # likes to wake a task where its waker ran): let it run.
            os.sched_yield()
        self._skip = 0
        return True


class Spinner(Backoff):
    """The spinning state of one connection (used by one reading thread at a time).

    `budget` is how long one spin may last: `SPIN` for an asker's reply,
    `IDLE_SPIN` for a runtime reader thread's next request.
    """

    __slots__ = ("_budget",)

    def __init__(self, budget: float = SPIN) -> None:
        super().__init__()
        self._budget = budget

    def read(self, fd: int, reader: FrameReader) -> None:
        """Poll `fd` for up to the budget; feed the first bytes that come to `reader`.

        The rest of a frame that started arriving follows at memory speed,
        so the caller's blocking read takes it from there, as it does after
        EOF or an error here (it then finds out which).
        """
        if not self.turn(self._budget):
            return
        view = socket_view(fd)

        def probe() -> bool:
            try:
                # Small: recv() allocates its whole buffer on every poll.
                chunk = view.recv(_POLL_BYTES, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return False
            except OSError:
                return True  # the blocking read reports it
            if chunk:
                reader.feed(chunk)
            return True  # bytes, or EOF for the blocking read to report

        try:
            self.spin(self._budget, probe)
        finally:
            view.detach()
