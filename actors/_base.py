"""The pykka actor every agent and service is built on.

It adds three things to `pykka.ThreadingActor`, all through pykka's own
hooks so that any host (a thread, an OS process, Ray) runs it unchanged:

- deferred replies: a handler may take the reply of the message it is
  handling (`_defer_reply`) and answer later, so a lock can park a waiter
  without blocking its own mailbox;
- introspection for proxies in other processes (`Introspect`);
- delivery of event/topic callbacks registered in this process (`Deliver`),
  so a handler runs in mailbox order with the actor's other messages;
- messages that came with the chain of the ask that sent them (`AskChain`,
  see `actors._chain`): unwrapped, and the chain ignored unless the actor
  takes part in deadlock checks (agents do).
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, NamedTuple

import pykka
from pykka._introspection import get_attr_directly, get_attr_from_parent
from pykka.messages import ProxyCall

from actors._chain import AskChain
from actors._future import NotifyingFuture

if TYPE_CHECKING:
    from pykka._envelope import Envelope

__all__ = [
    "ActorBase",
    "Deliver",
    "DequeInbox",
    "HandlerActor",
    "Inbox",
    "Introspect",
    "ResolvedFuture",
    "Sent",
    "public_attributes",
    "register_handler",
    "set_idle_hook",
    "unregister_handler",
]

logger = logging.getLogger("actors")
logger_pykka = logging.getLogger("pykka")  # pykka's own warnings keep pykka's logger


class Introspect(NamedTuple):
    """Ask an actor for its public attributes, as `public_attributes` lists them."""


class Deliver(NamedTuple):
    """Run the handler registered under `handler_id` in this process."""

    handler_id: str
    args: tuple[Any, ...]


class Sent(NamedTuple):
    """A message with the authenticated identity of the process that sent it.

    A host wraps what it delivers to an actor that `wants_sender` in this:
    `sender` is the agent whose process sent it (the host learnt it from
    the connection, not from the message), so no caller can claim a name.
    """

    sender: str
    message: Any


class _Registered(NamedTuple):
    handler: Callable[..., Any]
    scope: Hashable  # what it was subscribed to: one handler may serve several
    actor: Any  # a handler actor started for it alone, stopped with it (or None)


# Handlers live in the process that subscribed them; only their id travels.
_handlers: dict[str, _Registered] = {}
_handler_ids = itertools.count()
_handlers_lock = threading.Lock()


def register_handler(handler: Callable[..., Any], scope: Hashable, actor: Any = None) -> str:
    """Keep `handler` in this process under `scope`; return the id that reaches it.

    `actor`, if given, was started to run this handler alone and is stopped
    (after the deliveries it already holds) when the handler is unregistered.
    """
    with _handlers_lock:
        handler_id = f"{os.getpid()}:{next(_handler_ids)}"
        _handlers[handler_id] = _Registered(handler, scope, actor)
    return handler_id


def unregister_handler(handler_or_id: Callable[..., Any] | str, scope: Hashable) -> str | None:
    """Forget a handler registered under `scope`, given by id or by (==) value.

    Returns its id, or None if there was none.
    """
    with _handlers_lock:
        if isinstance(handler_or_id, str):
            found = handler_or_id if handler_or_id in _handlers else None
        else:
            found = next(
                (hid for hid, known in _handlers.items() if known.scope == scope and known.handler == handler_or_id),
                None,
            )
        registered = _handlers.pop(found, None) if found is not None else None
    if registered is not None and registered.actor is not None:
        registered.actor.stop(block=False)
    return found


_idle_hook: Callable[[], None] | None = None


def set_idle_hook(hook: Callable[[], None] | None) -> None:
    """Run `hook` in an actor's thread each time its mailbox runs empty.

    A host sets it to write out what the actor queued for sending (tells
    batched by the process runtime) before the actor sleeps.
    """
    global _idle_hook
    _idle_hook = hook


class Inbox:
    """A FIFO mailbox that remembers the envelope being handled.

    Invariant: `current` is the envelope most recently taken by the actor's
    own loop, so a handler can reach its own reply future. A host may
    subclass it (`_create_actor_inbox`) to change how the actor waits.
    """

    __slots__ = ("_queue", "current")

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Envelope[Any]] = queue.SimpleQueue()
        self.current: Envelope[Any] | None = None

    def put(self, envelope: Envelope[Any], /) -> None:
        self._queue.put(envelope)

    def put_from_reader(self, envelope: Envelope[Any], /) -> None:
        """`put`, by the reader thread of a connection from another process.

        A host whose actors run on the putting thread may answer the asker
        first and only then run the tells its handler sent (see
        `runtime.local._inline`); here it is `put`.
        """
        self.put(envelope)

    def get(self) -> Envelope[Any]:
        if self._queue.empty():
            self._idle()
        envelope = self._queue.get()
        self.current = envelope
        return envelope

    @staticmethod
    def _idle() -> None:
        # The mailbox is empty: the actor is about to sleep.
        if _idle_hook is not None:
            _idle_hook()

    def empty(self) -> bool:
        return self._queue.empty()

    def qsize(self) -> int:
        return self._queue.qsize()


class DequeInbox(Inbox):
    """A mailbox kept in a deque, for hosts that wake their actor their own
    way (subclasses define `put` and `get`)."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__()
        self._queue: deque[Envelope[Any]] = deque()  # type: ignore[assignment]

    def empty(self) -> bool:
        return not self._queue

    def qsize(self) -> int:
        return len(self._queue)


AttrPath = tuple[str, ...]


def public_attributes(actor: Any) -> dict[AttrPath, tuple[bool, bool]]:
    """What `Introspect` answers, as pykka's proxy introspection finds it.

    Each public attribute path (traversable attributes' own attributes
    included) maps to (callable, traversable). Attributes are read from the
    instance's and its classes' `__dict__`, so properties are not evaluated
    (a property is read when the proxy asks for it). A public attribute
    holding a proxy to the actor itself is left out, with pykka's warning.
    """
    found: dict[AttrPath, tuple[bool, bool]] = {}
    to_visit: list[AttrPath] = [(name,) for name in dir(actor)]
    while to_visit:
        path = to_visit.pop(0)
        if path[-1].startswith("_"):
            continue  # private, as pykka: never exposed through a proxy
        try:
            attr = get_attr_from_parent(actor, path)
        except AttributeError:
            continue  # listed by dir() but in no __dict__ (e.g. a __getattr__'s)
        if _is_self_proxy(actor, attr):
            logger_pykka.warning(
                f"{actor} attribute {'.'.join(path)!r} is a proxy to itself. "
                f"Consider making it private by renaming it to {'_' + path[-1]!r}."
            )
            continue
        traversable = (
            getattr(attr, "_pykka_traversable", False) is True or getattr(attr, "pykka_traversable", False) is True
        )
        found[path] = (callable(attr), traversable)
        if traversable:
            to_visit.extend((*path, name) for name in dir(attr))
    return found


def _is_self_proxy(actor: Any, attr: Any) -> bool:
    # pykka's own proxy of the actor (`self.actor_ref.proxy()`) or a runtime's
    # proxy of its name (a subclass of pykka's): same urn, at the root.
    if not isinstance(attr, pykka.ActorProxy):
        return False
    try:
        return attr._attr_path == () and attr.actor_ref.actor_urn == actor.actor_urn
    except AttributeError:
        return False


class ActorBase(pykka.ThreadingActor):
    """A pykka threading actor with deferred replies and remote introspection.

    `__init__` runs in the process (and thread) that creates the actor;
    `on_start`, the handlers and `on_stop` run in the actor's own thread,
    one message at a time (for `runs_inline` actors, a host may run them
    in the thread that sends the message instead, still one at a time).
    """

    use_daemon_thread = True  # never keep an interpreter alive on its own

    #: Whether a told message that raises stops the actor (pykka's failure
    #: path). Agents stop, and their supervisor restarts them; services
    #: (stores, buses, locks, handler actors) log the error and keep serving.
    stop_on_failure: bool = False

    #: Whether a host may run a message on the thread that read it off a
    #: socket, when this actor is idle (one thread hand-over less; see
    #: runtime `_inline`). Only for actors whose handlers are short and
    #: send nothing to other processes but replies.
    runs_inline: bool = False

    #: Whether hosts wrap each message from another process in `Sent`,
    #: naming its authenticated sender (the state store checks writers so).
    wants_sender: bool = False

    @staticmethod
    def _create_actor_inbox() -> Inbox:
        return Inbox()

    @staticmethod
    def _create_future() -> NotifyingFuture:
        # Awaitable without blocking an event loop (`actors._future`).
        return NotifyingFuture()

    def _handle_failure(self, *exc_info: Any) -> None:
        if self.stop_on_failure:
            super()._handle_failure(*exc_info)
        else:
            logger.error("%s failed handling a message; it keeps serving", self, exc_info=exc_info)

    def _defer_reply(self) -> pykka.Future[Any] | None:
        """Take the reply of the message being handled, to answer it later.

        Returns None for a tell. The caller must eventually `set` or
        `set_exception` the future it got, or the asker waits to its timeout.
        """
        envelope: Envelope[Any] | None = self.actor_inbox.current  # type: ignore[attr-defined]  # an Inbox
        if envelope is None:
            return None
        reply, envelope.reply_to = envelope.reply_to, None
        return reply

    def _handle_in_chain(self, message: AskChain) -> Any:
        """Handle a message sent with its asker's chain; services ignore the chain."""
        return self._handle_receive(message.message)

    def _handle_receive(self, message: Any) -> Any:
        if type(message) is ProxyCall:  # most messages: a method call, as pykka's loop makes it
            result = get_attr_directly(self, message.attr_path)(*message.args, **message.kwargs)
        elif type(message) is AskChain:
            return self._handle_in_chain(message)
        else:
            result = self._handle_other(message)
        if isinstance(result, pykka.Future) and type(result) is not ResolvedFuture:
            return self._reply_when_resolved(result)
        return result

    def _handle_other(self, message: Any) -> Any:
        # Any message but a method call (pykka's own, ours, and on_receive's).
        if isinstance(message, Deliver):
            registered = _handlers.get(message.handler_id)
            if registered is None:
                return None  # unsubscribed while the delivery was in flight
            handler = registered.handler
            try:
                return handler(*message.args)
            except Exception:
                # A failing handler must not stop the actor nor the others.
                logger.exception("handler %s failed in %s", message.handler_id, self)
                return None
        if isinstance(message, Introspect):
            return public_attributes(self)
        return super()._handle_receive(message)

    def _reply_when_resolved(self, inner: pykka.Future[Any]) -> Any:
        """A handler returned a future (pykka's self-proxy idiom): a future
        can't travel, so an asker in another process gets a `ResolvedFuture`
        of its outcome once it is known.

        The reply is deferred and a thread waits for `inner`, so the actor's
        own loop goes on (it may be the one to resolve `inner`: a call it
        made to itself through its proxy). An asker in this process gets
        `inner` itself, as with pykka; a tell ignores it.
        """
        envelope = self.actor_inbox.current  # type: ignore[attr-defined]
        reply_to = envelope.reply_to if envelope is not None else None
        if reply_to is None or isinstance(reply_to, pykka.ThreadingFuture):
            return inner
        reply = self._defer_reply()
        assert reply is not None

        def resolve() -> None:
            try:
                outcome = ResolvedFuture(True, inner.get())
            except BaseException as exc:  # noqa: BLE001 - the asker's future raises it
                outcome = ResolvedFuture(False, exc)
            reply.set(outcome)

        threading.Thread(target=resolve, name=f"resolve-{self}", daemon=True).start()
        return None


class ResolvedFuture(pykka.Future[Any]):
    """A future whose outcome is known: what an asker in another process gets
    for a handler's future (see `ActorBase._reply_when_resolved`). Pickles as
    its outcome, so the asker's `get()` needs nothing from the actor."""

    def __init__(self, ok: bool, value: Any) -> None:
        super().__init__()
        self._ok, self._value = ok, value

    def __reduce__(self) -> Any:
        return (ResolvedFuture, (self._ok, self._value))

    def get(self, *, timeout: float | None = None) -> Any:
        if self._get_hook is not None:  # pykka's map/filter/join/reduce on it
            return super().get(timeout=timeout)
        if self._ok:
            return self._value
        raise self._value

    def set(self, value: Any = None) -> None:
        raise queue.Full  # as pykka's: a future is set once

    def set_exception(self, exc_info: Any = None) -> None:
        raise queue.Full


class HandlerActor(ActorBase):
    """An actor of its own for handlers subscribed outside any agent."""
