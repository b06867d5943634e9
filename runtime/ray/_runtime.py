"""`Runtime(backend="ray")`: the same runtime, with Ray placing the actors.

Every agent runs in a Ray actor of its own (so a Ray cluster spreads them
over its machines) and every service of the runtime in one more Ray actor.
Refs are `RayRef`s; the services, `self.ctx`, task routing, events and the
supervisor's rules are the local backend's own code. Supervision is ours,
not Ray's (Ray restarts nothing here): a sentinel call on each host errors
the moment the host dies, and then AGENT_LEFT, the release of its locks,
the restart policy and the restart intensity apply exactly as locally.
"""

from __future__ import annotations

import atexit
import functools
import itertools
import logging
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pykka.messages import ProxyCall

from actors import Agent, AgentContext, AgentStartError, EventType
from actors._base import HandlerActor
from actors._services import service_clients
from actors._task_ledger import check_task_records
from runtime.local._launcher import preload_modules
from runtime._monitor import info_row
from runtime.ray._host import EXITS, host_class
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
        self._services_host = host_class().options(
            name=SERVICES, namespace=self.namespace, max_concurrency=1000, num_cpus=0
        ).remote(self.namespace, SERVICES)
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

    def _start_host(self, name: str, boot: bytes) -> tuple[Any, str, int]:
        ray = self._ray
        host = f"agent:{name}:{next(self._incarnations)}"  # a fresh name per process
        handle = host_class().options(
            name=host, namespace=self.namespace, max_concurrency=1000, num_cpus=0
        ).remote(self.namespace, host)
        try:
            pid = ray.get(handle.start_agent.remote(name, boot, sys.path, self.start_timeout),
                          timeout=self.start_timeout + 60)
        except ray.exceptions.RayTaskError as exc:
            ray.kill(handle)
            raise exc.cause from None
        except ray.exceptions.RayActorError as exc:
            raise AgentStartError(f"agent {name!r} died before on_start finished: {exc}") from None
        self._registry.ask(ProxyCall(("register",), (name, host), {}), timeout=30)
        return handle, host, pid

    def _launch(
        self, agent_cls: type[Agent], name: str, caps: list[str], restart: str, max_restarts: int,
        restart_window: float, args: tuple[Any, ...], kwargs: dict[str, Any], kind: str,
        *, mailbox_size: int = MAILBOX_SIZE,
    ) -> RayRef:
        # `mailbox_size` is checked, not applied: Ray queues an actor's calls
        # itself, and its own bound (`max_pending_calls`) fails a call
        # rather than making its sender wait.
        check_mailbox_size(mailbox_size)
        ctx = AgentContext(agent_id=name, state=self.state, store=self.store, sync=self.sync, events=self.events,
                           comm=self.comm, capabilities=caps, _peer=self._peer)
        boot = dumps((agent_cls, args, kwargs, ctx), f"agent {name!r} (its class or arguments)")
        with self._lock:
            if name in self._records and self._records[name].status not in ("stopped", "gave up"):
                msg = f"an agent named {name!r} is already running"
                raise ValueError(msg)
            self._records[name] = None  # type: ignore[assignment]  # reserve the name
        try:
            handle, host, pid = self._start_host(name, boot)
        except BaseException:
            with self._lock:
                self._records.pop(name, None)
            raise
        record = RayRecord(name, boot, caps, restart, max_restarts, restart_window, handle, host, pid,
                           handle.wait_forever.remote(), kind=kind, ref=self._peer(name))
        with self._lock:
            self._records[name] = record
        self.events.emit(name, EventType.AGENT_JOINED,
                         {"agent_id": name, "capabilities": caps, "restarts": 0, "kind": kind})
        return record.ref

    # -- supervision -----------------------------------------------------------

    def _supervise(self) -> None:
        ray = self._ray
        while not self._closed:
            with self._lock:
                watched = {r.sentinel: r for r in self._records.values()
                           if r is not None and r.status in ("running", "stopping")}
            if not watched:
                time.sleep(0.01)
                continue
            ready, _ = ray.wait(list(watched), num_returns=1, timeout=0.1)
            for sentinel in ready:
                try:
                    self._handle_exit(watched[sentinel])
                except Exception:
                    logger.exception("ray supervisor failed handling %s", watched[sentinel].name)

    def _handle_exit(self, record: RayRecord) -> None:
        try:
            noted = self._exits.ask(ProxyCall(("pop",), (record.name,), {}), timeout=10)
        except Exception:  # noqa: BLE001
            noted = None
        requested = record.status in ("stopping", "stopped") or noted == "stopped"
        reason = "stopped" if requested else (noted or "crashed: its Ray actor process died")
        record.status = "exited"
        self._on_exit(record, reason)
        self._restarter.after_exit(record, not requested, self._next_incarnation)
        if record.status != "running":
            record.exit_handled.set()

    def _next_incarnation(self, record: RayRecord) -> None:
        record.handle, record.host, record.pid = self._start_host(record.name, record.boot)
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
            row = info_row(r, r.pid, r.status == "running", node=None)
            if row["alive"]:
                try:
                    stats = self._ray.get(r.handle.stats.remote(), timeout=5)
                    row["mailbox"] = stats["mailbox"].get(r.name)
                    row["node"] = stats.get("node")
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
        self._stop_all(timeout)  # the supervisor thread runs on, handling these exits
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

    def __repr__(self) -> str:
        return f"<Runtime ray {self.id[:8]} agents={sorted(self.agents)}>"

