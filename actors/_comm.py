"""The communication hub: request-reply and fire-and-forget over refs.

Request-reply is an ask of a `Message` to the recipient, answered by its
`handle_request`; fire-and-forget is a tell of the same `Message`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from actors._pubsub import PubSubClient
from actors._streams import StreamingClient
from actors._types import Message, MessagePattern

__all__ = ["CommHub", "RequestReply"]


class RequestReply:
    """The request-reply channel: `request` blocks for the recipient's answer."""

    def __init__(self, peer: Callable[[str], Any]) -> None:
        self._peer = peer

    def request(self, sender: str, recipient: str, payload: Any, timeout: float = 30.0) -> Any:
        message = Message(sender=sender, recipient=recipient, payload=payload)
        return self._peer(recipient).ask(message, timeout=timeout)


class CommHub:
    """`rt.comm` / `self.ctx.comm`: the channels between agents.

    `request_reply`, `send` (fire-and-forget), `pub_sub` and `streaming`.
    `peer(name)` turns an agent id into a ref; unknown ids fail there, at once.
    """

    def __init__(
        self,
        peer: Callable[[str], Any],
        pub_sub: PubSubClient,
        streaming: StreamingClient,
    ) -> None:
        self._peer = peer
        self.request_reply = RequestReply(peer)
        self.pub_sub = pub_sub
        self.streaming = streaming

    def send(self, sender: str, recipient: str, payload: Any) -> None:
        message = Message(
            sender=sender, recipient=recipient, payload=payload, pattern=MessagePattern.FIRE_AND_FORGET
        )
        self._peer(recipient).tell(message)
