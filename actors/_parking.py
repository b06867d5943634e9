"""Parked requests: asks answered later, by the actor, or withdrawn on expiry.

A primitive (lock, semaphore, barrier) or a stream parks an ask it can't
answer yet: its reply is deferred and, with a timeout, a timer tells the
actor to `cancel` it. Every decision (grant, chunk or expiry) is taken in
the actor's own thread, so an answer is never lost to a waiter that gave
up at the same moment.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, NamedTuple

from pykka.messages import ProxyCall

from actors._base import ActorBase
from actors._timers import TimerHandle, call_later

__all__ = ["Parked", "ParkingActor", "Waiter", "answer", "fail"]


class Waiter(NamedTuple):
    holder: str
    reply: Any
    timer: TimerHandle | None


class Parked:
    """FIFO of parked requests, each with its deferred reply and timer.

    Timers run in the process's timer thread; they only tell the actor to
    cancel the request, so every decision is taken in the actor's thread.
    """

    def __init__(self, actor: ActorBase) -> None:
        self._actor = actor
        self._queue: OrderedDict[str, Waiter] = OrderedDict()

    def park(self, request_id: str, holder: str, timeout: float | None) -> None:
        reply = self._actor._defer_reply()
        timer = None
        if timeout is not None:
            timer = call_later(timeout, self._expire, request_id)
        self._queue[request_id] = Waiter(holder, reply, timer)

    def _expire(self, request_id: str) -> None:
        try:
            self._actor.actor_ref.tell(ProxyCall(("cancel",), (request_id,), {}))
        except Exception:  # noqa: BLE001 - the actor has stopped
            pass

    def take(self, request_id: str) -> Waiter | None:
        waiter = self._queue.pop(request_id, None)
        if waiter is not None and waiter.timer is not None:
            waiter.timer.cancel()
        return waiter

    def first(self) -> tuple[str, Waiter] | None:
        return next(iter(self._queue.items()), None)

    def of(self, holder: str) -> list[str]:
        return [r for r, w in self._queue.items() if w.holder == holder]

    def holders(self) -> tuple[str, ...]:
        return tuple(w.holder for w in self._queue.values())

    def __len__(self) -> int:
        return len(self._queue)


def answer(waiter: Waiter, value: Any) -> bool:
    """Answer a parked request; False if its asker is already gone."""
    if waiter.reply is None:
        return True
    try:
        waiter.reply.set(value)
    except Exception:  # noqa: BLE001
        return False
    return True


def fail(waiter: Waiter, exc: BaseException) -> None:
    if waiter.reply is not None:
        try:
            waiter.reply.set_exception((type(exc), exc, None))
        except Exception:  # noqa: BLE001
            pass


class ParkingActor(ActorBase):
    """A primitive with parked requests; `cancel` answers one `expired`.

    Its handlers only decide and reply (now, or later through a parked
    reply), so a host may run them inline (`runs_inline`).
    """

    runs_inline = True

    expired: Any = False  # what a withdrawn or timed-out request gets

    def __init__(self) -> None:
        super().__init__()
        self._parked = Parked(self)

    def cancel(self, request_id: str) -> bool:
        """Withdraw a parked request (its timer ran out, or its asker gave up)."""
        waiter = self._parked.take(request_id)
        if waiter is None:
            return False
        answer(waiter, self.expired)
        return True
