"""Streams: ordered, bounded channels of chunks between any two processes.

Each stream is an actor holding at most `maxsize` unread chunks. A `send`
that finds the stream full is parked (its reply deferred) until the reader
takes a chunk, so a fast writer waits instead of growing memory; a
`receive` that finds it empty is parked until a chunk arrives, its timeout
runs out (None), or the stream is closed and drained (end of stream).
Chunks carry sequence numbers assigned by the stream actor, in arrival
order; one writer's chunks arrive in the order it sent them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, cast


from actors._base import ActorBase
from actors._parking import ParkingActor, answer
from actors._client import ManagerClient, ServiceClient, ask_parked
from actors._errors import StreamClosedError, UnknownStreamError

__all__ = ["END", "StreamActor", "StreamManager", "StreamingClient"]

END = "__actors_end_of_stream__"  # what `take` answers once closed and drained


class StreamActor(ParkingActor):
    """One stream's buffer, its parked writers and its parked readers."""

    expired = None  # what a reader whose timeout ran out gets

    def __init__(self, stream_id: str, maxsize: int) -> None:
        super().__init__()  # self._parked: the readers waiting for a chunk
        self._stream_id = stream_id
        self._maxsize = maxsize
        self._chunks: deque[tuple[int, Any]] = deque()
        self._writers: deque[tuple[Any, Any]] = deque()  # (reply, data) waiting for room
        self._next_seq = 0
        self._closed = False

    def put(self, data: Any) -> int:
        """Append a chunk; parks the writer while the stream is full."""
        if self._closed:
            msg = f"stream {self._stream_id!r} is closed"
            raise StreamClosedError(msg)
        if len(self._chunks) >= self._maxsize:
            self._writers.append((self._defer_reply(), data))
            return -1  # not sent: the reply was deferred
        seq = self._append(data)
        self._serve_readers()
        return seq

    def _append(self, data: Any) -> int:
        seq = self._next_seq
        self._next_seq += 1
        self._chunks.append((seq, data))
        return seq

    def take(self, timeout: float | None, request_id: str) -> Any:
        """The next chunk as (seq, data); END once closed and drained."""
        if self._chunks and not self._parked:
            return self._pop()
        if self._closed and not self._chunks:
            return END
        self._parked.park(request_id, "", timeout)
        return None  # not sent: the reply was deferred

    def _pop(self) -> tuple[int, Any]:
        chunk = self._chunks.popleft()
        if self._writers:  # room again: admit the first parked writer
            reply, data = self._writers.popleft()
            seq = self._append(data)
            if reply is not None:
                reply.set(seq)
        return chunk

    def _serve_readers(self) -> None:
        while self._parked and (self._chunks or self._closed):
            first = self._parked.first()
            assert first is not None  # self._parked is not empty
            waiter = self._parked.take(first[0])
            assert waiter is not None  # first() just named it
            answer(waiter, self._pop() if self._chunks else END)

    def close(self) -> None:
        """No more chunks; readers get END after the last one."""
        self._closed = True
        for reply, _data in self._writers:
            if reply is not None:
                reply.set_exception((StreamClosedError, StreamClosedError(f"stream {self._stream_id!r} closed"), None))
        self._writers.clear()
        self._serve_readers()

    def statistics(self) -> dict[str, Any]:
        return {
            "buffered": len(self._chunks), "maxsize": self._maxsize, "writers_waiting": len(self._writers),
            "readers_waiting": len(self._parked), "sent": self._next_seq, "closed": self._closed,
        }


class StreamManager(ActorBase):
    """Creates streams (`spawn(cls, name, *args)` starts one) and finds them."""

    runs_inline = True

    def __init__(self, spawn: Callable[..., Any]) -> None:
        super().__init__()
        self._spawn = spawn
        self._streams: dict[str, tuple[Any, int]] = {}

    def create_stream(self, stream_id: str, maxsize: int) -> Any:
        if not isinstance(stream_id, str) or not stream_id:
            msg = f"stream ids are non-empty str, got {stream_id!r}"
            raise TypeError(msg)
        if not isinstance(maxsize, int) or maxsize < 1:
            msg = f"maxsize must be a positive int, got {maxsize!r}"
            raise ValueError(msg)
        known = self._streams.get(stream_id)
        if known is not None:
            if known[1] != maxsize:
                msg = f"stream {stream_id!r} already exists with maxsize {known[1]}"
                raise ValueError(msg)
            return known[0]
        ref = self._spawn(StreamActor, f"_stream:{stream_id}", stream_id, maxsize)
        self._streams[stream_id] = (ref, maxsize)
        return ref

    def get_stream(self, stream_id: str) -> Any:
        known = self._streams.get(stream_id)
        if known is None:
            raise UnknownStreamError(stream_id)
        return known[0]


class StreamingClient(ManagerClient):
    """`comm.streaming`: create, send to, receive from and close streams."""

    __slots__ = ()

    def _stream(self, stream_id: str) -> ServiceClient:
        return ServiceClient(self._child("get_stream", stream_id))

    def create_stream(self, stream_id: str, maxsize: int = 64) -> None:
        self._remember(("get_stream", stream_id), self._call("create_stream", stream_id, maxsize))

    def send(self, stream_id: str, data: Any, timeout: float | None = None) -> int:
        """Append a chunk; blocks while `maxsize` chunks are unread. Its sequence number."""
        return cast("int", self._stream(stream_id)._call("put", data, timeout=timeout))

    def send_bytes(self, stream_id: str, payload: bytes, chunk_size: int = 1 << 20) -> int:
        """Stream a large payload in chunks; slices are views, so no copy of the whole."""
        view = memoryview(payload)
        count = 0
        for offset in range(0, len(view), chunk_size):
            self.send(stream_id, view[offset:offset + chunk_size].tobytes())
            count += 1
        return count

    def _take(self, stream_id: str, timeout: float | None) -> Any:
        return ask_parked(self._stream(stream_id), "take", timeout=timeout)

    def receive(self, stream_id: str, timeout: float | None = None) -> Any:
        """The next chunk's data, or None on timeout or at the end of the stream."""
        chunk = self._take(stream_id, timeout)
        return None if chunk is None or chunk == END else chunk[1]

    def iterate(self, stream_id: str, timeout: float | None = None) -> Iterator[Any]:
        """Yield the chunks in order until the stream is closed and drained."""
        while True:
            chunk = self._take(stream_id, timeout)
            if chunk is None:
                return  # nothing arrived in time (without a timeout, a chunk or END always does)
            if chunk == END:
                return
            yield chunk[1]

    def close_stream(self, stream_id: str) -> None:
        self._stream(stream_id)._call("close")

    def statistics(self, stream_id: str) -> dict[str, Any]:
        return cast("dict[str, Any]", self._stream(stream_id)._call("statistics"))
