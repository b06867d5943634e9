"""Adaptive spinning: an asker polls for its reply briefly before it sleeps.

On a virtual machine an idle CPU halts, and waking it for a message costs
tens of microseconds: more than the rest of an ask. So a thread that has
just sent an ask first polls its socket without blocking for up to `SPIN`
seconds, yielding the CPU between polls (the agent answering may share
it), and only then sleeps in `read()`. A spin that finds nothing makes the
connection pass up its next 1, then 2, 4 and at most 8 chances to spin,
so asks that take long waste almost nothing.

An agent whose mailbox runs empty polls its sockets the same way, for up
to `IDLE_SPIN`, before it sleeps (see `_reactor`): the next request then
finds a CPU awake, and its sender doesn't pay for waking one. Only a
thread that reads and handles messages itself may do this; a reader
thread spinning beside the actor's thread takes the GIL from it.

``ACTORS_SPIN_US`` sets the askers' budget in microseconds (default 200),
``ACTORS_IDLE_SPIN_US`` the idle agents' (default 50); 0 turns either off.
Agent processes inherit both from the runtime's environment.
"""

from __future__ import annotations

import os
import socket
import time

from runtime._wire import FrameReader, socket_view

__all__ = ["IDLE_SPIN", "SPIN", "Backoff", "Spinner"]


def _budget(variable: str, default: str) -> float:
    raw = os.environ.get(variable, default)
    try:
        value = float(raw)
    except ValueError:
        msg = f"{variable} must be a number of microseconds, got {raw!r}"
        raise ValueError(msg) from None
    if value < 0:
        msg = f"{variable} must not be negative, got {raw!r}"
        raise ValueError(msg)
    return value * 1e-6


SPIN = _budget("ACTORS_SPIN_US", "200")
IDLE_SPIN = _budget("ACTORS_IDLE_SPIN_US", "50")
_MAX_SKIP = 8
_POLL_BYTES = 4096


class Backoff:
    """When to spin: after a fruitless spin, pass up the next 1, 2, 4, at most 8 chances.

    Invariant: a spin that finds something resets the skip count to 0.
    """

    __slots__ = ("_skip", "_skipped")

    def __init__(self) -> None:
        self._skip = 0  # spins to leave out after the last fruitless one
        self._skipped = 0

    def turn(self) -> bool:
        """Whether to spin at this chance."""
        if self._skipped < self._skip:
            self._skipped += 1
            return False
        return True

    def outcome(self, found: bool) -> None:
        """Record whether the spin found something."""
        if found:
            self._skip = 0
        else:
            self._skip = min(self._skip * 2 or 1, _MAX_SKIP)
            self._skipped = 0


class Spinner(Backoff):
    """The spinning state of one connection (used by one reading thread at a time).

    `budget` is how long one spin may last: `SPIN` for an asker's reply.
    """

    __slots__ = ("_budget",)

    def __init__(self, budget: float = SPIN) -> None:
        super().__init__()
        self._budget = budget

    def read(self, fd: int, reader: FrameReader) -> None:
        """Poll `fd` for up to the budget; feed the first bytes that come to `reader`.

        The rest of a frame that started arriving follows at memory speed,
        so the caller's blocking read takes it from there, as it does after
        a timeout, EOF or error here (it then finds out which).
        """
        if not self._budget or not self.turn():
            return
        view = socket_view(fd)
        try:
            end = time.perf_counter() + self._budget
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
                    self.outcome(found=False)
                    return
                except OSError:
                    return
                if chunk:
                    reader.feed(chunk)
                    self.outcome(found=True)
                return
        finally:
            view.detach()
