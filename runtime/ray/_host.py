"""The Ray side of the Ray backend: a Ray actor that hosts pykka actors.

One host per agent (a Ray actor, so Ray places it on any node of the
cluster) and one host for every service of the runtime (state store,
event bus, sync primitives, topics, streams), so the many small service
actors don't each cost a Ray worker process. Inside a host, each actor is
the same pykka actor as on the local backend: the same code runs.
"""

from __future__ import annotations

import os
import pickle
import sys
import threading
import time
from typing import Any, cast

import pykka
from pykka._envelope import Envelope
from pykka.messages import ProxyCall

from actors import ActorDeadError
from actors._base import ActorBase, Deliver
from actors._context import set_current_agent_id, set_delivery_ref_factory
from actors._services import start_services
from actors._snapshot import SnapshotHost
from runtime.local._host import EXIT_FAILED
from runtime.ray._ref import DRIVER_INBOX, REGISTRY, SERVICES, RayRef, ray_module, register_local_host
from runtime.wire._serialization import dumps
from runtime.local._supervisor import exit_reason

_EXIT_GRACE = 5.0  # seconds Ray gets to end a host whose agent is gone, before it exits by itself

__all__ = ["EXITS", "DriverInbox", "Host", "Registry", "host_class"]

EXITS = "_exits"  # a services actor where hosts note why their agent ended


class DriverInbox(ActorBase):
    """Deliveries for handlers in the runtime's process, collected until taken."""

    def __init__(self) -> None:
        super().__init__()
        self._items: list[Deliver] = []
        self._waiting: Any = None

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Deliver):
            self._items.append(message)
            if self._waiting is not None:
                self._waiting.set(self._take())
                self._waiting = None
        return None

    def _handle_receive(self, message: Any) -> Any:
        if isinstance(message, Deliver):  # keep it: it is for another process
            return self.on_receive(message)
        return super()._handle_receive(message)

    def _take(self) -> list[Deliver]:
        items, self._items = self._items, []
        return items

    def take(self) -> list[Deliver]:
        """Everything delivered so far; waits for the next delivery if none."""
        if self._items:
            return self._take()
        if self._waiting is not None:
            self._waiting.set([])
        self._waiting = self._defer_reply()
        return []

    def release(self) -> None:
        if self._waiting is not None:
            self._waiting.set(None)
            self._waiting = None


class Registry(ActorBase):
    """Which host runs each agent now (hosts get a new name at each restart)."""

    def __init__(self) -> None:
        super().__init__()
        self._hosts: dict[str, str] = {}

    def register(self, name: str, host: str) -> None:
        self._hosts[name] = host

    def unregister(self, name: str, host: str) -> None:
        if self._hosts.get(name) == host:
            del self._hosts[name]

    def lookup(self, name: str) -> str | None:
        return self._hosts.get(name)


class ExitLog(ActorBase):
    """Why each agent's last process ended, as its host noted it."""

    def __init__(self) -> None:
        super().__init__()
        self._reasons: dict[str, str] = {}

    def note(self, name: str, reason: str) -> None:
        self._reasons[name] = reason

    def pop(self, name: str) -> str | None:
        return self._reasons.pop(name, None)


class _Started(pykka.Actor):
    """Mixin: reports the outcome of `on_start` to whoever started the agent."""

    # Set on the hosted class (`Host.start_agent`).
    _outcome: pykka.ThreadingFuture[None]
    _failed: bool
    _stop_requested: bool

    def _actor_loop_setup(self) -> None:
        try:
            self.on_start()
        except Exception:  # noqa: BLE001 - start_agent raises it to the runtime
            self._outcome.set_exception()
            pykka.ActorRegistry.unregister(self.actor_ref)
            self.actor_stopped.set()
            return
        self._outcome.set(None)

    def _handle_failure(self, *exc_info: Any) -> None:
        type(self)._failed = True
        super()._handle_failure(*exc_info)

    def _stop(self) -> None:
        # A stop was asked (by any ref): whatever on_stop then does, the
        # exit is a stop, never restarted (see `_host.STOP_REQUESTED`).
        type(self)._stop_requested = True
        super()._stop()


class Host:
    """A Ray actor's body: named pykka actors, fed in per-sender order."""

    def __init__(self, namespace: str, host_name: str) -> None:
        self._namespace = namespace
        self._host_name = host_name
        self._actors: dict[str, pykka.ActorRef[Any]] = {}
        self._expected: dict[str, int] = {}
        self._held: dict[str, dict[int, tuple[str, Any, Any]]] = {}
        self._lock = threading.Lock()
        self._ended = threading.Event()  # the agent is gone: `wait_forever` ends the host through Ray

    # -- what runs here ----------------------------------------------------

    def _ref(self, name: str) -> RayRef:
        return RayRef(name, self._host_name, self._namespace)

    def spawn_service(self, cls: type[pykka.Actor], name: str, *args: Any, **kwargs: Any) -> RayRef:
        """Start a service actor in this host; a ref that works anywhere."""
        self._actors[name] = cls.start(*args, **kwargs)
        return self._ref(name)

    def start_services(self, max_history: int, state_path: str | None, synchronous: str,
                       sys_path: list[str], task_records: int | None = 10_000) -> None:
        _extend_path(sys_path)
        # The services' refs to each other skip Ray (the task ledger's records
        # and events can then be told: see `_ref`).
        register_local_host(self._namespace, self._host_name, self)
        start_services(self.spawn_service, retire=lambda name: self._actors.pop(name, None),
                       dumps=dumps, max_history=max_history, state_path=state_path,
                       synchronous=synchronous, authenticated=False,  # Ray can't tell who called
                       task_records=task_records)
        self.spawn_service(DriverInbox, DRIVER_INBOX)
        self.spawn_service(ExitLog, EXITS)
        self.spawn_service(Registry, REGISTRY)

    def start_agent(self, name: str, boot: bytes, sys_path: list[str], timeout: float) -> tuple[int, str]:
        """Run the agent here; returns (pid, Ray node id) once `on_start` ran
        (raises what it raised).

        `boot` is (class, args, kwargs, context) pickled by the runtime,
        loaded only once the runtime's `sys.path` is known here too.
        """
        _extend_path(sys_path)
        agent_cls, args, kwargs, ctx = pickle.loads(boot)
        set_current_agent_id(name)
        own = RayRef(name, None, self._namespace)
        set_delivery_ref_factory(lambda: own)
        # With `snapshot`: durable state, as on the local backend (`actors._snapshot`).
        bases = (_Started, SnapshotHost) if getattr(agent_cls, "_durable", False) else (_Started,)
        hosted = cast("type[_Started]", type(agent_cls.__name__, (*bases, agent_cls), {
            "ctx": ctx, "capabilities": ctx.capabilities, "_outcome": pykka.ThreadingFuture(),
            "_failed": False, "_stop_requested": False, "_snapshot_dumps": staticmethod(dumps),
            "__module__": agent_cls.__module__, "__qualname__": agent_cls.__qualname__,
        }))
        ref = hosted.start(*args, **kwargs)
        hosted._outcome.get(timeout=timeout)
        self._actors[name] = ref
        threading.Thread(target=self._exit_with, args=(name, ref, hosted), daemon=True).start()
        return os.getpid(), ray_module().get_runtime_context().get_node_id()

    def _exit_with(self, name: str, ref: pykka.ActorRef[Any], hosted: type[_Started]) -> None:
        # The process lives as long as its agent, as on the local backend.
        ref.actor_stopped.wait()
        failed = hosted._failed and not hosted._stop_requested
        reason = f"crashed: {exit_reason(EXIT_FAILED)}" if failed else "stopped"
        try:
            RayRef(EXITS, SERVICES, self._namespace).ask(ProxyCall(("note",), (name, reason), {}), timeout=10)
        except Exception:  # noqa: BLE001 - the runtime is going away too
            pass
        sys.stdout.flush()
        # Leave through Ray (`wait_forever` calls exit_actor): a process that
        # just exits is reported by the raylet as a worker that "died ...
        # SYSTEM_ERROR ... OOM killer", a paragraph on every clean shutdown.
        self._ended.set()
        time.sleep(_EXIT_GRACE)
        os._exit(EXIT_FAILED if hosted._failed else 0)  # Ray did not end it: end it anyway

    # -- messages ----------------------------------------------------------

    def _deliver(self, name: str, message: Any, reply: Any, sender: str, seq: int) -> None:
        with self._lock:
            expected = self._expected.get(sender, 0)
            if seq > expected:  # an earlier message of this sender is still on its way
                self._held.setdefault(sender, {})[seq] = (name, message, reply)
                return
            if seq < expected:
                return  # already delivered
            self.put(name, message, reply)
            expected += 1
            held = self._held.get(sender, {})
            while expected in held:
                self.put(*held.pop(expected))
                expected += 1
            self._expected[sender] = expected

    def put(self, name: str, message: Any, reply: Any) -> None:
        """Into actor `name`'s mailbox (`reply`: its pykka future, or None);
        also called directly by this process's refs (`_ref`)."""
        ref = self._actors.get(name)
        if ref is None or not ref.is_alive():
            if reply is not None:
                reply.set_exception((ActorDeadError, ActorDeadError(f"no actor named {name!r} is running"), None))
            return
        ref.actor_inbox.put(Envelope(message, reply_to=reply))

    def ask(self, name: str, message: Any, sender: str, seq: int) -> Any:
        reply: pykka.ThreadingFuture[Any] = pykka.ThreadingFuture()
        self._deliver(name, message, reply, sender, seq)
        return reply.get()

    def tell(self, name: str, message: Any, sender: str, seq: int) -> None:
        self._deliver(name, message, None, sender, seq)

    def alive(self, name: str) -> bool:
        ref = self._actors.get(name)
        return ref is not None and ref.is_alive()

    def stats(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "node": ray_module().get_runtime_context().get_node_id(),
                "mailbox": {n: r.actor_inbox.qsize() for n, r in self._actors.items()
                            if hasattr(r.actor_inbox, "qsize")}}

    def wait_forever(self) -> None:
        """Returns only as the host exits, its agent gone (a sentinel the
        runtime waits on; it errors if the host dies otherwise)."""
        self._ended.wait()
        ray_module().actor.exit_actor()  # an exit Ray counts as intended


def _extend_path(sys_path: list[str]) -> None:
    # Where the runtime's process finds its modules (the current directory,
    # a test folder, ...): agents' classes pickled by reference live there.
    sys.path[:0] = [p for p in sys_path if p not in sys.path and os.path.isdir(p)]


_host_class: Any = None


def host_class() -> Any:
    """`Host` as a Ray actor class (made on first use: Ray is optional)."""
    global _host_class
    if _host_class is None:
        _host_class = ray_module().remote(Host)
    return _host_class
