"""What a runtime does whichever backend runs its agents.

`RuntimeBase` holds the public surface that doesn't depend on where agent
processes come from: spawning (its checks and names), the agent table,
tasks, replicated state, and the announcements around exits and restarts.
A backend (`LocalRuntime` on this machine, `RayRuntime` on Ray) adds how agents
are launched, stopped, watched and shut down, through the hooks below.
"""

from __future__ import annotations

import itertools
import logging
import threading
import uuid
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Self, cast

from actors import ActorDeadError, Agent, EventType
from actors._replicated import Replica, ReplicatedState
from runtime._monitor import ProcessMonitor
from runtime.wire._reactor import MAILBOX_SIZE, check_mailbox_size
from runtime._ref import AgentRef
from runtime._stopping import Stopping
from runtime._runs import drop_run as drop_run_records, list_runs
from runtime.wire._serialization import dumps
from runtime.wire._spin import check_environment
from runtime.local._supervisor import RESTART_POLICIES, SupervisedRecord

if TYPE_CHECKING:
    from actors._comm import CommHub
    from actors._events import EventsClient
    from actors._state_client import FlatStateClient, StateClient
    from actors._sync import SyncClient
    from runtime._tasks import TaskRouter

__all__ = ["RuntimeBase"]

logger = logging.getLogger("runtime")

ENDED_KEPT = 16  # records of agents ended for good still listed by agent_info()


class RuntimeBase(Stopping):
    """The backend-neutral surface of `Runtime` (see `runtime._backends`).

    Attributes a backend sets up: `state`, `events`, `sync`, `comm`,
    `_peer` (name -> ref), `_tasks` (a `TaskRouter`), and the bookkeeping of
    `_init_bookkeeping`, which it calls first.
    """

    # The services, the same objects as `ctx.state` ... in agents (set by the backend).
    state: StateClient
    store: FlatStateClient
    events: EventsClient
    sync: SyncClient
    comm: CommHub
    # Set by the backend too: name -> ref (an `AgentRef`, or a `RayRef` with
    # its surface), and what routes tasks.
    _peer: Callable[[str], Any]
    _tasks: TaskRouter

    # -- hooks a backend provides ----------------------------------------------

    def _launch(
        self, agent_cls: type[Agent], name: str, caps: list[str], restart: str, max_restarts: int,
        restart_window: float, args: tuple[Any, ...], kwargs: dict[str, Any], kind: str,
        *, mailbox_size: int = MAILBOX_SIZE,
    ) -> AgentRef:
        """Start one agent (or service agent) and keep its record; its ref.

        `mailbox_size` (checked) bounds what waits unread for it.
        """
        raise NotImplementedError

    def _still_alive(self, record: Any) -> bool:
        """Whether a "running" record's process is still there right now."""
        raise NotImplementedError

    def shutdown(self, timeout: float = 10.0) -> None:
        raise NotImplementedError

    def agent_info(self) -> list[dict[str, Any]]:
        """One row per process this runtime started (see the backend's)."""
        raise NotImplementedError

    def control_info(self) -> dict[str, Any]:
        """How `actors status` reaches this runtime (NotImplementedError where it can't)."""
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------

    def _forget_ended(self, record: Any) -> None:
        """`record` ended for good: keep it listed until `ENDED_KEPT` newer
        ones ended, then drop it (so short-lived agents leave nothing
        behind). Called with `_lock` held."""
        self._ended.append(record)
        while len(self._ended) > ENDED_KEPT:
            old = self._ended.popleft()
            if self._records.get(old.name) is old:
                del self._records[old.name]

    def _init_bookkeeping(self, start_timeout: float) -> None:
        """What every backend keeps about its agents (both call this first)."""
        check_environment()  # ValueError for a bad ACTORS_SPIN_US, before anything starts
        self.id = uuid.uuid4().hex
        self.start_timeout = start_timeout
        self._records: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._closed = False
        self._seq = itertools.count(1)  # names for agents spawned without one
        self._monitor = ProcessMonitor()
        self._replicated: dict[str, ReplicatedState] = {}
        self._ended: deque[SupervisedRecord] = deque()  # see _forget_ended
        # Set when the shutdown comes from an interrupt (KeyboardInterrupt out
        # of the `with` block, or `actors run` getting SIGINT/SIGTERM): agents
        # busy in a handler abandon it, so the shutdown takes seconds, not
        # as long as the longest task.
        self._interrupting = False

    def spawn(
        self,
        agent_cls: type[Agent],
        name: str | None = None,
        *,
        capabilities: list[str] | None = None,
        restart: str = "permanent",
        max_restarts: int = 3,
        restart_window: float = 5.0,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        mailbox_size: int = MAILBOX_SIZE,
    ) -> AgentRef:
        """Start `agent_cls` in a process of its own; return once `on_start` ran.

        `mailbox_size` bounds the messages from other processes waiting
        unread for the agent: a sender that gets that far ahead waits (its
        `tell` blocks) until the agent has caught up half of it.

        Raises what the agent's `__init__` or `on_start` raised, and
        `MessageSerializationError` if the class or arguments can't travel.
        """
        self._check_open()
        if not (isinstance(agent_cls, type) and issubclass(agent_cls, Agent)):
            msg = f"spawn needs a subclass of actors.Agent, got {agent_cls!r}"
            raise TypeError(msg)
        if restart not in RESTART_POLICIES:
            msg = f"restart must be one of {', '.join(RESTART_POLICIES)}, got {restart!r}"
            raise ValueError(msg)
        check_mailbox_size(mailbox_size)
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
            msg = f"max_restarts must be an int, 0 or more, got {max_restarts!r}"
            raise ValueError(msg)
        if isinstance(restart_window, bool) or not isinstance(restart_window, (int, float)) or not restart_window >= 0:
            msg = f"restart_window must be a number of seconds, 0 or more, got {restart_window!r}"
            raise ValueError(msg)
        if name is None:
            name = f"{agent_cls.__name__.lower()}-{next(self._seq)}"
        if not isinstance(name, str) or not name or name.startswith("_"):
            msg = f"agent names are non-empty str not starting with '_', got {name!r}"
            raise ValueError(msg)
        caps = list(agent_cls.capabilities if capabilities is None else capabilities)
        self._tasks.note_class(name, agent_cls)  # how tasks reach it (see `_tasks`)
        return self._launch(
            agent_cls, name, caps, restart, max_restarts, restart_window, tuple(args), dict(kwargs or {}), "agent",
            mailbox_size=mailbox_size,
        )

    def replicated_state(
        self,
        name: str,
        replicas: int = 3,
        quorum: int = 2,
        conflict_resolver: Any = None,
    ) -> ReplicatedState:
        """A key-value store kept by `replicas` supervised replica processes.

        Writes succeed once `quorum` replicas acknowledge them; reads resolve
        what the replicas hold with `conflict_resolver` (default:
        last-write-wins on a hybrid logical clock). Either raises
        `QuorumNotReachedError` when fewer than `quorum` replicas answer (for
        a read: replicas that know; see `actors._replicated`). The same name
        returns the same store. A key `_replicated:<name>:<id>` in `rt.store`
        marks the store as made (replicas started after it are restarts).
        """
        self._check_open()
        if not isinstance(name, str) or not name or name.startswith("_"):
            msg = f"replicated state names are non-empty str not starting with '_', got {name!r}"
            raise ValueError(msg)
        if not (isinstance(replicas, int) and replicas >= 1):
            msg = f"replicas must be a positive int, got {replicas!r}"
            raise ValueError(msg)
        if not (isinstance(quorum, int) and 1 <= quorum <= replicas):
            msg = f"quorum must be between 1 and replicas ({replicas}), got {quorum!r}"
            raise ValueError(msg)
        if conflict_resolver is not None and not callable(conflict_resolver):
            msg = f"conflict_resolver must be callable, got {conflict_resolver!r}"
            raise TypeError(msg)
        with self._lock:
            existing = self._replicated.get(name)
        if existing is not None:
            return existing
        names = [f"{name}.replica{i}" for i in range(replicas)]
        marker = f"_replicated:{name}:{uuid.uuid4().hex}"  # set once all are up: a replica finding it restarted
        refs = [
            self._launch(
                Replica, replica, [], "permanent", 10, 5.0,
                (tuple(n for n in names if n != replica), quorum, marker), {}, "service",
            )
            for replica in names
        ]
        self.store.set(marker, True)
        store = ReplicatedState(name, refs, quorum, conflict_resolver, dumps=dumps)
        with self._lock:
            self._replicated[name] = store
        return store

    def _announce_exit(self, record: Any, reason: str, exit_code: int | None, error: str | None = None) -> None:
        """Release what the agent held, then publish AGENT_LEFT (both backends).

        `error`: what went wrong in a requested stop (on_stop raised, or the
        process exited with an error code or was killed), as payload["error"]."""
        reclaimed = []
        try:
            reclaimed = self.sync._call("holder_died", record.name, timeout=30)
            self.comm.pub_sub._call("owner_died", record.name, timeout=30)
        except Exception:  # noqa: BLE001 - the runtime may be closing
            logger.debug("could not reclaim what %s held", record.name)
        payload = {
            "agent_id": record.name, "reason": reason, "exit_code": exit_code,
            "kind": record.kind, "reclaimed": reclaimed,
        }
        if error is not None:
            payload["error"] = error
        try:
            if reclaimed:
                self.events.emit(
                    "supervisor", EventType.ERROR_OCCURRED,
                    {"agent_id": record.name, "error": f"{record.name} {reason}", "reclaimed": reclaimed},
                )
            self.events.emit(record.name, EventType.AGENT_LEFT, payload)
        except Exception:  # noqa: BLE001
            logger.debug("could not publish AGENT_LEFT for %s", record.name)

    def _on_restarted(self, record: Any) -> None:
        self.events.emit(
            record.name,
            EventType.AGENT_JOINED,
            {
                "agent_id": record.name, "capabilities": record.capabilities, "restarts": record.restarts,
                "kind": record.kind,
            },
        )

    def _on_gave_up(self, record: Any, reason: str) -> None:
        logger.warning("agent %s: %s", record.name, reason)
        self.events.emit(
            record.name, EventType.AGENT_LEFT, {"agent_id": record.name, "reason": reason, "kind": record.kind}
        )

    @property
    def agents(self) -> dict[str, AgentRef]:
        """Running agents by id."""
        with self._lock:
            return {
                name: r.ref
                for name, r in self._records.items()
                if r is not None and r.kind == "agent" and r.status in ("running", "restarting")
            }

    def add_agent(self, agent_id: str, capabilities: list[str], agent_cls: type[Agent] = Agent) -> AgentRef:
        """The design's name for `spawn(agent_cls, agent_id, capabilities=...)`."""
        return self.spawn(agent_cls, agent_id, capabilities=list(capabilities))

    def remove_agent(self, agent_id: str, timeout: float = 10.0) -> bool:
        """Stop an agent (its `on_stop` runs); False if it was not running."""
        with self._lock:
            record = self._records.get(agent_id)
        if record is None or record.status not in ("running", "restarting"):
            return False
        self._stop_record(record, timeout)
        return True

    @property
    def aio(self) -> Any:
        """Awaitable twins of the services, with `submit_task`, `map` and
        `imap` (see `runtime._aio_runtime`); made once."""
        views = self.__dict__.get("_aio")
        if views is None:
            from runtime._aio_runtime import RuntimeAio  # noqa: PLC0415 - asyncio only when asked for

            views = self.__dict__["_aio"] = RuntimeAio(self)
        return views

    def get_agent(self, agent_id: str) -> AgentRef:
        return cast("AgentRef", self._peer(agent_id))

    def submit_task(self, task: dict[str, Any], *, retries: int = 1, timeout: float | None = None) -> Any:
        """Run `task` on a live agent with capability `task["type"]`."""
        return self._tasks.submit(task, retries=retries, timeout=timeout)

    def map(
        self,
        task_type: str,
        payloads: Any,
        *,
        timeout: float | None = None,
        retries: int = 1,
        progress: bool = False,
        return_exceptions: bool = False,
        run_id: str | None = None,
    ) -> list[Any]:
        """Run one task per payload over every capable agent; results in input order.

        With `run_id`, each successful result is recorded under it as it
        completes, and a call again with the same `run_id` and payloads (here,
        or in a new runtime on the same `state_path`) runs only the payloads
        without a recorded result (see `runtime._runs`). A `run_id` that
        another map of this runtime is running raises `RunInProgressError`."""
        return list(self.imap(
            task_type, payloads, timeout=timeout, retries=retries, progress=progress,
            return_exceptions=return_exceptions, run_id=run_id,
        ))

    def imap(
        self,
        task_type: str,
        payloads: Any,
        *,
        timeout: float | None = None,
        retries: int = 1,
        return_exceptions: bool = False,
        ordered: bool = True,
        progress: bool = False,
        run_id: str | None = None,
    ) -> Any:
        """Like `map`, as a generator: payloads are read lazily, a bounded
        number are in flight, and results come in input order (or as they
        complete with `ordered=False`). For pipelines larger than memory."""
        return self._tasks.imap(
            task_type, payloads, timeout=timeout, retries=retries, return_exceptions=return_exceptions,
            ordered=ordered, progress=progress, run_id=run_id,
        )

    def runs(self) -> list[dict[str, Any]]:
        """The resumable runs recorded (`map(..., run_id=...)`), oldest first:
        {run_id, total, done, created, updated} each (`total` None while a
        run over an iterator hasn't reached its end)."""
        return list_runs(self.state)

    def drop_run(self, run_id: str) -> bool:
        """Forget a run's recorded results (purged, no trace left); False if
        there was no such run. A `map` with that id then starts over."""
        return drop_run_records(self.state, run_id)

    def _capable(self, task_type: str, *, checked: bool = True) -> list[str]:
        """Names of running agents with `task_type`; with `checked`, only
        those whose process is still alive (`_alive` checks one)."""
        with self._lock:
            capable = [r for r in self._records.values()
                       if r is not None and r.status == "running" and task_type in r.capabilities]
        return [r.name for r in capable if not checked or self._still_alive(r)]

    def _alive(self, name: str) -> bool:
        """Whether agent `name` runs, its process alive even if the
        supervisor has not handled its exit yet."""
        record = self._records.get(name)
        return record is not None and record.status == "running" and self._still_alive(record)

    def _capabilities(self) -> list[str]:
        """Every capability of the running agents (for `NoCapableAgentError`)."""
        with self._lock:
            running = [r for r in self._records.values()
                       if r is not None and r.status == "running" and self._still_alive(r)]
        return sorted({c for r in running for c in r.capabilities})

    def _coming_back(self, task_type: str) -> bool:
        """Whether an agent with `task_type` is being restarted (its exit
        handled, or its next process starting)."""
        with self._lock:
            return any(r is not None and r.status in ("exited", "restarting") and task_type in r.capabilities
                       for r in self._records.values())

    def _check_open(self) -> None:
        if self._closed:
            msg = "this runtime has been shut down"
            raise ActorDeadError(msg)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            self._interrupting = True  # Ctrl-C: don't wait for tasks in progress
        self.shutdown()
