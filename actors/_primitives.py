"""The synchronization primitives themselves: lock, semaphore, barrier actors.

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

__all__ = ["BarrierActor", "LockActor", "LockStatistics", "SemaphoreActor"]


@dataclass(frozen=True)
class LockStatistics:
    """A snapshot of one lock, as its actor saw it."""

    holder: str | None
    """Who holds the lock now (None: free)."""
    token: int
    """The fencing token of the current or last grant."""
    waiting: tuple[str, ...]
    """Holders queued for the lock, first come first."""


class LockActor(ParkingActor):
    """One named lock. Grants carry a fencing token that only ever grows."""

    expired = 0  # a token of 0: not granted

    def __init__(self, lock_id: str, token: int = 0) -> None:
        super().__init__()
        self._lock_id = lock_id
        self._holder: str | None = None
        self._request: str | None = None
        self._token = token  # a lock made again after retiring continues its tokens

    def retire(self) -> int | None:
        """Stop now if free and nobody waits; the last token, or None if busy.

        Decided and done in one message: anything queued behind it is
        answered `ActorDeadError` (its sender asks the manager again).
        """
        if self._holder is not None or self._parked:
            return None
        self._stop()
        return self._token

    def acquire(self, holder: str, timeout: float | None, request_id: str) -> int:
        """Grant now (returns the token), or park the caller; 0 on timeout."""
        if self._holder is None and not self._parked:
            return self._grant(holder, request_id)
        if self._holder == holder:
            return self._token  # already ours: acquiring again is a no-op
        if timeout is not None and timeout <= 0:
            return 0
        self._parked.park(request_id, holder, timeout)
        return 0  # not sent: the reply was deferred

    def cancel(self, request_id: str) -> bool:
        """Withdraw a request: a waiter gets 0 (False), a grant is released."""
        if super().cancel(request_id):
            return True
        if self._request == request_id:
            return self.release(self._holder)
        return False

    def release(self, holder: str | None) -> bool:
        """Release if `holder` holds the lock; anyone else changes nothing."""
        if holder is None or holder != self._holder:
            return False
        self._holder = self._request = None
        while self._holder is None and (first := self._parked.first()) is not None:
            request_id, _ = first
            waiter = self._parked.take(request_id)
            token = self._grant(waiter.holder, request_id)
            if not answer(waiter, token):  # the asker vanished: pass it on
                self._holder = self._request = None
        return True

    def holder_died(self, holder: str) -> bool:
        """Forget `holder`: its grant and its queued requests. True if it held the lock."""
        for request_id in self._parked.of(holder):
            self.cancel(request_id)
        return self.release(holder)

    def _grant(self, holder: str, request_id: str) -> int:
        self._holder, self._request = holder, request_id
        self._token += 1
        return self._token

    def holder(self) -> str | None:
        return self._holder

    def token(self) -> int:
        return self._token

    def statistics(self) -> LockStatistics:
        return LockStatistics(self._holder, self._token, self._parked.holders())


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
                answer(self._parked.take(first[0]), True)
        return False  # not sent: every reply was deferred

    def _break(self, why: str) -> None:
        error = BrokenBarrierError(f"barrier {self._barrier_id!r} broke: {why}")
        while (first := self._parked.first()) is not None:
            fail(self._parked.take(first[0]), error)

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
