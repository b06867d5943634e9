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

import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Any, NamedTuple

from pykka.messages import ProxyCall

from actors._base import ActorBase
from actors._errors import BrokenBarrierError

__all__ = ["BarrierActor", "LockActor", "LockStatistics", "SemaphoreActor"]


class _Waiter(NamedTuple):
    holder: str
    reply: Any
    timer: threading.Timer | None


class _Parked:
    """FIFO of parked requests, each with its deferred reply and timer.

    Timers run in their own threads; they only tell the actor to cancel the
    request, so every decision is taken in the actor's thread.
    """

    def __init__(self, actor: ActorBase) -> None:
        self._actor = actor
        self._queue: OrderedDict[str, _Waiter] = OrderedDict()

    def park(self, request_id: str, holder: str, timeout: float | None) -> None:
        reply = self._actor._defer_reply()
        timer = None
        if timeout is not None:
            timer = threading.Timer(timeout, self._expire, (request_id,))
            timer.daemon = True
            timer.start()
        self._queue[request_id] = _Waiter(holder, reply, timer)

    def _expire(self, request_id: str) -> None:
        try:
            self._actor.actor_ref.tell(ProxyCall(("cancel",), (request_id,), {}))
        except Exception:  # noqa: BLE001 - the actor has stopped
            pass

    def take(self, request_id: str) -> _Waiter | None:
        waiter = self._queue.pop(request_id, None)
        if waiter is not None and waiter.timer is not None:
            waiter.timer.cancel()
        return waiter

    def first(self) -> tuple[str, _Waiter] | None:
        return next(iter(self._queue.items()), None)

    def of(self, holder: str) -> list[str]:
        return [r for r, w in self._queue.items() if w.holder == holder]

    def holders(self) -> tuple[str, ...]:
        return tuple(w.holder for w in self._queue.values())

    def __len__(self) -> int:
        return len(self._queue)


def _answer(waiter: _Waiter, value: Any) -> bool:
    """Answer a parked request; False if its asker is already gone."""
    if waiter.reply is None:
        return True
    try:
        waiter.reply.set(value)
    except Exception:  # noqa: BLE001
        return False
    return True


def _fail(waiter: _Waiter, exc: BaseException) -> None:
    if waiter.reply is not None:
        try:
            waiter.reply.set_exception((type(exc), exc, None))
        except Exception:  # noqa: BLE001
            pass


@dataclass(frozen=True)
class LockStatistics:
    """A snapshot of one lock, as its actor saw it."""

    holder: str | None
    """Who holds the lock now (None: free)."""
    token: int
    """The fencing token of the current or last grant."""
    waiting: tuple[str, ...]
    """Holders queued for the lock, first come first."""


class _ParkingActor(ActorBase):
    """A primitive with parked requests; `cancel` answers one `expired`."""

    expired: Any = False  # what a withdrawn or timed-out request gets

    def __init__(self) -> None:
        super().__init__()
        self._parked = _Parked(self)

    def cancel(self, request_id: str) -> bool:
        """Withdraw a parked request (its timer ran out, or its asker gave up)."""
        waiter = self._parked.take(request_id)
        if waiter is None:
            return False
        _answer(waiter, self.expired)
        return True


class LockActor(_ParkingActor):
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
            if not _answer(waiter, token):  # the asker vanished: pass it on
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


class SemaphoreActor(_ParkingActor):
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
            if not _answer(waiter, True):
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


class BarrierActor(_ParkingActor):
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
                _answer(self._parked.take(first[0]), True)
        return False  # not sent: every reply was deferred

    def _break(self, why: str) -> None:
        error = BrokenBarrierError(f"barrier {self._barrier_id!r} broke: {why}")
        while (first := self._parked.first()) is not None:
            _fail(self._parked.take(first[0]), error)

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
