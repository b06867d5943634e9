"""Locks as actors: each named lock is its own actor with a FIFO of waiters.

A waiter's ask is parked (its reply deferred) until the lock is granted or
its timeout, enforced by the lock actor itself, runs out. Because the actor
decides grant-or-expire in one place, a grant is never lost to a waiter
that gave up at the same moment.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from pykka.messages import ProxyCall

from actors._base import ActorBase
from actors._client import ServiceClient
from actors._context import current_agent_id
from actors._errors import AskTimeout, LockTimeout

__all__ = ["LockActor", "LockClient", "LockStatistics", "SyncClient", "SyncManager"]

# Extra time a caller waits beyond the lock's own timeout, so that the lock
# actor's answer (grant or expiry) is the one that counts.
_GRACE = 5.0


@dataclass(frozen=True)
class LockStatistics:
    """A snapshot of one lock, as its actor saw it."""

    holder: str | None
    """Who holds the lock now (None: free)."""
    token: int
    """The fencing token of the current or last grant."""
    waiting: tuple[str, ...]
    """Holders queued for the lock, first come first."""


class _Waiter(NamedTuple):
    holder: str
    reply: Any
    timer: threading.Timer | None


class LockActor(ActorBase):
    """One named lock. Grants carry a fencing token that only ever grows."""

    def __init__(self, lock_id: str) -> None:
        super().__init__()
        self._lock_id = lock_id
        self._holder: str | None = None
        self._request: str | None = None
        self._token = 0
        self._waiters: OrderedDict[str, _Waiter] = OrderedDict()

    def acquire(self, holder: str, timeout: float | None, request_id: str) -> int:
        """Grant now (returns the token), or park the caller; 0 on timeout."""
        if self._holder is None and not self._waiters:
            return self._grant(holder, request_id)
        if self._holder == holder:
            return self._token  # already ours: acquiring again is a no-op
        if timeout is not None and timeout <= 0:
            return 0
        reply = self._defer_reply()
        timer = None
        if timeout is not None:
            timer = threading.Timer(timeout, self._expire_later, (request_id,))
            timer.daemon = True
            timer.start()
        self._waiters[request_id] = _Waiter(holder, reply, timer)
        return 0  # not sent: the reply was deferred

    def _expire_later(self, request_id: str) -> None:
        # Runs in the timer's thread: hand the decision to the actor's thread.
        try:
            self.actor_ref.tell(ProxyCall(("cancel",), (request_id,), {}))
        except Exception:  # noqa: BLE001 - the lock actor has stopped
            pass

    def cancel(self, request_id: str) -> bool:
        """Withdraw a request: a waiter gets False, a grant is released."""
        waiter = self._waiters.pop(request_id, None)
        if waiter is not None:
            if waiter.timer is not None:
                waiter.timer.cancel()
            if waiter.reply is not None:
                waiter.reply.set(0)
            return True
        if self._request == request_id:
            return self.release(self._holder)
        return False

    def release(self, holder: str | None) -> bool:
        """Release if `holder` holds the lock; anyone else changes nothing."""
        if holder is None or holder != self._holder:
            return False
        self._holder = self._request = None
        while self._waiters and self._holder is None:
            request_id, waiter = self._waiters.popitem(last=False)
            if waiter.timer is not None:
                waiter.timer.cancel()
            token = self._grant(waiter.holder, request_id)
            if waiter.reply is not None:
                try:
                    waiter.reply.set(token)
                except Exception:  # noqa: BLE001 - the asker vanished: pass it on
                    self._holder = self._request = None
        return True

    def release_all_of(self, holder: str) -> bool:
        """Forget `holder` entirely: its grant and its queued requests."""
        for request_id in [r for r, w in self._waiters.items() if w.holder == holder]:
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
        return LockStatistics(self._holder, self._token, tuple(w.holder for w in self._waiters.values()))


class LockClient(ServiceClient):
    """A lock from any process; `with lock:` raises `LockTimeout` on failure."""

    def __init__(self, ref: Any, lock_id: str = "") -> None:
        super().__init__(ref)
        self.lock_id = lock_id
        self.last_token = 0

    def __getstate__(self) -> Any:
        return (self._ref, self.lock_id)

    def __setstate__(self, state: Any) -> None:
        self._ref, self.lock_id = state
        self.last_token = 0

    def acquire(self, holder: str | None = None, timeout: float | None = 30.0) -> bool:
        holder = holder or current_agent_id()
        request_id = uuid.uuid4().hex
        wait = None if timeout is None else timeout + _GRACE
        try:
            token = self._call("acquire", holder, timeout, request_id, timeout=wait)
        except AskTimeout:
            self._cast("cancel", request_id)  # never leak a late grant
            return False
        self.last_token = token
        return token > 0

    def release(self, holder: str | None = None) -> bool:
        return self._call("release", holder or current_agent_id())

    def holder(self) -> str | None:
        return self._call("holder")

    def token(self) -> int:
        """The fencing token of the current (or last) grant."""
        return self._call("token")

    def statistics(self) -> LockStatistics:
        return self._call("statistics")

    def __enter__(self) -> LockClient:
        if not self.acquire():
            msg = f"could not acquire lock {self.lock_id!r} within 30 s"
            raise LockTimeout(msg)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class SyncManager(ActorBase):
    """Creates each named primitive on first use and hands out its ref.

    `spawn` starts a service actor and returns a ref that works from any
    process: `spawn(actor_cls, name, *args)`.
    """

    def __init__(self, spawn: Callable[..., Any]) -> None:
        super().__init__()
        self._spawn = spawn
        self._locks: dict[str, Any] = {}
        self._seq = itertools.count()

    def get_lock(self, lock_id: str) -> Any:
        if not isinstance(lock_id, str):
            msg = f"lock ids must be str, got {type(lock_id).__name__}"
            raise TypeError(msg)
        if lock_id not in self._locks:
            self._locks[lock_id] = self._spawn(LockActor, f"_lock:{lock_id}", lock_id)
        return self._locks[lock_id]

    def holder_died(self, holder: str) -> list[str]:
        """Release every lock `holder` held; returns the ids reclaimed."""
        reclaimed = []
        for lock_id, ref in self._locks.items():
            if ref.ask(ProxyCall(("release_all_of",), (holder,), {}), timeout=10):
                reclaimed.append(lock_id)
        return reclaimed


class SyncClient(ServiceClient):
    """`rt.sync` / `self.ctx.sync`: named locks from any process."""

    def get_lock(self, lock_id: str) -> LockClient:
        return LockClient(self._call("get_lock", lock_id), lock_id)
