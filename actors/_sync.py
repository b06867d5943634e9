"""Locks, semaphores and barriers from any process: clients and the manager.

Locks are records in the `SyncManager`'s own table (see `_locks`); each
semaphore and barrier is an actor of its own (see `_primitives`), made on
first use by the manager. The manager also coordinates tasks (records,
events and the per-task lock, see `_task_ledger`). The clients here only
ask and tell.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from pykka.messages import ProxyCall

from actors._base import ActorBase, Sent
from actors._client import _GRACE, ManagerClient, ServiceClient, ask_parked
from actors._context import current_agent_id
from actors._errors import ActorDeadError, AskTimeout, LockTimeout
from actors._locks import LockTable
from actors._primitives import BarrierActor, LockStatistics, SemaphoreActor
from actors._task_ledger import TaskLedger
from actors._types import new_id

__all__ = [
    "TASK_LOCK_TIMEOUT", "BarrierClient", "LockClient", "LockStatistics", "SemaphoreClient", "SyncClient",
    "SyncManager",
]

TASK_LOCK_TIMEOUT = 30.0  # how long a task waits for its lock `task:{id}` (as `with lock:`)

class _PrimitiveClient(ServiceClient):
    """A named primitive's client: it pickles with its name."""

    kind = "primitive"

    def __init__(self, ref: Any, primitive_id: str = "") -> None:
        super().__init__(ref)
        self.primitive_id = primitive_id

    def __getstate__(self) -> Any:
        return (self._ref, self.primitive_id)

    def __setstate__(self, state: Any) -> None:
        self._ref, self.primitive_id = state


class _Acquirable(_PrimitiveClient):
    """`acquire`/`release` and `with`, shared by locks and semaphores."""

    def acquire(self, holder: str | None = None, timeout: float | None = 30.0) -> bool:
        return bool(ask_parked(self, "acquire", holder or current_agent_id(), timeout=timeout))

    def release(self, holder: str | None = None) -> bool:
        return cast("bool", self._call("release", holder or current_agent_id()))

    def __enter__(self) -> Any:
        if not self.acquire():
            msg = f"could not acquire {self.kind} {self.primitive_id!r} within 30 s"
            raise LockTimeout(msg)
        return self

    def __exit__(self, *exc: object) -> None:
        # Told, not asked: nothing waits on the answer, and a later request
        # from this thread travels behind it on the same connection.
        self._cast("release", current_agent_id())


class LockClient(_Acquirable):
    """A lock from any process; `with lock:` raises `LockTimeout` on failure.

    Locks live in the sync manager's table (see `_locks`): the client is
    the manager's ref plus the lock's id, so making one asks nothing.
    """

    kind = "lock"

    def _call(self, method: str, *args: Any, timeout: float | None = 60.0, **kwargs: Any) -> Any:
        return self._ref.ask(ProxyCall((f"lock_{method}",), (self.primitive_id, *args), kwargs), timeout=timeout)

    def _cast(self, method: str, *args: Any, **kwargs: Any) -> None:
        self._ref.tell(ProxyCall((f"lock_{method}",), (self.primitive_id, *args), kwargs))

    @property
    def lock_id(self) -> str:
        return self.primitive_id

    def holder(self) -> str | None:
        return cast("str | None", self._call("holder"))

    def token(self) -> int:
        """The fencing token of the current (or last) grant; it only grows."""
        return cast("int", self._call("token"))

    def statistics(self) -> LockStatistics:
        return cast("LockStatistics", self._call("statistics"))


class SemaphoreClient(_Acquirable):
    """A counting semaphore from any process."""

    kind = "a permit of semaphore"

    @property
    def sem_id(self) -> str:
        return self.primitive_id

    def available(self) -> int:
        return cast("int", self._call("available"))

    def holders(self) -> dict[str, int]:
        return cast("dict[str, int]", self._call("holders"))


class BarrierClient(_PrimitiveClient):
    """A reusable barrier from any process."""

    kind = "barrier"

    @property
    def barrier_id(self) -> str:
        return self.primitive_id

    def wait(self, party: str | None = None, timeout: float | None = 60.0) -> bool:
        """True when all parties arrived; False on timeout; raises `BrokenBarrierError`."""
        return bool(ask_parked(self, "wait", party or current_agent_id(), timeout=timeout))

    def reset(self) -> None:
        self._call("reset")

    def waiting(self) -> int:
        return cast("int", self._call("waiting"))


class SyncManager(ActorBase):
    """Every lock (a table of plain records), the semaphores and barriers
    (an actor each, made on first use), and the coordination of tasks.

    `spawn(actor_cls, name, *args)` starts a service actor and returns a
    ref that works from any process. Locks are often made per task
    (`task:{id}`): here a lock costs nothing once free (see `_locks`).

    Tasks: `tasks_begin` and `tasks_end` do the coordination `execute_task`
    promises for one task or a chunk of them (records and events through
    the `TaskLedger`, the tasks' locks `task:{id}` in the table), one
    message each. The locks are the very ones `get_lock(f"task:{id}")`
    gives anyone. The agent a task runs on holds its lock and is the
    writer of its records: the authenticated sender of the message when it
    came from an agent's process (`wants_sender`), or the agent the
    runtime's own process names (it routes tasks, and is trusted).
    """

    runs_inline = True
    wants_sender = True

    def __init__(
        self, spawn: Callable[..., Any], *, state: Any = None, events: Any = None, authenticated: bool = True,
        task_records: int | None = None, confirmed: bool = False,
    ) -> None:
        super().__init__()
        self._spawn = spawn
        # (kind, name) -> (ref, args) of semaphores and barriers
        self._primitives: dict[tuple[str, str], tuple[Any, tuple[Any, ...]]] = {}
        self._locks = LockTable(self)
        self._ledger = None if state is None else TaskLedger(
            state, events, authenticated=authenticated, task_records=task_records, confirmed=confirmed)
        self._sender: str | None = None  # who sent the message being handled, if another process

    def _handle_receive(self, message: Any) -> Any:
        if type(message) is Sent:
            self._sender, message = message
        else:
            self._sender = None
        return super()._handle_receive(message)

    def _agent(self, claimed: str) -> str:
        """Who acts: the authenticated sender, or whom this process names."""
        return claimed if self._sender is None else self._sender

    # -- locks -------------------------------------------------------------

    def lock_acquire(self, lock_id: str, holder: str, timeout: float | None, request_id: str) -> int:
        """Grant now (the token), or park the caller; 0 on timeout."""
        _check_id("lock", lock_id)
        later: list[Any] = []  # the reply, taken only if the request is parked
        token = self._locks.acquire(lock_id, holder, request_id, timeout,
                                    lambda t: _answer(later[0], t), lambda: _answer(later[0], 0))
        if not token and self._locks.parked(request_id):
            later.append(self._defer_reply())
        return token

    def lock_release(self, lock_id: str, holder: str | None) -> bool:
        """Release if `holder` holds the lock; anyone else changes nothing."""
        return self._locks.release(lock_id, holder)

    def lock_cancel(self, lock_id: str, request_id: str) -> bool:
        """Withdraw a request: a waiter gets 0 (False), a grant is released."""
        return self._locks.cancel(request_id)

    def cancel_lock(self, request_id: str) -> bool:
        """A parked request's timeout ran out (told by the table's timer)."""
        return self._locks.cancel(request_id)

    def lock_holder(self, lock_id: str) -> str | None:
        return self._locks.holder(lock_id)

    def lock_token(self, lock_id: str) -> int:
        return self._locks.token(lock_id)

    def lock_statistics(self, lock_id: str) -> LockStatistics:
        return LockStatistics(self._locks.holder(lock_id), self._locks.token(lock_id), self._locks.waiting(lock_id))

    # -- tasks -------------------------------------------------------------

    def tasks_begin(
        self, tasks: list[tuple[str, str | None]], agent: str, timeout: float | None, request_id: str,
        created: bool = False,
    ) -> bool:
        """Tasks (id, type) start on `agent`: (TASK_CREATED,) TASK_STARTED and
        status "in_progress" for each, then their locks `task:{id}` for
        `agent`. Answered True once every lock is held (the reply waits,
        parked, meanwhile), False if `timeout` ran out first (then none is)."""
        agent = self._agent(agent)
        self._require_ledger().begin(tasks, agent, created=created)
        later: list[Any] = []  # the reply, taken only if the request is parked

        def done(granted: bool) -> None:
            if not _answer(later[0], granted) and granted:  # nobody to take them: give them back
                self._release_tasks([t for t, _k in tasks], agent)

        if self._locks.acquire_all([f"task:{t}" for t, _k in tasks], agent, request_id, timeout, done):
            return True
        later.append(self._defer_reply())
        return False  # unsent: the reply was taken

    def tasks_end(self, outcomes: list[tuple[str, bool, Any]], agent: str) -> int:
        """Tasks ended on `agent`, each (id, True, result) or (id, False,
        "Error: text"): their records and TASK_COMPLETED or TASK_FAILED,
        then their locks are released. How many locks were released."""
        agent = self._agent(agent)
        try:
            self._require_ledger().end(outcomes, agent)
        finally:  # a result the store refused (it can't be pickled) still frees its lock
            released = self._release_tasks([t for t, _ok, _v in outcomes], agent)
        return released

    def tasks_abort(self, task_ids: list[str], agent: str) -> int:
        """Release the locks of tasks that `agent` will not end (it died)."""
        return self._release_tasks(task_ids, self._agent(agent))

    def tasks_cancel(self, request_id: str) -> bool:
        """Withdraw a `tasks_begin` whose asker gave up."""
        return self._locks.cancel(request_id)

    def _release_tasks(self, task_ids: list[str], agent: str) -> int:
        released = 0
        for task_id in task_ids:
            released += self._locks.release(f"task:{task_id}", agent)
        return released

    def _require_ledger(self) -> TaskLedger:
        if self._ledger is None:
            msg = "this sync manager was started without a state store: it can't coordinate tasks"
            raise RuntimeError(msg)
        return self._ledger

    # -- semaphores and barriers --------------------------------------------

    def _get(self, kind: str, cls: type, name: str, *args: Any) -> Any:
        _check_id(kind, name)
        key = (kind, name)
        known = self._primitives.get(key)
        if known is not None:
            if known[1] != args:
                msg = f"{kind} {name!r} already exists with {known[1]}, not {args}"
                raise ValueError(msg)
            return known[0]
        ref = self._spawn(cls, f"_{kind}:{name}", name, *args)
        self._primitives[key] = (ref, args)
        return ref

    def statistics(self) -> dict[str, int]:
        """Locks held or waited for now, semaphores, barriers, and how many
        lock records were dropped as they went free (`retired_locks`)."""
        kinds = [kind for kind, _name in self._primitives]
        return {"locks": len(self._locks), "semaphores": kinds.count("semaphore"),
                "barriers": kinds.count("barrier"), "retired_locks": self._locks.retired}

    def get_semaphore(self, sem_id: str, permits: int) -> Any:
        if not isinstance(permits, int) or permits < 1:
            msg = f"permits must be a positive int, got {permits!r}"
            raise ValueError(msg)
        return self._get("semaphore", SemaphoreActor, sem_id, permits)

    def get_barrier(self, barrier_id: str, count: int) -> Any:
        if not isinstance(count, int) or count < 1:
            msg = f"count must be a positive int, got {count!r}"
            raise ValueError(msg)
        return self._get("barrier", BarrierActor, barrier_id, count)

    def holder_died(self, holder: str) -> list[str]:
        """Release what `holder` held everywhere; returns what was reclaimed."""
        reclaimed = [f"lock {name}" for name in self._locks.holder_died(holder)]
        asks = [
            (f"{kind} {name}", ref.ask(ProxyCall(("holder_died",), (holder,), {}), block=False))
            for (kind, name), (ref, _args) in self._primitives.items()
        ]
        for what, future in asks:
            try:
                if future.get(timeout=10):
                    reclaimed.append(what)
            except (ActorDeadError, AskTimeout):
                pass
        return reclaimed


def _answer(reply: Any, value: Any) -> bool:
    """Answer a deferred reply (None: it was a tell); False if its asker is gone."""
    if reply is None:
        return True
    try:
        reply.set(value)
    except Exception:  # noqa: BLE001
        return False
    return True


def _check_id(kind: str, name: Any) -> None:
    if not isinstance(name, str):
        msg = f"{kind} ids must be str, got {type(name).__name__}"
        raise TypeError(msg)


class SyncClient(ManagerClient):
    """`rt.sync` / `self.ctx.sync`: named primitives, created on first use.

    A lock asks nothing to be made (it is a record in the manager's
    table); semaphore and barrier refs are remembered per process, so only
    the first use of a name asks the manager.
    """

    __slots__ = ()

    def get_lock(self, lock_id: str) -> LockClient:
        _check_id("lock", lock_id)
        return LockClient(self._ref, lock_id)

    def statistics(self) -> dict[str, int]:
        """How many primitives exist, and how many free locks were retired."""
        return cast("dict[str, int]", self._call("statistics"))

    # -- tasks (for `Agent.execute_task` and the runtime's task router) --------

    def begin_tasks(
        self, tasks: list[tuple[Any, str | None]], agent: str, *, timeout: float = TASK_LOCK_TIMEOUT,
        created: bool = False,
    ) -> None:
        """Tasks (id, type) start on `agent` (see `SyncManager.tasks_begin`);
        returns once `agent` holds their locks; `LockTimeout` if it could
        not within `timeout` s (then it holds none of them)."""
        request_id = new_id()
        try:
            granted = self._call("tasks_begin", tasks, agent, timeout, request_id, created,
                                 timeout=timeout + _GRACE)
        except AskTimeout:
            self._cast("tasks_cancel", request_id)
            granted = False
        if not granted:
            names = ", ".join(f"'task:{t}'" for t, _k in tasks[:3]) + (" ..." if len(tasks) > 3 else "")
            msg = f"could not acquire lock {names} within {timeout:g} s"
            raise LockTimeout(msg)

    def end_tasks(self, outcomes: list[tuple[Any, bool, Any]], agent: str) -> int:
        """Tasks ended on `agent` (see `SyncManager.tasks_end`)."""
        return cast("int", self._call("tasks_end", outcomes, agent))

    def abort_tasks(self, task_ids: list[Any], agent: str) -> int:
        """Release the locks of tasks `agent` will never end (it died)."""
        return cast("int", self._call("tasks_abort", task_ids, agent))

    def get_semaphore(self, sem_id: str, permits: int) -> SemaphoreClient:
        return SemaphoreClient(self._child("get_semaphore", sem_id, permits), sem_id)

    def get_barrier(self, barrier_id: str, count: int) -> BarrierClient:
        return BarrierClient(self._child("get_barrier", barrier_id, count), barrier_id)
