"""Every named lock of a runtime, as plain objects in one actor's table.

A lock used to be an actor of its own; with one lock per task
(`task:{id}`), that cost an actor (and its thread) per task. Here a lock
is a small record in the table of the sync manager (see `_sync`): it exists
while it is held or waited for, and is dropped the moment it is free, so
millions of task locks leave nothing behind.

Fencing tokens come from one counter for the whole table: each grant gets
the next number, so the tokens of every lock only grow, whether or not its
record was dropped in between.

Waiting is parking (as in `_parking`): a request that can't be granted
keeps a callback, and the actor's own thread decides grant or expiry, so a
grant is never lost to a waiter that gave up at the same moment. Requests
are tracked by request id, never by holder. A *group* request (several
locks for one holder, e.g. every task of a chunk) takes its locks one at a
time in sorted order, so two groups can never wait on each other.

Used only from the owning actor's thread; no locking inside.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from pykka.messages import ProxyCall

from actors._timers import TimerHandle, call_later

__all__ = ["LockTable"]

# grant(token) -> False if the asker is gone (the lock goes on to the next)
Grant = Callable[[int], bool]


class _Waiter:
    __slots__ = ("expire", "grant", "holder", "timer")

    def __init__(self, holder: str, grant: Grant, expire: Callable[[], object], timer: TimerHandle | None) -> None:
        self.holder, self.grant, self.expire, self.timer = holder, grant, expire, timer


class _Lock:
    __slots__ = ("holder", "queue", "request", "token")

    def __init__(self) -> None:
        self.holder: str | None = None
        self.request: str | None = None  # the request id of the current grant
        self.token = 0
        self.queue: OrderedDict[str, _Waiter] = OrderedDict()


class _Group:
    """Several locks for one holder, taken one after another in sorted order."""

    __slots__ = ("done", "held", "holder", "ids", "next", "request_id", "timer")

    def __init__(self, request_id: str, holder: str, ids: list[str], done: Callable[[bool], None]) -> None:
        self.request_id, self.holder, self.ids, self.done = request_id, holder, ids, done
        self.next = 0  # index in ids of the lock asked for next
        self.held: list[str] = []
        self.timer: TimerHandle | None = None


class LockTable:
    """The locks of one actor (`actor`'s `cancel_lock` handles expiries).

    Statistics: `len(table)` locks held or waited for now, `retired` records
    dropped because they went free.
    """

    def __init__(self, actor: Any) -> None:
        self._actor = actor
        self._locks: dict[str, _Lock] = {}
        self._where: dict[str, str] = {}  # request id (parked or granted) -> lock id
        self._groups: dict[str, _Group] = {}  # group request id -> group still acquiring
        self._token = 0
        self.retired = 0

    def __len__(self) -> int:
        return len(self._locks)

    # -- one lock ------------------------------------------------------------

    def acquire(
        self, lock_id: str, holder: str, request_id: str, timeout: float | None,
        grant: Grant, expire: Callable[[], object],
    ) -> int:
        """The token if granted now (or already held by `holder`); else 0,
        and, unless `timeout` <= 0, the request parked (`grant` or `expire`
        is called later, once)."""
        lock = self._locks.get(lock_id)
        if lock is None:
            lock = self._locks[lock_id] = _Lock()
        if lock.holder is None and not lock.queue:
            return self._grant(lock_id, lock, holder, request_id)
        if lock.holder == holder:
            return lock.token  # already ours: acquiring again is a no-op
        if timeout is not None and timeout <= 0:
            self._drop_if_free(lock_id, lock)
            return 0
        timer = None if timeout is None else call_later(timeout, self._expire, request_id)
        lock.queue[request_id] = _Waiter(holder, grant, expire, timer)
        self._where[request_id] = lock_id
        return 0

    def _expire(self, request_id: str) -> None:
        # The timer thread: only tells the actor; it decides in its own thread.
        try:
            self._actor.actor_ref.tell(ProxyCall(("cancel_lock",), (request_id,), {}))
        except Exception:  # noqa: BLE001 - the actor has stopped
            pass

    def _grant(self, lock_id: str, lock: _Lock, holder: str, request_id: str) -> int:
        self._token += 1
        lock.holder, lock.request, lock.token = holder, request_id, self._token
        self._where[request_id] = lock_id
        return self._token

    def release(self, lock_id: str, holder: str | None) -> bool:
        """Release if `holder` holds the lock (then grant the next waiter)."""
        lock = self._locks.get(lock_id)
        if lock is None or holder is None or holder != lock.holder:
            return False
        assert lock.request is not None  # set and cleared with the holder, which is set
        self._where.pop(lock.request, None)
        lock.holder = lock.request = None
        while lock.holder is None and lock.queue:
            request_id, waiter = lock.queue.popitem(last=False)
            if waiter.timer is not None:
                waiter.timer.cancel()
            token = self._grant(lock_id, lock, waiter.holder, request_id)
            if not waiter.grant(token):  # the asker vanished: pass it on
                self._where.pop(request_id, None)
                lock.holder = lock.request = None
        self._drop_if_free(lock_id, lock)
        return True

    def _drop_if_free(self, lock_id: str, lock: _Lock) -> None:
        if lock.holder is None and not lock.queue:
            del self._locks[lock_id]
            self.retired += 1

    def cancel(self, request_id: str) -> bool:
        """Withdraw a request: a waiter expires, a grant is released, a
        group gives back what it took."""
        group = self._groups.get(request_id)
        if group is not None:
            self._fail_group(group)
            return True
        lock_id = self._where.get(request_id)
        if lock_id is None:
            return False
        lock = self._locks[lock_id]
        waiter = lock.queue.pop(request_id, None)
        if waiter is None:  # granted: give it back
            return self.release(lock_id, lock.holder) if lock.request == request_id else False
        del self._where[request_id]
        if waiter.timer is not None:
            waiter.timer.cancel()
        self._drop_if_free(lock_id, lock)
        waiter.expire()
        return True

    def holder_died(self, holder: str) -> list[str]:
        """Forget `holder`'s grants and queued requests; the locks it held."""
        for group in [g for g in self._groups.values() if g.holder == holder]:
            self._fail_group(group)
        released = []
        for lock_id, lock in list(self._locks.items()):
            for request_id in [r for r, w in lock.queue.items() if w.holder == holder]:
                self.cancel(request_id)
            if lock.holder == holder and self.release(lock_id, holder):
                released.append(lock_id)
        return released

    # -- several locks at once -------------------------------------------------

    def acquire_all(
        self, lock_ids: list[str], holder: str, request_id: str, timeout: float | None,
        done: Callable[[bool], None],
    ) -> bool:
        """Take every lock of `lock_ids` for `holder`, in sorted order.

        True if all were granted at once; else False and `done(granted)`
        is called later, once: True when all are held, False when the
        timeout ran out (nothing is then held by the group).
        """
        if len(lock_ids) == 1 and lock_ids[0] not in self._locks:  # one task's lock, free: no group
            lock_id = lock_ids[0]
            lock = self._locks[lock_id] = _Lock()
            self._grant(lock_id, lock, holder, f"{request_id}/0")
            return True
        group = _Group(request_id, holder, sorted(set(lock_ids)), done)
        if self._advance(group):
            return True
        self._groups[request_id] = group
        if timeout is not None:
            group.timer = call_later(timeout, self._expire, request_id)
        return False

    def _advance(self, group: _Group) -> bool:
        """Take the group's next locks while they are free; True once all are held."""
        while group.next < len(group.ids):
            lock_id = group.ids[group.next]
            sub_request = f"{group.request_id}/{group.next}"
            token = self.acquire(lock_id, group.holder, sub_request, None,
                                 lambda _t: self._granted(group), lambda: None)
            if not token:
                return False  # parked: `_granted` goes on
            group.held.append(lock_id)
            group.next += 1
        return True

    def _granted(self, group: _Group) -> bool:
        if self._groups.get(group.request_id) is not group:
            return False  # withdrawn meanwhile
        group.held.append(group.ids[group.next])
        group.next += 1
        if self._advance(group):
            del self._groups[group.request_id]
            if group.timer is not None:
                group.timer.cancel()
            group.done(True)
        return True

    def _fail_group(self, group: _Group) -> None:
        del self._groups[group.request_id]
        if group.timer is not None:
            group.timer.cancel()
        self.cancel(f"{group.request_id}/{group.next}")  # the lock it waits for
        for lock_id in group.held:
            self.release(lock_id, group.holder)
        group.done(False)

    # -- reading -------------------------------------------------------------

    def parked(self, request_id: str) -> bool:
        """Whether `request_id` waits (for a lock, or as a group)."""
        if request_id in self._groups:
            return True
        lock_id = self._where.get(request_id)
        return lock_id is not None and request_id in self._locks[lock_id].queue

    def holder(self, lock_id: str) -> str | None:
        lock = self._locks.get(lock_id)
        return None if lock is None else lock.holder

    def token(self, lock_id: str) -> int:
        """The token of the lock's current grant; for a free lock (whose
        record was dropped) the table's last token, which is at least the
        lock's own last one: either way it only grows."""
        lock = self._locks.get(lock_id)
        return self._token if lock is None or lock.holder is None else lock.token

    def waiting(self, lock_id: str) -> tuple[str, ...]:
        lock = self._locks.get(lock_id)
        return () if lock is None else tuple(w.holder for w in lock.queue.values())
