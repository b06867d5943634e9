"""Locks, semaphores and barriers from any process: clients and the manager.

Each named primitive is its own actor (see `_primitives`), made on first
use by the `SyncManager` actor; the clients here only ask and tell.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pykka.messages import ProxyCall

from actors._base import ActorBase
from actors._client import ManagerClient, ServiceClient, ask_parked
from actors._context import current_agent_id
from actors._errors import ActorDeadError, AskTimeout, LockTimeout
from actors._primitives import BarrierActor, LockActor, LockStatistics, SemaphoreActor

__all__ = [
    "BarrierClient", "LockClient", "LockStatistics", "SemaphoreClient", "SyncClient", "SyncManager",
]

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
        return self._call("release", holder or current_agent_id())

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

    If its lock actor was retired (it was free and unused), the client asks
    the manager for the lock made anew and goes on.
    """

    kind = "lock"

    def __init__(self, ref: Any, primitive_id: str = "", manager: Any = None) -> None:
        super().__init__(ref, primitive_id)
        self._manager = manager

    def __getstate__(self) -> Any:
        return (self._ref, self.primitive_id, self._manager)

    def __setstate__(self, state: Any) -> None:
        self._ref, self.primitive_id, self._manager = state

    def _call(self, method: str, *args: Any, timeout: float | None = 60.0, **kwargs: Any) -> Any:
        try:
            return super()._call(method, *args, timeout=timeout, **kwargs)
        except ActorDeadError:
            if self._manager is None:
                raise
            self._ref = self._manager.ask(ProxyCall(("get_lock",), (self.primitive_id,), {}), timeout=60)
            return super()._call(method, *args, timeout=timeout, **kwargs)

    def _cast(self, method: str, *args: Any, **kwargs: Any) -> None:
        try:
            super()._cast(method, *args, **kwargs)
        except ActorDeadError:
            pass  # a release told to a retired lock: it was free already

    @property
    def lock_id(self) -> str:
        return self.primitive_id

    def holder(self) -> str | None:
        return self._call("holder")

    def token(self) -> int:
        """The fencing token of the current (or last) grant; it only grows."""
        return self._call("token")

    def statistics(self) -> LockStatistics:
        return self._call("statistics")


class SemaphoreClient(_Acquirable):
    """A counting semaphore from any process."""

    kind = "a permit of semaphore"

    @property
    def sem_id(self) -> str:
        return self.primitive_id

    def available(self) -> int:
        return self._call("available")

    def holders(self) -> dict[str, int]:
        return self._call("holders")


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
        return self._call("waiting")


class SyncManager(ActorBase):
    """Creates each named primitive on first use and hands out its ref.

    `spawn(actor_cls, name, *args)` starts a service actor and returns a ref
    that works from any process; `retire(name)`, if given, forgets one that
    stopped. Locks are often made per task (`task:{id}`), so free locks
    beyond `max_locks` are retired, least recently handed out first (each
    would otherwise keep a thread forever); using one again makes it anew,
    its fencing tokens continuing where they stopped.
    """

    runs_inline = True

    max_locks = 256

    def __init__(self, spawn: Callable[..., Any], retire: Callable[[str], None] | None = None) -> None:
        super().__init__()
        self._spawn = spawn
        self._retire = retire
        # (kind, name) -> (ref, args), least recently handed out first
        self._primitives: dict[tuple[str, str], tuple[Any, tuple[Any, ...]]] = {}
        self._lock_tokens: dict[str, int] = {}  # last token of each retired lock
        self._retired = 0

    def _get(self, kind: str, cls: type, name: str, *args: Any) -> Any:
        if not isinstance(name, str):
            msg = f"{kind} ids must be str, got {type(name).__name__}"
            raise TypeError(msg)
        key = (kind, name)
        known = self._primitives.pop(key, None)
        if known is not None:
            self._primitives[key] = known  # now the most recently handed out
            if known[1] != args:
                msg = f"{kind} {name!r} already exists with {known[1]}, not {args}"
                raise ValueError(msg)
            return known[0]
        extra = (self._lock_tokens.pop(name, 0),) if kind == "lock" else ()
        ref = self._spawn(cls, f"_{kind}:{name}", name, *args, *extra)
        self._primitives[key] = (ref, args)
        return ref

    def get_lock(self, lock_id: str) -> Any:
        ref = self._get("lock", LockActor, lock_id)
        self._retire_idle_locks()
        return ref

    def _retire_idle_locks(self) -> None:
        locks = [k for k in self._primitives if k[0] == "lock"]
        surplus = len(locks) - self.max_locks
        if surplus <= 0:
            return
        # Ask the oldest at once; a lock in use says no and stays.
        candidates = locks[: max(surplus, self.max_locks // 4)]
        asks = [(key, self._primitives[key][0].ask(ProxyCall(("retire",), (), {}), block=False))
                for key in candidates]
        for key, future in asks:
            try:
                token = future.get(timeout=10)
            except (ActorDeadError, AskTimeout):
                continue
            if token is None:
                continue
            self._lock_tokens[key[1]] = token
            del self._primitives[key]
            self._retired += 1
            if self._retire is not None:
                self._retire(f"_lock:{key[1]}")

    def statistics(self) -> dict[str, int]:
        kinds = [kind for kind, _name in self._primitives]
        return {"locks": kinds.count("lock"), "semaphores": kinds.count("semaphore"),
                "barriers": kinds.count("barrier"), "retired_locks": self._retired}

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
        asks = [
            (f"{kind} {name}", ref.ask(ProxyCall(("holder_died",), (holder,), {}), block=False))
            for (kind, name), (ref, _args) in self._primitives.items()
        ]
        reclaimed = []
        for what, future in asks:
            try:
                if future.get(timeout=10):
                    reclaimed.append(what)
            except (ActorDeadError, AskTimeout):
                pass
        return reclaimed


class SyncClient(ManagerClient):
    """`rt.sync` / `self.ctx.sync`: named primitives, created on first use.

    Refs are remembered per process, so only the first `get_lock` of a name
    asks the manager (a lock retired meanwhile is found again on first use).
    """

    __slots__ = ()

    def get_lock(self, lock_id: str) -> LockClient:
        return LockClient(self._child("get_lock", lock_id), lock_id, self._ref)

    def statistics(self) -> dict[str, int]:
        """How many primitives exist, and how many free locks were retired."""
        return self._call("statistics")

    def get_semaphore(self, sem_id: str, permits: int) -> SemaphoreClient:
        return SemaphoreClient(self._child("get_semaphore", sem_id, permits), sem_id)

    def get_barrier(self, barrier_id: str, count: int) -> BarrierClient:
        return BarrierClient(self._child("get_barrier", barrier_id, count), barrier_id)
