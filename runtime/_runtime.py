"""`Runtime`: launches agents into processes and hosts the shared services.

The runtime's process holds the registry node, the supervisor and the
service actors (state store, event bus, sync manager and its primitives),
each a pykka actor with its own mailbox reachable from every agent process.
"""

from __future__ import annotations

import atexit
import functools
import itertools
import logging
import os
import resource
import shutil
import tempfile
import threading
import uuid
from typing import Any

import cloudpickle
import pykka

from actors import (
    ActorDeadError,
    Agent,
    AgentContext,
    EventType,
)
from actors._replicated import Replica, ReplicatedState
from actors._services import service_clients, start_services
from runtime._host import BootSpec
from runtime._launcher import Started, Zygote, reap, start_agent_process
from runtime._monitor import ProcessMonitor, info_row
from runtime._node import Node
from runtime._ref import AgentRef, check_agent_id
from runtime._serialization import dumps
from runtime._supervisor import RESTART_POLICIES, AgentRecord, Supervisor
from runtime._tasks import TaskRouter
from runtime._wire import STATS

__all__ = ["MultiAgentSystem", "Runtime", "peer_ref"]

logger = logging.getLogger("runtime")


def peer_ref(runtime_id: str, agent_id: str) -> AgentRef:
    """A ref to `agent_id` of the runtime `runtime_id`, resolved on first use."""
    return AgentRef(check_agent_id(agent_id), None, runtime_id)


def _raise_open_files_limit(wanted: int = 16384) -> None:
    # Each agent costs the runtime a few descriptors (pidfd, control pipe,
    # connections); a low soft limit would cap teams at a few hundred.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass


class Runtime:
    """A team of agents, each in its own OS process, and their services.

    Use it as a context manager, or call `shutdown()`: either way every
    agent's `on_stop` runs and no agent process is left behind.
    """

    def __new__(cls, *args: Any, backend: str = "local", **kwargs: Any) -> Runtime:
        if backend == "ray" and cls is Runtime:
            from runtime._ray_runtime import RayRuntime  # noqa: PLC0415 - Ray is optional

            return super().__new__(RayRuntime)
        return super().__new__(cls)

    def __init__(
        self,
        *,
        state_path: str | None = None,
        max_history: int = 1000,
        backend: str = "local",
        start_timeout: float = 60.0,
        state_synchronous: str = "NORMAL",
    ) -> None:
        if backend != "local":
            msg = f"unknown backend {backend!r}; use 'local' or 'ray'"
            raise ValueError(msg)
        _raise_open_files_limit()
        self._init_bookkeeping(start_timeout)
        self._authkey = os.urandom(32)
        self._rundir = tempfile.mkdtemp(prefix="actors-")  # mode 0700
        self._node = Node(self.id, self._authkey, self._rundir)
        self._services: list[pykka.ActorRef[Any]] = []
        try:
            refs = start_services(self._start_service, retire=self._retire_service, dumps=dumps,
                                  max_history=max_history, state_path=state_path, synchronous=state_synchronous)
        except BaseException:  # e.g. a bad state_path: leave nothing behind
            self._stop_services(5.0)
            shutil.rmtree(self._rundir, ignore_errors=True)
            raise
        self._zygote = Zygote()
        self._peer = functools.partial(peer_ref, self.id)
        self.state, self.store, self.events, self.sync, self.comm = service_clients(refs, self._peer)
        self._tasks = TaskRouter(self)
        self._supervisor = Supervisor(self._on_exit, self._restart, self._on_restarted, self._on_gave_up)
        self._node.info = self.agent_info
        atexit.register(self.shutdown)

    def _init_bookkeeping(self, start_timeout: float) -> None:
        """What every backend keeps about its agents (both call this first)."""
        self.id = uuid.uuid4().hex
        self.start_timeout = start_timeout
        self._records: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._closed = False
        self._seq = itertools.count(1)  # names for agents spawned without one
        self._monitor = ProcessMonitor()
        self._replicated: dict[str, ReplicatedState] = {}

    # -- services ----------------------------------------------------------

    def _start_service(self, cls: type[pykka.Actor], name: str, *args: Any, **kwargs: Any) -> AgentRef:
        """Start a service actor in this process, reachable from every agent."""
        ref = cls.start(*args, **kwargs)
        self._services.append(ref)
        self._node.host(name, ref)
        return AgentRef(name, self._node.address, self.id)

    def _retire_service(self, name: str) -> None:
        ref = self._node.local.get(name)
        self._node.unhost(name)
        if ref is not None and ref in self._services:
            self._services.remove(ref)

    # -- agents ------------------------------------------------------------

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
    ) -> AgentRef:
        """Start `agent_cls` in a process of its own; return once `on_start` ran.

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
        if name is None:
            name = f"{agent_cls.__name__.lower()}-{next(self._seq)}"
        if not isinstance(name, str) or not name or name.startswith("_"):
            msg = f"agent names are non-empty str not starting with '_', got {name!r}"
            raise ValueError(msg)
        caps = list(agent_cls.capabilities if capabilities is None else capabilities)
        return self._launch(
            agent_cls, name, caps, restart, max_restarts, restart_window, tuple(args), dict(kwargs or {}), "agent"
        )

    def _launch(
        self,
        agent_cls: type[Agent],
        name: str,
        caps: list[str],
        restart: str,
        max_restarts: int,
        restart_window: float,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        kind: str,
    ) -> AgentRef:
        ctx = AgentContext(
            agent_id=name,
            state=self.state,
            store=self.store,
            sync=self.sync,
            events=self.events,
            comm=self.comm,
            capabilities=caps,
            _peer=self._peer,
        )
        spec = BootSpec(
            name, agent_cls, args, kwargs, ctx, self.id, self._authkey, self._rundir, self._node.address,
        )
        boot = dumps(spec, f"agent {name!r} (its class or arguments)")
        with self._lock:
            if name in self._records and self._records[name].status not in ("stopped", "gave up"):
                msg = f"an agent named {name!r} is already running"
                raise ValueError(msg)
            self._records[name] = None  # type: ignore[assignment]  # reserve the name
        try:
            started = start_agent_process(self._zygote, boot, name, self.start_timeout)
        except BaseException:
            with self._lock:
                self._records.pop(name, None)
            raise
        record = AgentRecord(name, boot, caps, restart, max_restarts, restart_window, started, kind=kind,
                             ref=AgentRef(name, started.address, self.id))
        with self._lock:
            self._records[name] = record
        self._node.names[name] = started.address
        self._supervisor.watch(record)
        self.events.emit(
            name, EventType.AGENT_JOINED, {"agent_id": name, "capabilities": caps, "restarts": 0, "kind": kind}
        )
        return record.ref

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
        last-write-wins on a hybrid logical clock). The same name returns the
        same store.
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
        refs = [
            self._launch(
                Replica, replica, [], "permanent", 10, 5.0, (tuple(n for n in names if n != replica),), {}, "service"
            )
            for replica in names
        ]
        store = ReplicatedState(name, refs, quorum, conflict_resolver, dumps=cloudpickle.dumps)
        with self._lock:
            self._replicated[name] = store
        return store

    def _restart(self, record: AgentRecord) -> Started:
        started = start_agent_process(self._zygote, record.boot, record.name, self.start_timeout)
        self._node.names[record.name] = started.address  # reachable before it counts as running
        return started

    def _on_exit(self, record: AgentRecord, reason: str) -> None:
        if self._node.names.get(record.name) == record.started.address:
            del self._node.names[record.name]
        self._announce_exit(record, reason, record.started.process.exitcode)

    def _announce_exit(self, record: Any, reason: str, exit_code: int | None) -> None:
        """Release what the agent held, then publish AGENT_LEFT (both backends)."""
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

    def _stop_record(self, record: AgentRecord, timeout: float) -> None:
        record.status = "stopping"
        try:
            record.ref.stop(timeout=timeout)
        except Exception:  # noqa: BLE001 - dead or stuck: reaped below
            pass
        reap(record.started.process, timeout)
        record.exit_handled.wait(timeout)  # AGENT_LEFT is out when this returns
        record.status = "stopped"

    def get_agent(self, agent_id: str) -> AgentRef:
        return self._peer(agent_id)

    # -- tasks -------------------------------------------------------------

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
    ) -> list[Any]:
        """Run one task per payload over every capable agent; results in input order."""
        return list(self.imap(
            task_type, payloads, timeout=timeout, retries=retries, progress=progress,
            return_exceptions=return_exceptions,
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
    ) -> Any:
        """Like `map`, as a generator: payloads are read lazily, a bounded
        number are in flight, and results come in input order (or as they
        complete with `ordered=False`). For pipelines larger than memory."""
        return self._tasks.imap(
            task_type, payloads, timeout=timeout, retries=retries, return_exceptions=return_exceptions,
            ordered=ordered, progress=progress,
        )

    def _capable(self, task_type: str) -> tuple[list[str], list[str]]:
        """Names of running agents with `task_type`, and every capability seen."""
        with self._lock:
            running = [r for r in self._records.values()
                       if r is not None and r.status == "running" and self._still_alive(r)]
        names = [r.name for r in running if task_type in r.capabilities]
        return names, sorted({c for r in running for c in r.capabilities})

    def _still_alive(self, record: AgentRecord) -> bool:
        # A process that just died is not "running" any more, even before the
        # supervisor has handled its exit (its pidfd says so at once).
        return record.started.process.is_alive()

    # -- introspection -----------------------------------------------------

    def agent_info(self) -> list[dict[str, Any]]:
        """One row per process this runtime started (psutil figures included)."""
        with self._lock:
            records = [r for r in self._records.values() if r is not None]
        rows = [self._info(r) for r in records]
        self._monitor.keep_only({row["pid"] for row in rows if row["alive"]})
        return rows

    def _info(self, record: AgentRecord) -> dict[str, Any]:
        process = record.started.process
        row = info_row(record, process.pid, process.is_alive() and record.status == "running")
        if row["alive"]:
            self._monitor.read(row, process.pid)
            try:
                depths = self._node.request(record.started.address, STATS, "", b"", 5.0)
                row["mailbox"] = depths.get(record.name)
            except Exception:  # noqa: BLE001 - it may be dying right now
                pass
        return row

    def control_info(self) -> dict[str, Any]:
        """How another process reaches this runtime's control channel.

        Holds the runtime's secret key: whoever reads it may talk to every
        agent. `actors run` writes it to a file only its owner can read.
        """
        return {"address": self._node.address, "key": self._authkey.hex(), "pid": os.getpid(),
                "runtime_id": self.id}

    # -- lifecycle ---------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            msg = "this runtime has been shut down"
            raise ActorDeadError(msg)

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop every agent (running `on_stop`), every service, and reap all.

        Safe to call twice; called at interpreter exit if it wasn't.
        """
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.shutdown)
        self._supervisor.stop_restarting()
        with self._lock:
            records = [r for r in self._records.values() if r is not None and r.status not in ("stopped", "gave up")]
        for record in records:
            record.status = "stopping"
        stops = []
        for record in records:
            try:
                stops.append(record.ref.stop(block=False))
            except Exception:  # noqa: BLE001
                stops.append(None)
        for record, future in zip(records, stops):
            try:
                if future is not None:
                    future.get(timeout=timeout)
            except Exception:  # noqa: BLE001
                pass
            reap(record.started.process, timeout)
            record.status = "stopped"
        self._supervisor.close()
        self._stop_services(timeout)
        for record in records:
            record.started.control.close()
            record.started.process.close()
        self._zygote.close()
        shutil.rmtree(self._rundir, ignore_errors=True)

    def _stop_services(self, timeout: float) -> None:
        for ref in reversed(self._services):
            try:
                ref.stop(timeout=timeout)
            except pykka.ActorDeadError:
                pass
        self._node.close()

    close = shutdown

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return f"<Runtime {self.id[:8]} agents={sorted(self.agents)}>"


MultiAgentSystem = Runtime
