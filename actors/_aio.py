"""`self.ctx.aio` and `rt.aio`: awaitable twins of the blocking service clients.

Every service client call is one ask (`ServiceClient._call`). A twin runs
the blocking client's own method against a stand-in ref that captures that
ask instead of waiting for it (`_Capture`), sends it without blocking and
awaits its future (`wait_future`): the names, arguments and argument
handling are the blocking client's, and the event loop is never blocked.
The few methods that are more than one ask, or do something with the
answer (parked acquires, barrier waits, stream reads, `emit`), are written
out below. Factories (`peer`, `get_lock`, `get_semaphore`, `get_barrier`)
return at once; a semaphore or barrier asks the manager for its actor on
first use.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

from pykka.messages import ProxyCall

from actors._client import _GRACE, ManagerClient, ServiceClient
from actors._context import current_agent_id, set_aio_factory
from actors._errors import AskTimeout, LockTimeout
from actors._future import wait_future
from actors._streams import END
from actors._sync import BarrierClient, SemaphoreClient, SyncClient
from actors._types import Event, Message, new_id

__all__ = ["AioRef", "AioServices", "ask_async"]


async def ask_async(ref: Any, message: Any, timeout: float | None = None) -> Any:
    """`ref.ask(message, timeout=timeout)`, awaited without blocking the loop."""
    return await wait_future(ref.ask(message, block=False), timeout)


class _Suspend(BaseException):
    """Raised by `_Capture.ask`: the ask a client method was about to wait for."""

    def __init__(self, ref: Any, message: Any, timeout: float | None) -> None:
        super().__init__()
        self.ref, self.message, self.timeout = ref, message, timeout


class _Capture:
    """Stands in for a client's ref: its first ask is captured, not sent."""

    __slots__ = ("ref",)

    def __init__(self, ref: Any) -> None:
        self.ref = ref

    def ask(self, message: Any, *, block: bool = True, timeout: float | None = None) -> Any:
        raise _Suspend(self.ref, message, timeout)

    def tell(self, message: Any) -> None:
        self.ref.tell(message)


class _CaptureChildren:
    """Stands in for a manager client's remembered children: their refs are
    captured too (the entries themselves are the client's own)."""

    __slots__ = ("children",)

    def __init__(self, children: Any) -> None:
        self.children = children

    def get(self, key: Any) -> Any:
        ref = self.children.get(key)
        return None if ref is None else _Capture(ref)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.children, name)

    def __setitem__(self, key: Any, ref: Any) -> None:
        self.children[key] = ref

    def __len__(self) -> int:
        return len(self.children)


def _captured(client: ServiceClient, method: str, *args: Any, **kwargs: Any) -> _Suspend | tuple[Any]:
    """Run `client.method(*args, **kwargs)` up to its ask: the ask, or
    `(value,)` if the method returned without asking."""
    twin: Any = copy.copy(client)  # the client, given stand-ins for its ref and children
    twin._ref = _Capture(client._ref)
    if isinstance(client, ManagerClient):
        twin._children = _CaptureChildren(client._children)
    try:
        return (getattr(twin, method)(*args, **kwargs),)
    except _Suspend as ask:
        return ask


async def _call(client: ServiceClient, method: str, *args: Any, **kwargs: Any) -> Any:
    """The awaitable twin of `client.method(*args, **kwargs)` (a one-ask method)."""
    ask = _captured(client, method, *args, **kwargs)
    if isinstance(ask, tuple):
        return ask[0]
    return await ask_async(ask.ref, ask.message, ask.timeout)


async def _parked(client: ServiceClient, method: str, *args: Any, timeout: float | None) -> Any:
    """Twin of `ask_parked`: the actor may park the request up to `timeout` s."""
    message = _captured(client, "_call", method, *args, timeout, new_id())
    assert isinstance(message, _Suspend)
    try:
        return await ask_async(message.ref, message.message, None if timeout is None else timeout + _GRACE)
    except AskTimeout:
        client._cast("cancel", message.message.args[-1])
        return None


class _Twin:
    """Generic twin: each public method of the client becomes a coroutine function."""

    def __init__(self, client: ServiceClient) -> None:
        self._client = client

    def __repr__(self) -> str:
        return f"<aio {self._client!r}>"

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_") or not callable(getattr(self._client, name, None)):
            raise AttributeError(name)

        async def method(*args: Any, **kwargs: Any) -> Any:
            return await _call(self._client, name, *args, **kwargs)

        method.__name__ = name
        return method


class AioEvents(_Twin):
    async def emit(
        self, source: str, event_type: Any, payload: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Event:
        ask = _captured(self._client, "emit", source, event_type, payload, metadata)
        assert isinstance(ask, _Suspend)
        await ask_async(ask.ref, ask.message, ask.timeout)
        return cast("Event", ask.message.args[0])  # the event recorded


class _AioAcquirable(_Twin):
    """A lock's or a semaphore's twin; also `async with`."""

    async def acquire(self, holder: str | None = None, timeout: float | None = 30.0) -> bool:
        client = await self._resolved()
        return bool(await _parked(client, "acquire", holder or current_agent_id(), timeout=timeout))

    async def _resolved(self) -> ServiceClient:
        return self._client

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)

        async def method(*args: Any, **kwargs: Any) -> Any:
            return await _call(await self._resolved(), name, *args, **kwargs)

        return method

    async def __aenter__(self) -> Any:
        if not await self.acquire():
            kind = getattr(self._client, "kind", "lock")
            msg = f"could not acquire {kind} {getattr(self._client, 'primitive_id', '')!r} within 30 s"
            raise LockTimeout(msg)
        return self

    async def __aexit__(self, *exc: object) -> None:
        # Told, as `with lock:` does: nothing waits on the answer.
        (await self._resolved())._cast("release", current_agent_id())


class AioLock(_AioAcquirable):
    """`get_lock`'s twin: `await lock.acquire()`, `async with lock:`."""


class _Lazy:
    """A semaphore's or barrier's twin: its actor's ref is asked for on first use."""

    def __init__(self, sync: ManagerClient, factory: str, make: Callable[[Any, str], Any], name: str, arg: int) -> None:
        self._sync, self._factory, self._make, self._name, self._arg = sync, factory, make, name, arg
        self._client: Any = None

    async def _resolved(self) -> ServiceClient:
        if self._client is None:
            key = (self._factory, self._name, self._arg)
            ref = self._sync._children.get(key)
            if ref is None:
                ref = self._sync._remember(key, await _call(self._sync, "_call", *key))
            self._client = self._make(ref, self._name)
        return cast("ServiceClient", self._client)


class AioSemaphore(_Lazy, _AioAcquirable):
    """`get_semaphore`'s twin."""


class AioBarrier(_Lazy, _Twin):
    """`get_barrier`'s twin: `await barrier.wait()`."""

    async def wait(self, party: str | None = None, timeout: float | None = 60.0) -> bool:
        client = await self._resolved()
        return bool(await _parked(client, "wait", party or current_agent_id(), timeout=timeout))

    def __getattr__(self, name: str) -> Callable[..., Any]:
        return _AioAcquirable.__getattr__(self, name)  # type: ignore[arg-type]


class AioSync(_Twin):
    """`sync`'s twin: the factories return at once."""

    _client: SyncClient

    def get_lock(self, lock_id: str) -> AioLock:
        return AioLock(self._client.get_lock(lock_id))

    def get_semaphore(self, sem_id: str, permits: int) -> AioSemaphore:
        return AioSemaphore(self._client, "get_semaphore", SemaphoreClient, sem_id, permits)

    def get_barrier(self, barrier_id: str, count: int) -> AioBarrier:
        return AioBarrier(self._client, "get_barrier", BarrierClient, barrier_id, count)

    async def begin_tasks(self, tasks: list[tuple[Any, str | None]], agent: str, **kwargs: Any) -> None:
        # One ask, then what the blocking client does with the answer.
        timeout = kwargs.get("timeout", 30.0)
        ask = _captured(self._client, "begin_tasks", tasks, agent, **kwargs)
        assert isinstance(ask, _Suspend)
        try:
            granted = await ask_async(ask.ref, ask.message, ask.timeout)
        except AskTimeout:
            self._client._cast("tasks_cancel", ask.message.args[3])
            granted = False
        if not granted:
            names = ", ".join(f"'task:{t}'" for t, _k in tasks[:3]) + (" ..." if len(tasks) > 3 else "")
            msg = f"could not acquire lock {names} within {timeout:g} s"
            raise LockTimeout(msg)


class _AioManager(_Twin):
    """Twin of a client of per-name child actors (topics, streams): the
    child's ref is asked for first (once per process), then the call."""

    _client: ManagerClient

    _child_method = ""

    async def _child(self, name: str) -> ServiceClient:
        client = self._client
        key = (self._child_method, name)
        ref = client._children.get(key)
        if ref is None:
            ref = client._remember(key, await _call(client, "_call", *key))
        return ServiceClient(ref)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_") or not callable(getattr(self._client, name, None)):
            raise AttributeError(name)

        async def method(first: str, *args: Any, **kwargs: Any) -> Any:
            await self._child(first)  # now remembered: the method's only ask is the call
            return await _call(self._client, name, first, *args, **kwargs)

        return method


class AioPubSub(_AioManager):
    _child_method = "get_topic"


class AioStreaming(_AioManager):
    _child_method = "get_stream"

    async def create_stream(self, stream_id: str, maxsize: int = 64) -> None:
        ref = await _call(self._client, "_call", "create_stream", stream_id, maxsize)
        self._client._remember(("get_stream", stream_id), ref)

    async def send_bytes(self, stream_id: str, payload: bytes, chunk_size: int = 1 << 20) -> int:
        view = memoryview(payload)
        count = 0
        for offset in range(0, len(view), chunk_size):
            await self.send(stream_id, view[offset:offset + chunk_size].tobytes())
            count += 1
        return count

    async def _take(self, stream_id: str, timeout: float | None) -> Any:
        return await _parked(await self._child(stream_id), "take", timeout=timeout)

    async def receive(self, stream_id: str, timeout: float | None = None) -> Any:
        chunk = await self._take(stream_id, timeout)
        return None if chunk is None or chunk == END else chunk[1]

    async def iterate(self, stream_id: str, timeout: float | None = None) -> AsyncIterator[Any]:
        while True:
            chunk = await self._take(stream_id, timeout)
            if chunk is None or chunk == END:
                return
            yield chunk[1]


class AioRequestReply:
    def __init__(self, peer: Callable[[str], Any]) -> None:
        self._peer = peer

    async def request(self, sender: str, recipient: str, payload: Any, timeout: float = 30.0) -> Any:
        message = Message(sender=sender, recipient=recipient, payload=payload)
        return await ask_async(self._peer(recipient), message, timeout)


class AioComm:
    """`comm`'s twin: `request_reply`, `send`, `pub_sub`, `streaming`."""

    def __init__(self, comm: Any) -> None:
        self._comm = comm
        self.request_reply = AioRequestReply(comm._peer)
        self.pub_sub = AioPubSub(comm.pub_sub)
        self.streaming = AioStreaming(comm.streaming)

    async def send(self, sender: str, recipient: str, payload: Any) -> None:
        self._comm.send(sender, recipient, payload)  # a tell: it waits only for a full mailbox


class AioRef:
    """An agent ref whose asks are awaited: `await ref.ask(msg, timeout=5)`,
    `await ref.proxy().method(args)`. Tells don't wait, as ever."""

    __slots__ = ("ref",)

    def __init__(self, ref: Any) -> None:
        self.ref = ref

    def __repr__(self) -> str:
        return f"<aio {self.ref!r}>"

    @property
    def name(self) -> str:
        return cast("str", self.ref.name)

    def tell(self, message: Any) -> None:
        self.ref.tell(message)

    async def ask(self, message: Any, *, timeout: float | None = None) -> Any:
        return await ask_async(self.ref, message, timeout)

    def proxy(self) -> AioProxy:
        return AioProxy(self.ref)

    async def is_alive(self) -> bool:
        return await asyncio.to_thread(self.ref.is_alive)

    async def stop(self, *, timeout: float | None = None) -> Any:
        return await asyncio.to_thread(self.ref.stop, timeout=timeout)


class AioProxy:
    """Method calls through the mailbox, awaited: `await proxy.method(args)`.
    Asks nothing to be made (no introspection); `.defer(...)` is a tell."""

    __slots__ = ("_ref",)

    def __init__(self, ref: Any) -> None:
        self._ref = ref

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return _AioMethod(self._ref, name)


class _AioMethod:
    __slots__ = ("_name", "_ref")

    def __init__(self, ref: Any, name: str) -> None:
        self._ref, self._name = ref, name

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return await ask_async(self._ref, ProxyCall((self._name,), args, kwargs))

    def defer(self, *args: Any, **kwargs: Any) -> None:
        self._ref.tell(ProxyCall((self._name,), args, kwargs))


class AioServices:
    """The awaitable twins of one set of service clients (`ctx.aio`, `rt.aio`)."""

    def __init__(self, state: Any, store: Any, sync: Any, events: Any, comm: Any, peer: Callable[[str], Any]) -> None:
        self.state = _Twin(state)
        self.store = _Twin(store)
        self.sync = AioSync(sync)
        self.events = AioEvents(events)
        self.comm = AioComm(comm)
        self._peer = peer

    def peer(self, agent_id: str) -> AioRef:
        """An awaitable ref to another agent, by name (made at once)."""
        return AioRef(self._peer(agent_id))

    @classmethod
    def of(cls, ctx: Any) -> AioServices:
        """The twins of a context's (or a runtime's) services."""
        return cls(ctx.state, ctx.store, ctx.sync, ctx.events, ctx.comm, ctx.peer)


set_aio_factory(AioServices.of)
