"""`AgentRef`: a pykka-style ref that works from any process of a runtime.

A ref is a name plus the address of the node that hosted it when last
seen. It pickles as (name, address, runtime id) and binds, wherever it is
unpickled, to that process's node of the same runtime. Sending goes
straight to the hosting process (no broker); if that process is gone the
ref asks the registry where the name lives now, so it follows the agent
through restarts.

An ask made inside an agent's handler carries the handler's chain of
waiting agents, and one that would close a cycle raises `DeadlockError`
instead of being sent (see `actors._chain`).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any, cast

import pykka
from pykka._envelope import Envelope
from pykka.messages import ProxyCall, ProxyGetAttr, ProxySetAttr, _ActorStop

from actors import ActorDeadError, AskTimeout
from actors._base import AttrPath, Introspect, public_attributes
from actors._chain import IN_TASKS, AskChain, chain_now, current, deadlock, task_chain
from runtime.wire._channel import AskFuture, PeerGone, local_waiter
from runtime.wire._future import unwrap
from runtime.wire._node import Node, node_for
from runtime.wire._serialization import dumps
from runtime.wire._frames import ASK, ASK_CHAINED, TELL, encode

__all__ = ["AgentProxy", "AgentRef", "CallableProxy", "agent_urn", "check_agent_id", "peer_ref", "stop_future"]


def agent_urn(runtime_id: str, name: str) -> str:
    """The urn of agent `name` of a runtime: a uuid4-shaped urn derived from
    both, so any process computes it without asking (pykka's urns are uuid4s)."""
    digest = hashlib.blake2b(f"{runtime_id}/{name}".encode(), digest_size=16).digest()
    return uuid.UUID(bytes=digest, version=4).urn


def check_agent_id(agent_id: object) -> str:
    """`agent_id` if it can name an agent; TypeError naming it otherwise."""
    if not isinstance(agent_id, str) or not agent_id:
        msg = f"agent ids are non-empty str, got {agent_id!r}"
        raise TypeError(msg)
    return agent_id


def stop_future(asked: Any, after: Any = None, settle: Any = None) -> AskFuture:
    """pykka's stop result from the ask of `_ActorStop`: True if it was
    running, False if it was already dead; `after()` runs once it is known.

    `settle(timeout)` then waits until the runtime has handled the exit and
    returns its AGENT_LEFT reason: "stopped" also counts as True (the agent
    took the stop, but died in `on_stop` before answering).
    """

    def converted(timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            asked.get(timeout=timeout)
            ran = True
        except ActorDeadError:
            ran = False
        finally:
            if after is not None:
                after()
        if settle is not None:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0)
            ran = settle(remaining) == "stopped" or ran
        return ran

    return AskFuture(converted)


def peer_ref(runtime_id: str, agent_id: str) -> AgentRef:
    """A ref to `agent_id` of the runtime `runtime_id`, resolved on first use.

    It lives here, beside `AgentRef`, because every agent's context carries
    it pickled: unpickling it in a new agent process must import nothing
    the zygote has not already imported.
    """
    return AgentRef(check_agent_id(agent_id), None, runtime_id)


class AgentRef:
    """Reference to an agent (or service actor) of a runtime, by name.

    `tell`, `ask`, `proxy`, `is_alive` and `stop` behave as pykka's, across
    processes. Errors: `ActorDeadError` when the actor isn't running (also
    for asks pending when its process dies), `AskTimeout` on timeout,
    `MessageSerializationError` before sending a message that can't be
    pickled, `DeadlockError` for an ask that would wait on itself.
    """

    __slots__ = (
        "_address", "_agent", "_attrs", "_class_name", "_name_bytes", "_node", "_runtime_id", "_what",
        "actor_urn", "name",
    )

    def __init__(self, name: str, address: str | None, runtime_id: str, class_name: str | None = None) -> None:
        self.name = name
        #: pykka's urn, the same in every process: the agent's own pykka
        #: actor has it too (so log lines name the ref as pykka's do). It
        #: names the agent, as the ref does, so it outlives restarts.
        self.actor_urn = agent_urn(runtime_id, name)
        self._class_name = class_name  # the agent's class, where the ref was made knowing it
        self._name_bytes = name.encode()
        self._what = f"agent {name!r}"  # for error messages; built once, not per ask
        # Services' names start with "_"; they never ask agents, so asks to
        # them need no chain (see `actors._chain`).
        self._agent = not name.startswith("_")
        self._address = address
        self._runtime_id = runtime_id
        self._node: Node | None = None  # bound on first use, in this process
        self._attrs: dict[AttrPath, tuple[bool, bool]] | None = None  # the agent's attributes, once a proxy asked

    def __reduce__(self) -> Any:
        return (AgentRef, (self.name, self._address, self._runtime_id, self._class_name))

    def __repr__(self) -> str:
        return f"<AgentRef for {self}>"

    def __str__(self) -> str:
        # pykka's: "ClassName (urn)"; a ref made from a bare name (`peer`)
        # doesn't know the class and shows the name instead.
        return f"{self._class_name or self.name} ({self.actor_urn})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, AgentRef)
            and other.name == self.name
            and other._runtime_id == self._runtime_id
        )

    def __hash__(self) -> int:
        return hash((self.name, self._runtime_id))

    # -- routing ----------------------------------------------------------

    def _bound(self) -> Node:
        node = self._node
        if node is None or node.closed:
            node = self._node = node_for(self._runtime_id)
        return node

    def _resolve(self, node: Node, stale: str | None) -> str:
        """The current address of the name; raises if nothing hosts it."""
        address = node.lookup(self.name)
        if address is None:
            if self.name.startswith("_"):
                msg = f"the runtime's service {self.name!r} is not running (was the runtime shut down?)"
            else:
                msg = f"{self} not found"  # pykka's words
            raise ActorDeadError(msg)
        if address == stale:
            msg = f"{self} not found"
            raise ActorDeadError(msg)
        self._address = address
        return address

    def _send(self, node: Node, kind: int, body: bytes) -> tuple[Any, int]:
        """Send a frame to the hosting node, re-resolving once if it is gone."""
        address = self._address or self._resolve(node, None)
        for attempt in (1, 2):
            try:
                channel = node.channel(address)
                if kind != TELL:
                    request_id = channel.next_id()
                    channel.send(encode(kind, request_id, self._name_bytes, body))
                else:
                    request_id = 0
                    channel.tell(encode(kind, 0, self._name_bytes, body))
            except PeerGone:
                node.forget_channel(address)
                if attempt == 2:
                    raise ActorDeadError(f"{self} not found") from None
                address = self._resolve(node, address)
            else:
                return channel, request_id
        raise AssertionError("unreachable")

    # -- pykka's ref interface --------------------------------------------

    def tell(self, message: Any) -> None:
        """Send `message` without waiting; order is kept per sending thread."""
        node = self._bound()
        local = node.local.get(self.name)
        if local is not None:  # what pykka's `tell` does, one call less
            if local.actor_stopped.is_set():
                raise ActorDeadError(f"{self} not found")
            local.actor_inbox.put(Envelope(message))
            return
        self._send(node, TELL, dumps(message))

    def ask(self, message: Any, *, block: bool = True, timeout: float | None = None) -> Any:
        """Send `message` and wait for the reply (or get a future if not `block`).

        Inside an agent's handler, a blocking ask to an agent already
        waiting on this handler (the agent itself, or one up its chain of
        asks) raises `DeadlockError` and sends nothing. A non-blocking one
        is sent (pykka's idiom of asking oneself without waiting works),
        and its future raises `DeadlockError` if waited for in the same
        handler before its reply is there; a future of the agent's own,
        in any handler of the agent. See `actors._chain`.
        """
        chain = current.chain  # None outside agents' handlers: asked as ever
        if block and (chain is None or not self._agent):
            local = self._bound().local.get(self.name)
            call = getattr(local.actor_inbox, "call", None) if local is not None else None
            if call is not None:  # a service of this process that may answer here, now (`_inline`)
                outcome = call(message)
                if type(outcome) is tuple:
                    return unwrap(outcome)
                if outcome is not None:  # the handler answers later
                    return AskFuture(local_waiter(outcome, self._what)).get(timeout=timeout)
        if chain is not None and self._agent:
            future = self._ask_in_chain(chain, message, block)
        else:
            future = self._ask(message, None)
        return future.get(timeout=timeout) if block else future

    def _ask(self, message: Any, chain: tuple[str, ...] | None) -> AskFuture:
        """Send an ask (with the asker's `chain`, if any); its future."""
        node = self._bound()
        what = self._what
        local = node.local.get(self.name)
        if local is not None:
            asked = message if chain is None else AskChain(chain, message)
            pending = local.ask(asked, block=False)
            future = AskFuture(local_waiter(pending, what))
            future._source = pending  # awaited: `runtime.wire._aio`
            return future
        if chain is None:
            kind, body = ASK, dumps(message)  # fails here, before anything is sent
        else:
            kind, body = ASK_CHAINED, dumps((chain, message))
        try:
            channel, request_id = self._send(node, kind, body)
        except ActorDeadError as exc:
            return AskFuture.failed(exc)
        future = AskFuture(lambda t: channel.wait(request_id, t, what), lambda: channel.abandon(request_id))
        future._source = (channel, request_id, what)  # awaited: `runtime.wire._aio`
        return future

    def _ask_in_chain(self, chain: tuple[str, ...], message: Any, block: bool) -> AskFuture:
        # An ask from inside an agent's handler: the handler of `message`
        # learns the chain of agents waiting on it.
        if chain is IN_TASKS:  # an agent's event loop: the chain is the running task's
            in_task = task_chain.get()
            if in_task is None:
                return self._ask(message, None)
            chain = in_task
        name = self.name
        if name not in chain:
            return self._ask(message, chain)
        if block:
            raise deadlock(chain, name)
        return _ChainFuture(self._ask(message, chain), chain, name)

    def stop(self, *, block: bool = True, timeout: float | None = None) -> Any:
        """Stop the agent after the messages already in its mailbox.

        True if it was running (its `on_stop` has run when this returns),
        False if it was already dead. Once it returned, the process has
        exited and the runtime has handled it (AGENT_LEFT is out, the name
        is free): `is_alive()` is False and a `tell` raises `ActorDeadError`.
        """
        node = self._bound()
        if self.name in node.local:  # hosted in this process: pykka's own stop
            result = stop_future(self.ask(_ActorStop(), block=False))
            return result.get(timeout=timeout) if block else result
        try:
            channel, request_id = self._send(node, ASK, dumps(_ActorStop()))
        except ActorDeadError as exc:
            result = stop_future(AskFuture.failed(exc))  # not running: nothing to wait for
        else:
            what, name, address = self._what, self.name, channel.address
            asked = AskFuture(lambda t: channel.wait(request_id, t, what), lambda: channel.abandon(request_id))
            result = stop_future(asked, settle=lambda t: node.await_gone(name, address, t))
        return result.get(timeout=timeout) if block else result

    def is_alive(self) -> bool:
        """Whether the name is hosted by a live actor right now."""
        try:
            node = self._bound()
        except ActorDeadError:
            return False
        local = node.local.get(self.name)
        if local is not None:
            return local.is_alive()
        try:
            return node.lookup(self.name) is not None
        except ActorDeadError:
            return False

    def proxy(self) -> AgentProxy:
        """pykka's proxy of the agent (introspected once per ref)."""
        return AgentProxy(actor_ref=self)


class AgentProxy(pykka.ActorProxy[Any]):
    """pykka's `ActorProxy`, for an agent in any process (and a subclass of it).

    `proxy.method(args)` returns a future of the result, `proxy.method.defer(args)`
    is a tell, `proxy.attr` a future of the value, `proxy.attr = v` sets it
    (and waits); a traversable attribute (`pykka.traversable`) is a proxy of
    its own (`proxy.inner.method()`). The agent's attributes are introspected
    once per ref, in the agent's process, without evaluating properties.
    """

    _actor = None  # pykka's own `ActorProxy.__eq__` reads it: no actor object here
    actor_ref: Any  # an `AgentRef` or a `RayRef`, not a pykka `ActorRef`

    def __init__(self, ref: Any = None, attr_path: AttrPath = (), *, actor_ref: Any = None) -> None:
        ref = actor_ref if actor_ref is not None else ref
        object.__setattr__(self, "actor_ref", ref)
        object.__setattr__(self, "_attr_path", tuple(attr_path))
        # One introspection per ref, not per proxy: `ref.proxy().m()` in a
        # loop costs one round trip a call, as with pykka.
        if ref._attrs is None:
            ref._attrs = _introspect(ref)

    def __repr__(self) -> str:
        return f"<AgentProxy for {self.actor_ref}, attr_path={self._attr_path!r}>"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, AgentProxy)
            and other.actor_ref == self.actor_ref
            and other._attr_path == self._attr_path
        )

    def __hash__(self) -> int:
        return hash((self.actor_ref, self._attr_path))

    def __dir__(self) -> list[str]:
        depth = len(self._attr_path)
        here = [p[depth] for p in self.actor_ref._attrs if len(p) == depth + 1 and p[:depth] == self._attr_path]
        return sorted({"__class__", "__dict__", *type(self).__dict__, *self.__dict__, *here})

    def __getattr__(self, name: str) -> Any:
        ref = self.actor_ref
        path = (*self._attr_path, name)
        info = ref._attrs.get(path)
        if info is None and not name.startswith("_"):  # private ones are never listed: no round trip
            ref._attrs = _introspect(ref)  # added since (pykka looks again too)
            info = ref._attrs.get(path)
        if info is None:
            msg = f"{self} has no attribute {name!r}"
            raise AttributeError(msg)
        is_callable, traversable = info
        if is_callable:
            return CallableProxy(actor_ref=ref, attr_path=path)
        if traversable:
            return AgentProxy(ref, path)
        return ref.ask(ProxyGetAttr(path), block=False)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "actor_ref" or name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            self.actor_ref.ask(ProxySetAttr((*self._attr_path, name), value))


class CallableProxy(pykka.CallableProxy[Any]):
    """pykka's `CallableProxy` of an agent's method: a call is an ask, `defer` a tell."""

    def __init__(self, *, actor_ref: Any, attr_path: AttrPath) -> None:
        self.actor_ref = actor_ref
        self._attr_path = attr_path

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.actor_ref.ask(ProxyCall(self._attr_path, args, kwargs), block=False)

    def defer(self, *args: Any, **kwargs: Any) -> None:
        self.actor_ref.tell(ProxyCall(self._attr_path, args, kwargs))


def _introspect(ref: Any) -> dict[AttrPath, tuple[bool, bool]]:
    """The agent's attributes, for its proxy.

    In the agent's own handler (its thread), asking itself would deadlock:
    its attributes are read in place, so pykka's idiom of calling one's own
    methods through a proxy, without waiting, works.
    """
    chain = chain_now()
    if chain is not None and chain[-1] == ref.name:
        local = ref._bound().local.get(ref.name)
        actor = local._actor_weakref() if local is not None else None  # as pykka's own proxy does
        if actor is not None:
            return public_attributes(actor)
    return cast("dict[AttrPath, tuple[bool, bool]]", ref.ask(Introspect(), timeout=30))


class _ChainFuture(AskFuture):
    """The future of an ask whose target was already waiting on the asker.

    Waited for in the handler it was asked from (or, if the target is the
    agent itself, in any of its handlers), no reply can come until that
    handler returns: `get` then takes the reply only if it is already
    there, and raises `DeadlockError` otherwise, which leaves the future
    usable later (outside that handler). A `get(timeout=0)` is a poll,
    never refused. Awaited (in an async handler, whose chain is its
    task's), it is refused the same way.
    """

    def __init__(self, asked: AskFuture, chain: tuple[str, ...], target: str) -> None:
        super().__init__()
        self._asked, self._chain, self._target = asked, chain, target

    def get(self, *, timeout: float | None = None) -> Any:
        if self._get_hook is not None:
            return super().get(timeout=timeout)
        self._refuse_here(timeout)
        return self._asked.get(timeout=timeout)

    async def _aget(self, timeout: float | None) -> Any:
        if self._get_hook is not None:
            return await super()._aget(timeout)
        self._refuse_here(timeout)
        return await self._asked._aget(timeout)

    def _refuse_here(self, timeout: float | None) -> None:
        """Raise `DeadlockError` if waiting here could never end (see the
        class docstring); return if the reply is there, or may come."""
        now = chain_now()
        if now is not None and (now is self._chain or now[-1] == self._target) and timeout != 0:
            try:
                self._asked.get(timeout=0)  # kept: the wait that follows takes it
            except AskTimeout:
                raise deadlock(now, self._target) from None
            except Exception:  # noqa: BLE001 - the ask's own error: the wait that follows raises it
                pass
