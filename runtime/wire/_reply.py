"""Replies going back to askers in other processes, never blocking for long.

Replies to one inbound connection leave through its `Outbox`. A reply is
written at once as far as the socket takes it; a large one waits for room
as its asker reads, for up to `_PATIENCE`. What is still left then (the
asker is not reading: futures it never gets) waits in the outbox, and the
tell flusher (`_batching`) writes it later. So such an asker costs memory
in this process, but can't stall the actor answering it, nor the others
that share its thread.
"""

from __future__ import annotations

import select
import socket
import sys
import threading
import time
from typing import Any, cast

import pykka

from runtime.wire._batching import retry_later
from runtime.wire._serialization import dumps, exception_payload
from runtime.wire._frames import REPLY, encode, socket_view

__all__ = ["Outbox", "RemoteReply", "failure_body"]

_PATIENCE = 0.1  # how long a reply waits for room before the flusher takes over


class Outbox:
    """The reply side of one inbound connection.

    Invariant: bytes are written only in order, under `_lock`, and never
    after `close()` (the reader then closes the descriptor, which may be
    reused at once).
    """

    def __init__(self, fd: int) -> None:
        self._lock = threading.Lock()
        self._view = socket_view(fd)  # detached in close(); never closes fd
        self._pending = bytearray()
        self._closed = False

    def send(self, frame: bytes | tuple[bytes, bytes]) -> None:
        parts = [frame] if isinstance(frame, bytes) else list(frame)
        with self._lock:
            if self._closed:
                return  # the asker's process is gone; nobody is waiting
            if self._pending:  # keep the order: behind what waits already
                for part in parts:
                    self._pending += part
                return
            try:
                rest = self._write(parts)
            except OSError:
                return  # the asker's process is gone
            if rest:
                for part in rest:
                    self._pending += part
                retry_later(self)

    def _write(self, parts: list[Any]) -> list[Any]:
        # Write `parts` in order; what is left once the socket stayed full
        # for _PATIENCE (the asker is not reading), or [] when all went.
        deadline = None
        poller = None
        while parts:
            try:
                if len(parts) == 1:  # the usual small reply: one plain send
                    sent = self._view.send(parts[0], socket.MSG_DONTWAIT)
                else:
                    sent = self._view.sendmsg(parts, [], socket.MSG_DONTWAIT)
            except BlockingIOError:
                sent = 0
            while sent and parts:
                if sent >= len(parts[0]):
                    sent -= len(parts.pop(0))
                else:
                    parts[0] = memoryview(parts[0])[sent:]
                    sent = 0
            if not parts:
                break
            # A large reply, or a socket its asker is slow to drain: wait a
            # little for room, as a blocking write would, but not forever.
            now = time.monotonic()
            if deadline is None:
                deadline = now + _PATIENCE
                poller = select.poll()
                poller.register(self._view.fileno(), select.POLLOUT)
            assert poller is not None  # made with the deadline
            if now >= deadline or not poller.poll((deadline - now) * 1000):
                break
        return parts

    def flush(self) -> None:
        self.try_flush()

    def try_flush(self) -> bool:
        """Write what the socket takes now; True once nothing waits."""
        with self._lock:
            if self._closed or not self._pending:
                self._pending.clear()
                return True
            try:
                sent = self._view.send(self._pending, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return False
            except OSError:
                self._pending.clear()
                return True
            del self._pending[:sent]
            return not self._pending

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._pending.clear()
            self._view.detach()


def failure_body(exc: BaseException) -> bytes:
    """A REPLY body raising `exc` in the asker (or, if `exc` can't be
    pickled, the error that says why)."""
    try:
        return dumps((False, exception_payload(exc)), "exception")
    except Exception as error:  # noqa: BLE001 - the asker gets a reason either way
        return dumps((False, error))


class RemoteReply(pykka.Future[Any]):
    """The reply future of an ask that came from another process.

    Setting it sends a REPLY frame back through the outbox of the connection
    the ask came in on; a value that can't be pickled is answered with the
    pickling error.
    """

    def __init__(self, outbox: Outbox, request_id: int) -> None:
        super().__init__()
        self._outbox, self._request_id = outbox, request_id
        self._sent = False

    def set(self, value: Any = None) -> None:
        try:
            body = dumps((True, value), "reply")
        except Exception as exc:  # noqa: BLE001 - the asker gets the reason
            body = dumps((False, exc))
        self._send(body)

    def set_exception(self, exc_info: Any = None) -> None:
        self._send(failure_body(cast("BaseException", (exc_info or sys.exc_info())[1])))

    def send_body(self, body: bytes) -> None:
        """Answer with `body` as it is (a node request answered in JSON)."""
        self._send(body)

    def _send(self, body: bytes) -> None:
        if self._sent:
            raise pykka.Timeout("reply already sent")  # as pykka: set twice is an error
        self._sent = True
        self._outbox.send(encode(REPLY, self._request_id, b"", body))
