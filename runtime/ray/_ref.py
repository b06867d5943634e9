"""`RayRef`: the `AgentRef` of the Ray backend, with the same behaviour.

A ref names an actor hosted by a Ray actor (its *host*, a named Ray actor).
An agent's host gets a new name at each restart; the runtime's registry (a
service) maps the agent's name to its current host, so refs follow it.
Every message carries the sending process's id and a sequence number per
host incarnation; the host hands messages to the pykka mailbox in that
order, so one sender's tells and asks keep their order although the host
runs calls concurrently (it must: a lock's parked ask can't block others).

A ref to an actor of the host whose process sends (the services asking
each other in the services host: the task ledger's records and events)
skips Ray: the message goes straight into the actor's pykka mailbox, as
on the local backend. Every message of that process to that host goes
this way, so they keep their order; and a message put there before the
process answers a call is in the mailbox before any later call from
anywhere arrives.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pykka
from pykka.messages import _ActorStop

from actors import ActorDeadError, AskTimeout, MessageSerializationError
from runtime.wire._channel import AskFuture, local_waiter
from runtime._ref import AgentProxy, stop_future

__all__ = ["DRIVER_INBOX", "REGISTRY", "SERVICES", "RayRef", "ray_module"]

DRIVER_INBOX = "_driver_inbox"  # where the runtime's own handlers' deliveries wait
REGISTRY = "_registry"  # agent name -> the name of its current host
SERVICES = "services"  # the name of the services' host

_SENDER = uuid.uuid4().hex  # this process, as a sender
_seq: dict[str, int] = {}  # host incarnation (actor id) -> next sequence number
_seq_lock = threading.Lock()
# (namespace, host name) -> the `Host` running in this process under that
# name (see `register_local_host`): its actors are sent to directly.
_local_hosts: dict[tuple[str, str | None], Any] = {}


def register_local_host(namespace: str, host_name: str, host: Any) -> None:
    """`host` (a `Host`) runs in this process: refs to its actors sent from
    here skip Ray (called in the host's process, as it starts)."""
    _local_hosts[(namespace, host_name)] = host


def ray_module() -> Any:
    try:
        import ray  # noqa: PLC0415 - Ray is optional: imported only when used
    except ImportError:
        msg = "backend='ray' needs Ray: pip install 'actors-runtime[ray]' (or pip install ray)"
        raise ImportError(msg) from None
    return ray


class RayRef:
    """Reference to an actor hosted in a Ray actor, by name; picklable."""

    __slots__ = ("_attrs", "_dead", "_handle", "_host", "_namespace", "name")

    def __init__(self, name: str, host: str | None, namespace: str) -> None:
        self.name = name
        self._host = host
        self._namespace = namespace
        self._handle: Any = None
        self._dead = False
        self._attrs: dict[tuple[str, ...], tuple[bool, bool]] | None = None  # see AgentProxy

    def __reduce__(self) -> Any:
        return (RayRef, (self.name, self._host, self._namespace))

    def __repr__(self) -> str:
        return f"<RayRef {self.name!r}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RayRef) and (other.name, other._namespace) == (self.name, self._namespace)

    def __hash__(self) -> int:
        return hash((self.name, self._namespace))

    def driver_delivery_ref(self) -> RayRef:
        """Deliveries for handlers in the runtime's own process wait here."""
        return RayRef(DRIVER_INBOX, SERVICES, self._namespace)

    def _resolve(self) -> Any:
        if self._handle is None or self._dead:
            ray = ray_module()
            host = self._host
            if host is None:  # an agent: ask the registry where it lives now
                from pykka.messages import ProxyCall  # noqa: PLC0415

                registry = RayRef(REGISTRY, SERVICES, self._namespace)
                host = registry.ask(ProxyCall(("lookup",), (self.name,), {}), timeout=30)
            try:
                if host is None:
                    raise ValueError(host)
                self._handle = ray.get_actor(host, namespace=self._namespace)
            except ValueError:
                self._handle = None
                msg = f"no agent named {self.name!r} is running"
                raise ActorDeadError(msg) from None
            self._dead = False
        return self._handle

    def _submit(self, method: str, message: Any) -> Any:
        handle = self._resolve()
        key = handle._actor_id.hex()
        with _seq_lock:  # numbering and submission in one step: no gaps, no swaps
            seq = _seq.get(key, 0)
            try:
                result = getattr(handle, method).remote(self.name, message, _SENDER, seq)
            except Exception as exc:
                msg = f"message can't be pickled: {type(exc).__name__}: {exc}"
                raise MessageSerializationError(msg) from exc
            _seq[key] = seq + 1
        return result

    def _get(self, object_ref: Any, timeout: float | None) -> Any:
        ray = ray_module()
        try:
            return ray.get(object_ref, timeout=timeout)
        except ray.exceptions.GetTimeoutError:
            msg = f"agent {self.name!r} did not answer within {timeout} s"
            raise AskTimeout(msg) from None
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause
            if isinstance(cause, pykka.ActorDeadError) and not isinstance(cause, ActorDeadError):
                raise ActorDeadError(str(cause)) from None
            raise cause from None
        except ray.exceptions.RayActorError:
            self._dead = True
            msg = f"agent {self.name!r} died before answering"
            raise ActorDeadError(msg) from None

    def tell(self, message: Any) -> None:
        if _local_hosts and (host := _local_hosts.get((self._namespace, self._host))) is not None:
            host.put(self.name, message, None)
            return
        self._submit("tell", message)

    def ask(self, message: Any, *, block: bool = True, timeout: float | None = None) -> Any:
        if _local_hosts and (host := _local_hosts.get((self._namespace, self._host))) is not None:
            reply: pykka.ThreadingFuture[Any] = pykka.ThreadingFuture()
            host.put(self.name, message, reply)
            future = AskFuture(local_waiter(reply, f"actor {self.name!r}"))
            return future.get(timeout=timeout) if block else future
        try:
            object_ref = self._submit("ask", message)
        except ActorDeadError as exc:
            future = AskFuture.failed(exc)
        else:
            future = AskFuture(lambda t: self._get(object_ref, t))
        return future.get(timeout=timeout) if block else future

    def stop(self, *, block: bool = True, timeout: float | None = None) -> Any:
        def forget() -> None:
            self._dead = True  # the host exits: resolve the name again next time

        result = stop_future(self.ask(_ActorStop(), block=False), forget)
        return result.get(timeout=timeout) if block else result

    def is_alive(self) -> bool:
        self._dead = True  # look the name up afresh
        try:
            handle = self._resolve()
            return bool(ray_module().get(handle.alive.remote(self.name), timeout=30))
        except Exception:  # noqa: BLE001 - gone, or going
            return False

    def proxy(self) -> AgentProxy:
        return AgentProxy(self)  # any ref with ask/tell
