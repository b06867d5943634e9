"""The synchronization primitives themselves: semaphore and barrier actors.

(Locks are plain records in the sync manager's table: see `_locks`.)

A waiter's ask is parked (its reply deferred) until it is granted or its
timeout, enforced by the primitive's actor itself, runs out. Because the
actor decides grant-or-expire in one place, a grant is never lost to a
waiter that gave up at the same moment, and requests are tracked by
request id, never by holder, so two requests of one holder stay distinct.
When an agent dies, the runtime tells every primitive (`holder_died`):
its locks and permits are released and barriers it belonged to break.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from actors._errors import BrokenBarrierError
from actors._parking import ParkingActor, answer, fail

__all__ = ["BarrierActor", "LockStatistics", "SemaphoreActor"]


@dataclass(frozen=True)
class LockStatistics:
    """A snapshot of one lock, as its actor saw it."""

    holder: str | None
    """Who holds the lock now (None: free)."""
    token: int
    """The fencing token of the current or last grant."""
    waiting: tuple[str, ...]
    """Holders queued for the lock, first come first."""


class SemaphoreActor(ParkingActor):
    """`permits` concurrent holders, FIFO; a holder may hold several permits."""

    def __init__(self, sem_id: str, permits: int) -> None:
        super().__init__()
        self._sem_id = sem_id
        self._permits = permits
        self._held: Counter[str] = Counter()

    def _free(self) -> int:
        return self._permits - sum(self._held.values())

    def acquire(self, holder: str, timeout: float | None, request_id: str) -> bool:
        if self._free() > 0 and not self._parked:
            self._held[holder] += 1
            return True
        if timeout is not None and timeout <= 0:
            return False
        self._parked.park(request_id, holder, timeout)
        return False  # not sent: the reply was deferred

    def release(self, holder: str, count: int = 1) -> bool:
        """Give back `count` permits of `holder`; a non-holder changes nothing."""
        if self._held[holder] < count or count < 1:
            return False
        self._held[holder] -= count
        self._held += Counter()  # drop zero counts
        self._grant_waiters()
        return True

    def _grant_waiters(self) -> None:
        while self._free() > 0 and (first := self._parked.first()) is not None:
            waiter = self._parked.take(first[0])
            assert waiter is not None  # first() just named it
            self._held[waiter.holder] += 1
            if not answer(waiter, True):
                self._held[waiter.holder] -= 1
                self._held += Counter()

    def holder_died(self, holder: str) -> bool:
        for request_id in self._parked.of(holder):
            self.cancel(request_id)
        held = self._held.pop(holder, 0)
        self._grant_waiters()
        return held > 0

    def available(self) -> int:
        return self._free()

    def holders(self) -> dict[str, int]:
        return dict(self._held)


class BarrierActor(ParkingActor):
    """Releases `count` waiting parties together, then re-arms for the next round.

    Parties seen in any round are its members: if one of them dies, the
    parties waiting now get `BrokenBarrierError` rather than their timeout.
    """

    def __init__(self, barrier_id: str, count: int) -> None:
        super().__init__()
        self._barrier_id = barrier_id
        self._count = count
        self._members: set[str] = set()
        self._rounds = 0

    def wait(self, party: str, timeout: float | None, request_id: str) -> bool:
        self._members.add(party)
        self._parked.park(request_id, party, timeout)
        if len(self._parked) >= self._count:
            self._rounds += 1
            while (first := self._parked.first()) is not None:
                waiter = self._parked.take(first[0])
                assert waiter is not None  # first() just named it
                answer(waiter, True)
        return False  # not sent: every reply was deferred

    def _break(self, why: str) -> None:
        error = BrokenBarrierError(f"barrier {self._barrier_id!r} broke: {why}")
        while (first := self._parked.first()) is not None:
            waiter = self._parked.take(first[0])
            assert waiter is not None  # first() just named it
            fail(waiter, error)

    def reset(self) -> None:
        """Break the current round (its waiters get `BrokenBarrierError`) and re-arm."""
        self._break("it was reset")

    def holder_died(self, party: str) -> bool:
        if party not in self._members:
            return False
        self._members.discard(party)
        broke = len(self._parked) > 0
        self._break(f"party {party!r} died")
        return broke

    def rounds(self) -> int:
        return self._rounds

    def waiting(self) -> int:
        return len(self._parked)
