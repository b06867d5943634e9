"""The event bus with history, and the design's reactive coordination.

The bus is one actor: `emit` appends to a bounded history, keeps
`shared/active_agents` and `shared/task:{id}:completed` current, then tells
each subscriber. A subscriber is a ref plus a handler id; the handler itself
never leaves the process that subscribed it.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, cast, overload

import pykka
from pykka.messages import ProxyCall

from actors._base import ActorBase, Deliver, HandlerActor, unregister_handler
from actors._client import ServiceClient
from actors._context import current_agent_id, register_delivery
from actors._task_ledger import RECORDED
from actors._types import Event, EventType, event_type_of

__all__ = ["EventBus", "EventsClient"]

logger = logging.getLogger("actors")


@overload
def _as_type(event_type: EventType | str) -> EventType: ...
@overload
def _as_type(event_type: None) -> None: ...
def _as_type(event_type: EventType | str | None) -> EventType | None:
    return None if event_type is None else event_type_of(event_type)


_JOINED, _LEFT, _COMPLETED = EventType.AGENT_JOINED, EventType.AGENT_LEFT, EventType.TASK_COMPLETED  # coordinated
_NONE: dict[int, Any] = {}  # no subscriptions (never written)

# ((event type, subscription id), subscriber's ref, what to tell it)
_Delivery = tuple[tuple[EventType | None, int], Any, Deliver]


class _FanOut(ActorBase):
    """Sends the bus's deliveries from one thread of its own, in order.

    The bus may run in whichever thread calls it (see `runs_inline`); its
    deliveries to other processes leave from here, so each subscriber's
    process gets them through one connection, in the order of the events.
    A subscriber that can't be reached is reported back to the bus.
    """

    def __init__(self, bus: pykka.ActorRef[Any]) -> None:
        super().__init__()
        self._bus = bus

    def send(self, deliveries: list[_Delivery]) -> None:
        gone = []
        for key, ref, message in deliveries:
            try:
                ref.tell(message)
            except Exception:  # noqa: BLE001 - the subscriber is gone: drop it, keep the rest
                logger.info("dropping subscriber %s of %s", message.handler_id, key[0])
                gone.append(key)
        if gone:
            try:
                self._bus.tell(ProxyCall(("drop_subscriptions",), (gone,), {}))
            except pykka.ActorDeadError:
                pass  # the bus stopped first


class EventBus(ActorBase):
    """Actor keeping the event history and the subscriptions.

    `state` is a `StateClient` for reactive coordination (None: off). An
    emit is answered once the event is in the history and coordinated;
    its deliveries to subscribers go out through a fan-out actor.
    """

    runs_inline = True

    def __init__(self, *, max_history: int = 1000, state: Any = None) -> None:
        super().__init__()
        self._history: deque[Event] = deque(maxlen=max_history)
        self._state = state
        # event type (None = every type) -> subscription id -> (owner, ref, handler id)
        self._subs: dict[EventType | None, dict[int, tuple[str, Any, str]]] = {}
        self._ids = itertools.count(1)
        self._fan_out = _FanOut.start(self.actor_ref)

    def on_stop(self) -> None:
        # Deliveries already handed out go first; then handler actors started
        # for subscribers outside any agent end with the bus, after the
        # deliveries in their mailboxes.
        try:
            self._fan_out.stop(timeout=5)
        except (pykka.ActorDeadError, pykka.Timeout):
            pass
        for subs in self._subs.values():
            for _owner, ref, _handler in subs.values():
                if isinstance(ref, pykka.ActorRef) and issubclass(ref.actor_class, HandlerActor):
                    try:
                        ref.stop(timeout=5)
                    except (pykka.ActorDeadError, pykka.Timeout):
                        pass

    def emit_many(self, events: list[Event]) -> None:
        """Emit several events in order, in one message."""
        if not self._subs:  # the common case of a batch's many events: nobody listens
            self._keep(events)
            return
        deliveries = []
        for event in events:
            deliveries += self._record(event)
        self._send(deliveries)

    def emit(self, event: Event) -> None:
        """Record `event` and hand out its deliveries (the emitter keeps the event)."""
        self._send(self._record(event))

    def _record(self, event: Event) -> list[_Delivery]:
        # Into the history, coordinated; the deliveries it calls for.
        self._keep((event,))
        if not self._subs:
            return []
        return [
            ((kind, sub_id), ref, Deliver(handler_id, (event,)))
            for kind in (event.type, None)
            for sub_id, (_owner, ref, handler_id) in self._subs.get(kind, _NONE).items()
        ]

    def _keep(self, events: Sequence[Event]) -> None:
        # Into the history, in order, each coordinated as it goes in.
        history = self._history
        for event in events:
            history.append(event)
            etype = event.type
            if etype is _JOINED or etype is _LEFT or etype is _COMPLETED:
                self._coordinate(event)

    def _send(self, deliveries: list[_Delivery]) -> None:
        if deliveries:
            self._fan_out.tell(ProxyCall(("send",), (deliveries,), {}))

    def drop_subscriptions(self, keys: list[tuple[EventType | None, int]]) -> None:
        """Forget subscriptions whose subscriber could not be reached."""
        for etype, sub_id in keys:
            self._subs.get(etype, {}).pop(sub_id, None)

    def _coordinate(self, event: Event) -> None:
        if self._state is None:
            return
        try:
            agent = event.payload.get("agent_id", event.source)
            if event.payload.get("kind", "agent") != "agent" and event.type in (
                EventType.AGENT_JOINED, EventType.AGENT_LEFT
            ):
                return  # the runtime's own service processes are not team members
            if event.type is EventType.AGENT_JOINED:
                self._state.update("shared", "active_agents", _adding(agent), updater="event_bus")
            elif event.type is EventType.AGENT_LEFT:
                self._state.update("shared", "active_agents", _removing(agent), updater="event_bus")
                self._drop_owner(agent)
            elif (event.type is EventType.TASK_COMPLETED and "task_id" in event.payload
                  and not event.metadata.get(RECORDED)):  # the task ledger wrote it already
                key = f"task:{event.payload['task_id']}:completed"
                self._state.set("shared", key, True, updater="event_bus")
        except Exception:  # coordination must never stop the bus
            logger.exception("reactive coordination failed for %s", event)

    def _drop_owner(self, owner: str) -> None:
        for subs in self._subs.values():
            for sub_id in [s for s, (o, _r, _h) in subs.items() if o == owner]:
                del subs[sub_id]

    def subscribe(self, event_type: EventType | None, owner: str, ref: Any, handler_id: str) -> int:
        sub_id = next(self._ids)
        self._subs.setdefault(event_type, {})[sub_id] = (owner, ref, handler_id)
        return sub_id

    def unsubscribe(self, event_type: EventType | None, handler_id: str) -> bool:
        subs = self._subs.get(event_type, {})
        found = [s for s, (_o, _r, h) in subs.items() if h == handler_id]
        for sub_id in found:
            del subs[sub_id]
        return bool(found)

    def get_history(
        self, event_type: EventType | None = None, source: str | None = None, limit: int = 100
    ) -> list[Event]:
        rows = [
            e
            for e in self._history
            if (event_type is None or e.type is event_type) and (source is None or e.source == source)
        ]
        return rows[-limit:] if limit else []


def _adding(agent: str) -> Callable[[Any], list[str]]:
    return lambda old: [*(a for a in (old or []) if a != agent), agent]


def _removing(agent: str) -> Callable[[Any], list[str]]:
    return lambda old: [a for a in (old or []) if a != agent]


class EventsClient(ServiceClient):
    """`rt.events` / `self.ctx.events` from any process."""

    def emit(
        self,
        source: str,
        event_type: EventType | str,
        payload: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Event:
        event = Event(
            type=_as_type(event_type), source=source, payload=dict(payload or {}), metadata=dict(metadata or {})
        )
        self._call("emit", event)  # answered once recorded; the event needn't travel back
        return event

    def subscribe(self, event_type: EventType | str | None, handler: Callable[[Event], Any]) -> int:
        """Call `handler(event)` for each event of `event_type` (None: all).

        Inside an agent the handler runs in the agent's own process, between
        its other messages; elsewhere it runs in an actor of its own.
        """
        event_type = _as_type(event_type)
        handler_id, ref = register_delivery(handler, ("event", event_type), self._ref)
        return cast("int", self._call("subscribe", event_type, current_agent_id(), ref, handler_id))

    def unsubscribe(self, event_type: EventType | str | None, handler: Callable[[Event], Any]) -> bool:
        event_type = _as_type(event_type)
        handler_id = unregister_handler(handler, ("event", event_type))
        if handler_id is None:
            return False
        return cast("bool", self._call("unsubscribe", event_type, handler_id))

    def get_history(
        self, event_type: EventType | str | None = None, source: str | None = None, limit: int = 100
    ) -> list[Event]:
        return cast("list[Event]", self._call("get_history", _as_type(event_type), source, limit))
