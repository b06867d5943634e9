"""What an agent sees of the system: `self.ctx`, and who "I" am in a process."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "AgentContext",
    "current_agent_id",
    "register_delivery",
    "set_current_agent_id",
    "set_delivery_ref_factory",
]

_process_agent_id = "runtime"
_local = threading.local()


def current_agent_id() -> str:
    """The id that writes and lock grants default to in the calling thread.

    An agent's process sets it to the agent's id; in the runtime's own process
    it is ``"runtime"``.
    """
    return getattr(_local, "agent_id", _process_agent_id)


def set_current_agent_id(agent_id: str, *, thread_only: bool = False) -> None:
    """Set the default id for this process (or only for the calling thread)."""
    global _process_agent_id
    if thread_only:
        _local.agent_id = agent_id
    else:
        _process_agent_id = agent_id


_delivery_ref_factory: Callable[[], Any] | None = None
_aio_factory: Callable[[Any], Any] | None = None


def set_aio_factory(factory: Callable[[Any], Any]) -> None:
    """Set what builds `AgentContext.aio` (`actors._aio`, which imports the
    clients that import this module, registers itself)."""
    global _aio_factory
    _aio_factory = factory


def set_delivery_ref_factory(factory: Callable[[], Any] | None) -> None:
    """Set how this process gets a ref that runs subscribed handlers.

    An agent's process answers with the agent's own ref (handlers run in its
    mailbox order); the runtime's process starts a handler actor.
    """
    global _delivery_ref_factory
    _delivery_ref_factory = factory


def register_delivery(handler: Callable[..., Any], scope: Hashable, service_ref: Any = None) -> tuple[str, Any]:
    """Register `handler` in this process; return its id and the ref of the
    actor that will run its deliveries.

    In an agent's process that actor is the agent itself. Elsewhere the
    service's ref may say how its deliveries reach this process
    (`driver_delivery_ref`, for services that live on another machine); by
    default a handler actor of its own is started here, and stops when the
    handler is unregistered.
    """
    if not callable(handler):
        msg = f"handler must be callable, got {handler!r}"
        raise TypeError(msg)
    from actors._base import HandlerActor, register_handler  # noqa: PLC0415 - base imports nothing here

    own = None
    if _delivery_ref_factory is not None:
        ref = _delivery_ref_factory()
    elif hasattr(service_ref, "driver_delivery_ref"):
        ref = service_ref.driver_delivery_ref()
    else:
        ref = own = HandlerActor.start()
    return register_handler(handler, scope, own), ref


@dataclass
class AgentContext:
    """The services of the runtime an agent belongs to.

    Built by the runtime in its own process and pickled into the agent's
    process; every service here is a thin client of an actor, so it behaves
    the same from any process.
    """

    agent_id: str
    state: Any
    store: Any
    sync: Any
    events: Any
    comm: Any
    capabilities: list[str] = field(default_factory=list)
    _peer: Callable[[str], Any] | None = field(default=None, repr=False)

    @property
    def aio(self) -> Any:
        """Awaitable twins of `state`, `store`, `sync`, `events`, `comm` and
        `peer` (see `actors._aio`), made once per process."""
        views = self.__dict__.get("_aio")
        if views is None:
            views = self.__dict__["_aio"] = _aio_factory(self)  # type: ignore[misc]
        return views

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_aio", None)  # rebuilt where it is used
        return state

    def peer(self, agent_id: str) -> Any:
        """An `AgentRef` to another agent of the same runtime, by name."""
        if self._peer is None:
            msg = "this context has no way to reach peers"
            raise RuntimeError(msg)
        return self._peer(agent_id)
