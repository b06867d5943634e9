"""A node's outbound side: each thread's connections to other nodes, and requests.

A mixin of `Node` (see `_node`): every thread of a process has its own
connection to each node it talks to (so asks from several threads never
share a socket, and each thread reads its own replies), made at its
first use; `peer_gone` drops every thread's connection to a process known
to have exited. Requests to the registry (LOOKUP, GONE) and other node
requests are ASK-like frames on those connections.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any, cast

from actors import ActorDeadError
from runtime.wire._channel import Channel, PeerGone
from runtime.wire._frames import GONE, LOOKUP, encode

__all__ = ["Outbound"]


class _Channels(dict):  # type: ignore[type-arg]
    """One thread's connections by address (a dict that can be weakly referenced)."""


_CHANNELS_LOCK = threading.Lock()


class Outbound:
    """The outbound connections of a node; `_init_outbound` sets them up."""

    authkey: bytes
    is_registry: bool
    registry_address: str
    names: dict[str, str]
    gone: Callable[[str, str, Callable[[Any], None]], None] | None

    def _init_outbound(self) -> None:
        self._tls = threading.local()
        # Every thread's `channels` (by id), while the thread lives.
        self._thread_channels: weakref.WeakValueDictionary[int, _Channels] = weakref.WeakValueDictionary()

    def channel(self, address: str) -> Channel:
        """This thread's connection to the node at `address`."""
        channels = self._channels()
        channel = channels.get(address)
        if channel is None or channel.closed:
            channel = channels[address] = Channel(address, self.authkey)
        return channel

    def _channels(self) -> dict[str, Channel]:
        try:
            channels: dict[str, Channel] = self._tls.channels
            return channels
        except AttributeError:  # this thread's first connection
            channels = self._tls.channels = _Channels()
            with _CHANNELS_LOCK:
                self._thread_channels[id(channels)] = channels
            return channels

    def forget_channel(self, address: str) -> None:
        self._channels().pop(address, None)

    def peer_gone(self, address: str) -> None:
        """The process at `address` is known to be gone: every thread's
        connection to it is dropped (its descriptor released), and a send
        still holding one (a queued tell, too) fails, so a tell after a
        `stop()` raises `ActorDeadError` instead of vanishing."""
        with _CHANNELS_LOCK:
            every = list(self._thread_channels.values())
        for channels in every:
            channel = channels.pop(address, None)  # atomic: the owning thread may be using its dict
            if channel is not None:
                channel.discard()

    def await_gone(self, name: str, address: str, timeout: float | None) -> str | None:
        """Wait until the process at `address` hosting `name` has exited and
        the runtime has handled it (AGENT_LEFT out, the name free or being
        restarted); its AGENT_LEFT reason, or None if unknown (an older
        process, or the runtime did not answer within `timeout`)."""
        try:
            if self.is_registry:
                if self.gone is None:
                    return None
                done = threading.Event()
                outcome: list[str | None] = [None]

                def settle(reason: Any) -> None:
                    outcome[0] = reason
                    done.set()

                self.gone(name, address, settle)
                done.wait(timeout)
                return outcome[0]
            return cast("str | None", self.request(self.registry_address, GONE, name, address.encode(), timeout))
        except Exception:  # noqa: BLE001 - the runtime is gone or slow: nothing more to learn
            return None
        finally:
            self.peer_gone(address)

    def request(self, address: str, kind: int, name: str, body: bytes, timeout: float | None) -> Any:
        """Send one ASK-like frame and wait for its reply (registry, stats)."""
        return self.start_request(address, kind, name, body)(timeout)

    def start_request(self, address: str, kind: int, name: str, body: bytes) -> Callable[[float | None], Any]:
        """Send one ASK-like frame now; wait for its reply with what this returns.

        Requests to several nodes started first and waited for after
        overlap, instead of costing a round trip each.
        """
        channel = self.channel(address)
        request_id = channel.next_id()
        channel.send(encode(kind, request_id, name.encode(), body))
        return lambda timeout: channel.wait(request_id, timeout, f"node {address}")

    def lookup(self, name: str) -> str | None:
        """The address of the node hosting `name`, or None if none does."""
        if self.is_registry:
            return self.names.get(name)
        try:
            return cast("str | None", self.request(self.registry_address, LOOKUP, name, b"", 30.0))
        except (PeerGone, ActorDeadError) as exc:
            msg = f"the runtime is gone (looking up {name!r}): {exc}"
            raise ActorDeadError(msg) from exc
