"""`Runtime(backend="ray")`: the same runtime, with Ray placing the actors.

Every agent runs in a Ray actor of its own, spread over the cluster's
nodes (or placed with `spawn(..., node=..., resources=...)`: see
`_placement`), and every service of the runtime in one more Ray actor,
pinned to the node of the runtime's own process.
Refs are `RayRef`s; the services, `self.ctx`, task routing, events and the
supervisor's rules are the local backend's own code. Supervision is ours,
not Ray's (Ray restarts nothing here): a sentinel call on each host errors
the moment the host dies, and then AGENT_LEFT, the release of its locks,
the restart policy and the restart intensity apply exactly as locally.
When a node is lost, each of its agents is announced as "crashed: node
<id> lost" and restarted (under its policy) on a surviving node; exits are
handled each in a thread of its own, so the agents of a lost node restart
at once rather than one after another. If the services' node is lost, the
runtime can't go on (its state, registry and locks lived there): the
supervisor logs it and stops restarting; shut the runtime down.
"""

from __future__ import annotations

import atexit
import functools
import itertools
import logging
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from pykka.messages import ProxyCall

from actors import Agent, AgentContext, AgentStartError, EventType
from actors._base import HandlerActor
from actors._services import service_clients
from actors._task_ledger import check_task_records
from runtime.local._launcher import preload_modules
from runtime._monitor import info_row
from runtime.ray._host import EXITS, host_class
from runtime.ray._placement import Placement, alive_nodes, check_placement, lost_node_reason, services_options
from runtime.ray._ref import DRIVER_INBOX, REGISTRY, SERVICES, RayRef, ray_module
from runtime.wire._reactor import MAILBOX_SIZE, check_mailbox_size
from runtime._ref import check_agent_id
from runtime._backends import Runtime
from runtime.wire._serialization import dumps
from runtime.local._supervisor import Restarter, SupervisedRecord
from runtime._tasks import TaskRouter

__all__ = ["RayRuntime", "ray_peer_ref"]

logger = logging.getLogger("runtime")


def ray_peer_ref(namespace: str, agent_id: str) -> RayRef:
    """A ref to `agent_id` of the runtime in Ray namespace `namespace`."""
    return RayRef(check_agent_id(agent_id), None, namespace)


@dataclass
class RayRecord(SupervisedRecord):
    """An agent in a Ray actor process of its own (a `Host`)."""

    handle: Any
    host: str
    pid: int
    sentinel: Any  # a call that errors when the host's process dies
    node: str  # the Ray node id of the current host
    placement: Placement


class RayRuntime(Runtime):
    """The Ray backend of `Runtime`; made by `Runtime(backend="ray")`."""

    def __init__(
        self,
        *,
        state_path: str | None = None,
        max_history: int = 1000,
        backend: str = "ray",
        start_timeout: float = 60.0,
        state_synchronous: str = "NORMAL",
        address: str | None = None,
        num_cpus: int | None = None,
        preload: Sequence[str] | str = (),
        task_records: int | None = 10_000,
    ) -> None:
        # Ray's workers import what they run themselves; `preload` is only
        # checked, so one spec serves both backends.
        preload_modules(preload)
        ray = ray_module()
        self._ray = ray
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            ray.init(address=address, num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        self._init_bookkeeping(start_timeout)
        self.namespace = f"actors-{self.id}"
        self._restarter = Restarter(self._on_restarted, self._on_gave_up)
        self._placing = threading.local()  # `spawn`'s placement, read by `_launch` in the same thread
        self.node: str = ray.get_runtime_context().get_node_id()  # this process's Ray node
        self.services_node = self.node  # where the services host is pinned (see `_placement`)
        self._services_host = host_class().options(
            name=SERVICES, namespace=self.namespace, max_concurrency=1000, num_cpus=0, **services_options(ray)
        ).remote(self.namespace, SERVICES)
        self._services_sentinel = self._services_host.wait_forever.remote()
        self.services_lost: str | None = None  # why, once the services host has died
        ray.get(self._services_host.start_services.remote(max_history, state_path, state_synchronous, sys.path,
                                                          check_task_records(task_records)))

        def service(name: str) -> RayRef:
            return RayRef(name, SERVICES, self.namespace)

        self._peer = functools.partial(ray_peer_ref, self.namespace)
        refs = {name: service(name) for name in ("_state", "_events", "_sync", "_pubsub", "_streams")}
        self.state, self.store, self.events, self.sync, self.comm = service_clients(refs, self._peer)
        self._exits = service(EXITS)
        self._registry = service(REGISTRY)
        self._incarnations = itertools.count(1)
        self._tasks = TaskRouter(self)
        self._handlers = HandlerActor.start()  # runs this process's subscribed handlers
        threading.Thread(target=self._pump_deliveries, name="ray-deliveries", daemon=True).start()
        threading.Thread(target=self._supervise, name="ray-supervisor", daemon=True).start()
        atexit.register(self.shutdown)

    # -- this process's handlers ---------------------------------------------

    def _pump_deliveries(self) -> None:
        inbox = RayRef(DRIVER_INBOX, SERVICES, self.namespace)
        while not self._closed:
            try:
                items = inbox.ask(ProxyCall(("take",), (), {}), timeout=None)
            except Exception:  # noqa: BLE001 - shutting down
                return
            if items is None:
                return
            for delivery in items:
                self._handlers.tell(delivery)

    # -- agents --------------------------------------------------------------

    def spawn(  # type: ignore[override]  # also node= and resources=; a RayRef (AgentRef's surface)
        self, agent_cls: type[Agent], name: str | None = None, *, node: str | None = None,
        resources: Mapping[str, float] | None = None, **options: Any,
    ) -> RayRef:
        """`Runtime.spawn`, with where on the cluster the agent runs.

        `node`: a Ray node id (see `nodes()`, `rt.node`) to pin the agent
        to; `resources`: Ray custom resources its host reserves (e.g.
        `{"gpu_box": 1}`: it goes to a node that has them). Neither: the
        node running the fewest of this runtime's agents. A restart after
        the node was lost goes to a surviving node.
        """
        self._placing.value = check_placement(self._ray, node, resources)
        try:
            return super().spawn(agent_cls, name, **options)  # type: ignore[return-value]
        finally:
            self._placing.value = None

    def nodes(self) -> list[str]:
        """Ids of the Ray cluster's live nodes (for `spawn(..., node=...)`)."""
        return alive_nodes(self._ray)

    def _start_host(self, name: str, boot: bytes, placement: Placement, *,
                    restart: bool = False) -> tuple[Any, str, int, str]:
        ray = self._ray
        host = f"agent:{name}:{next(self._incarnations)}"  # a fresh name per process
        with self._lock:
            busy = [r.node for r in self._records.values() if r is not None and r.status == "running"]
        handle = host_class().options(
            name=host, namespace=self.namespace, max_concurrency=1000, num_cpus=0,
            **placement.options(ray, busy, restart=restart),
        ).remote(self.namespace, host)
        try:
            pid, node = ray.get(handle.start_agent.remote(name, boot, sys.path, self.start_timeout),
                                timeout=self.start_timeout + 60)
        except ray.exceptions.RayTaskError as exc:
            ray.kill(handle)
            raise exc.cause from None
        except ray.exceptions.RayActorError as exc:
            raise AgentStartError(f"agent {name!r} died before on_start finished: {exc}") from None
        except ray.exceptions.ActorUnschedulableError as exc:  # its node went between choice and start
            raise AgentStartError(f"agent {name!r} could not be placed: {exc}") from None
        except ray.exceptions.GetTimeoutError:
            ray.kill(handle)  # e.g. no live node has the resources it asks for
            msg = f"agent {name!r} was not placed and started within {self.start_timeout + 60} s"
            raise AgentStartError(msg) from None
        self._registry.ask(ProxyCall(("register",), (name, host), {}), timeout=30)
        return handle, host, pid, node

    def _launch(  # type: ignore[override]  # a RayRef: AgentRef's surface, not its class
        self, agent_cls: type[Agent], name: str, caps: list[str], restart: str, max_restarts: int,
        restart_window: float, args: tuple[Any, ...], kwargs: dict[str, Any], kind: str,
        *, mailbox_size: int = MAILBOX_SIZE,
    ) -> RayRef:
        # `mailbox_size` is checked, not applied: Ray queues an actor's calls
        # itself, and its own bound (`max_pending_calls`) fails a call
        # rather than making its sender wait.
        check_mailbox_size(mailbox_size)
        if getattr(agent_cls, "_async_handlers", False):
            msg = (f"{agent_cls.__qualname__} has async def handlers; the Ray backend runs only sync agents "
                   "(use the local backend for async agents)")
            raise NotImplementedError(msg)
        ctx = AgentContext(agent_id=name, state=self.state, store=self.store, sync=self.sync, events=self.events,
                           comm=self.comm, capabilities=caps, _peer=self._peer)
        boot = dumps((agent_cls, args, kwargs, ctx), f"agent {name!r} (its class or arguments)")
        with self._lock:
            if name in self._records and self._records[name].status not in ("stopped", "gave up"):
                msg = f"an agent named {name!r} is already running"
                raise ValueError(msg)
            self._records[name] = None  # reserve the name
        placement = getattr(self._placing, "value", None) or Placement()
        try:
            handle, host, pid, node = self._start_host(name, boot, placement)
        except BaseException:
            with self._lock:
                self._records.pop(name, None)
            raise
        record = RayRecord(name, boot, caps, restart, max_restarts, restart_window, handle, host, pid,
                           handle.wait_forever.remote(), node, placement, kind=kind, ref=self._peer(name))
        with self._lock:
            self._records[name] = record
        self.events.emit(name, EventType.AGENT_JOINED,
                         {"agent_id": name, "capabilities": caps, "restarts": 0, "kind": kind})
        return cast("RayRef", record.ref)

    # -- supervision -----------------------------------------------------------

    def _supervise(self) -> None:
        ray = self._ray
        while not self._closed:
            with self._lock:
                watched = {r.sentinel: r for r in self._records.values()
                           if r is not None and r.status in ("running", "stopping")}
            if self._services_sentinel is not None:
                watched[self._services_sentinel] = None
            ready, _ = ray.wait(list(watched), num_returns=1, timeout=0.1)
            for sentinel in ready:
                record = watched[sentinel]
                if record is None:
                    self._services_lost(sentinel)
                    continue
                # Decided here, before the next look at the table: this exit is
                # handled once, by its own thread (restarts run at once).
                stopping = record.status == "stopping"
                record.status = "exited"
                threading.Thread(target=self._handle_exit_safely, args=(record, stopping, sentinel),
                                 name=f"ray-exit-{record.name}", daemon=True).start()

    def _services_lost(self, sentinel: Any) -> None:
        self._services_sentinel = None
        if self._closed:
            return
        reason = lost_node_reason(self._ray, self.services_node, _error_of(self._ray, sentinel))
        reason = reason or "crashed: its Ray actor process died"
        self._restarter.stop_restarting(timeout=0)
        # Logged before it is set: whoever sees `services_lost` finds the log there too.
        logger.critical("the runtime's services host died (%s): state, events, locks and the registry are gone; "
                        "no agent will be restarted; shut this runtime down", reason)
        self.services_lost = reason

    def _handle_exit_safely(self, record: RayRecord, stopping: bool, sentinel: Any) -> None:
        try:
            self._handle_exit(record, stopping, sentinel)
        except Exception:
            logger.exception("ray supervisor failed handling %s", record.name)
            record.exit_handled.set()

    def _handle_exit(self, record: RayRecord, stopping: bool, sentinel: Any) -> None:
        try:
            noted = self._exits.ask(ProxyCall(("pop",), (record.name,), {}), timeout=10)
        except Exception:  # noqa: BLE001
            noted = None
        requested = stopping or noted == "stopped"
        if requested:
            reason = "stopped"
        else:
            reason = noted or lost_node_reason(self._ray, record.node, _error_of(self._ray, sentinel)) \
                or "crashed: its Ray actor process died"
        self._on_exit(record, reason)
        self._restarter.after_exit(record, not requested, self._next_incarnation)
        if record.status != "running":
            record.exit_handled.set()

    def _next_incarnation(self, record: RayRecord) -> None:
        for attempt in range(3):  # the node chosen may be lost too before the host starts there
            try:
                record.handle, record.host, record.pid, record.node = self._start_host(
                    record.name, record.boot, record.placement, restart=True)
                break
            except AgentStartError:
                if attempt == 2 or self._closed:
                    raise
        record.sentinel = record.handle.wait_forever.remote()

    def _on_exit(self, record: Any, reason: str) -> None:
        try:
            self._registry.ask(ProxyCall(("unregister",), (record.name, record.host), {}), timeout=30)
        except Exception:  # noqa: BLE001 - the runtime may be closing
            logger.debug("could not unregister %s", record.name)
        self._announce_exit(record, reason, None)

    # -- the rest of the runtime's surface ---------------------------------------

    def _still_alive(self, record: Any) -> bool:
        return True  # the sentinel call tells the supervisor; nothing cheaper to ask

    def _reap(self, record: Any, timeout: float) -> None:
        # Ray ends the host's process itself; its exit is handled once the
        # sentinel call fails (and the hosts left are killed at shutdown).
        record.exit_handled.wait(timeout)

    def agent_info(self) -> list[dict[str, Any]]:
        with self._lock:
            records = [r for r in self._records.values() if r is not None]
        rows = []
        for r in records:
            row = info_row(r, r.pid, r.status == "running", node=r.node)
            if row["alive"]:
                try:
                    stats = self._ray.get(r.handle.stats.remote(), timeout=5)
                    row["mailbox"] = stats["mailbox"].get(r.name)
                    row["node"] = stats.get("node") or r.node
                    self._monitor.read(row, stats["pid"])  # figures only for agents on this machine
                except Exception:  # noqa: BLE001 - dying
                    pass
            rows.append(row)
        self._monitor.keep_only({row["pid"] for row in rows if row["alive"]})
        return rows

    def control_info(self) -> dict[str, Any]:
        msg = "actors status is not available for the Ray backend; use Ray's dashboard or `ray status`"
        raise NotImplementedError(msg)

    def shutdown(self, timeout: float = 10.0) -> None:
        if self._closed:
            return
        self._restarter.stop_restarting()
        atexit.unregister(self.shutdown)
        # Without its services no stop can reach an agent (refs find agents
        # through the registry): the hosts are killed below at once.
        self._stop_all(0 if self.services_lost else timeout)  # the supervisor thread runs on, handling exits
        self._closed = True
        for record in self._records.values():
            if record is not None:
                try:
                    self._ray.kill(record.handle)
                except Exception:  # noqa: BLE001
                    pass
        try:
            RayRef(DRIVER_INBOX, SERVICES, self.namespace).ask(ProxyCall(("release",), (), {}), timeout=5)
        except Exception:  # noqa: BLE001
            pass
        self._ray.kill(self._services_host)
        self._handlers.stop()
        if self._owns_ray:
            self._ray.shutdown()

    close = shutdown


def _error_of(ray: Any, sentinel: Any) -> BaseException | None:
    """The error a finished sentinel call ended with (it never returns)."""
    try:
        ray.get(sentinel, timeout=0)
    except Exception as exc:  # noqa: BLE001 - that is what we want
        return exc
    return None

    def __repr__(self) -> str:
        return f"<Runtime ray {self.id[:8]} agents={sorted(self.agents)}>"

