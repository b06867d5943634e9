"""Publish-subscribe: one actor per topic fans each message out as tells.

A subscription is a ref plus a handler id; the handler never leaves the
process that subscribed it. Inside an agent the ref is the agent itself,
so the handler runs in its mailbox order; elsewhere it is a handler actor
of its own. A subscriber that is gone is dropped the first time a tell to
it fails, and the runtime drops every subscription of an agent that dies
(its `on_start` subscribes again after a restart).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, cast

from pykka.messages import ProxyCall

from actors._base import ActorBase, Deliver, unregister_handler
from actors._client import ManagerClient, ServiceClient
from actors._context import current_agent_id, register_delivery
from actors._errors import ActorDeadError
from actors._types import Message, MessagePattern

__all__ = ["PubSubClient", "PubSubManager", "TopicActor"]

logger = logging.getLogger("actors")


class TopicActor(ActorBase):
    """One topic: its subscriptions, and the fan-out of each publication."""

    def __init__(self, topic: str) -> None:
        super().__init__()
        self._topic = topic
        self._subs: dict[str, tuple[str, Any]] = {}  # handler id -> (owner, ref)

    def subscribe(self, owner: str, ref: Any, handler_id: str) -> str:
        self._subs[handler_id] = (owner, ref)
        return handler_id

    def unsubscribe(self, handler_id: str) -> bool:
        return self._subs.pop(handler_id, None) is not None

    def drop_owner(self, owner: str) -> int:
        gone = [h for h, (o, _ref) in self._subs.items() if o == owner]
        for handler_id in gone:
            del self._subs[handler_id]
        return len(gone)

    def publish(self, message: Message) -> None:
        """Tell every subscriber; an ask is answered with how many there are."""
        reply = self._defer_reply()
        if reply is not None:
            # Answer before the fan-out, so the publisher's next message
            # overlaps with this one's tells. Subscribers found dead during
            # the fan-out are dropped (the runtime drops them at their death
            # anyway); only that rare race makes the count one too high.
            reply.set(len(self._subs))
        for handler_id, (owner, ref) in list(self._subs.items()):
            try:
                ref.tell(Deliver(handler_id, (message,)))
            except ActorDeadError:
                logger.info("dropping subscriber %s (%s) of topic %r", handler_id, owner, self._topic)
                self._subs.pop(handler_id, None)

    def subscribers(self) -> int:
        return len(self._subs)


class PubSubManager(ActorBase):
    """Makes each topic's actor on first use; `spawn(cls, name, *args)` starts one."""

    runs_inline = True

    def __init__(self, spawn: Callable[..., Any]) -> None:
        super().__init__()
        self._spawn = spawn
        self._topics: dict[str, Any] = {}

    def get_topic(self, topic: str) -> Any:
        if not isinstance(topic, str) or not topic:
            msg = f"topics are non-empty str, got {topic!r}"
            raise TypeError(msg)
        if topic not in self._topics:
            self._topics[topic] = self._spawn(TopicActor, f"_topic:{topic}", topic)
        return self._topics[topic]

    def owner_died(self, owner: str) -> int:
        futures = [ref.ask(ProxyCall(("drop_owner",), (owner,), {}), block=False) for ref in self._topics.values()]
        return sum(f.get(timeout=10) for f in futures)


class PubSubClient(ManagerClient):
    """`comm.pub_sub`: subscribe, unsubscribe and publish from any process."""

    __slots__ = ()

    def _topic(self, topic: str) -> ServiceClient:
        return ServiceClient(self._child("get_topic", topic))

    def subscribe(self, topic: str, handler: Callable[[Message], Any]) -> str:
        """Call `handler(message)` for each message published on `topic`.

        Returns the subscription id (also accepted by `unsubscribe`).
        """
        topic_client = self._topic(topic)
        handler_id, ref = register_delivery(handler, ("topic", topic), topic_client._ref)
        return cast("str", topic_client._call("subscribe", current_agent_id(), ref, handler_id))

    def unsubscribe(self, topic: str, handler_or_id: Callable[..., Any] | str) -> bool:
        handler_id = unregister_handler(handler_or_id, ("topic", topic))
        if handler_id is None:
            return False
        return cast("bool", self._topic(topic)._call("unsubscribe", handler_id))

    def publish(self, sender: str, topic: str, payload: Any) -> int:
        """Deliver `payload` to every subscriber of `topic`; how many were reached."""
        message = Message(sender=sender, payload=payload, pattern=MessagePattern.PUBLISH_SUBSCRIBE, topic=topic)
        return cast("int", self._topic(topic)._call("publish", message))

    def subscribers(self, topic: str) -> int:
        return cast("int", self._topic(topic)._call("subscribers"))
