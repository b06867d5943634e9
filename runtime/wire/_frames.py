"""Frames on the wire between processes, and reading them in bulk.

A frame is ``length (4, big-endian) | kind (1) | request id (8) | name
length (2) | name | body``, where body is one pickle (JSON in the reply to
INFO, which `actors status` reads). The length prefix is multiprocessing's
own, so the authentication handshake (done with a
`multiprocessing.connection.Connection`) and our frames share one stream.
The header stays outside the pickle so a body that can't be unpickled can
still be answered, with the error, by request id.

Writing builds each frame with one `join` and one `os.write`; reading pulls
whatever the socket holds into one buffer and splits it, so a burst of
tells costs one system call, not two per message.
"""

from __future__ import annotations

import os
import select
import socket
import struct

from actors import MessageSerializationError

__all__ = [
    "ASK", "ASK_CHAINED", "GONE", "INFO", "LEAVING", "LOOKUP", "REPLY", "SNAPSHOT", "STATS", "TELL", "FrameReader",
    "decode_header",
    "encode",
    "readable_now", "set_read_timeout", "shutdown_fd", "socket_view", "write_all",
]

TELL = 1  # deliver body to the named actor; no reply
ASK = 2  # deliver body with a reply future; a REPLY frame answers
REPLY = 3  # body is (ok, value) for the request id
ASK_CHAINED = 4  # an ASK from inside an agent's handler: body is (chain, message) (see `actors._chain`)
# Kinds from LOOKUP on are requests to a node itself, not to an actor it hosts.
LOOKUP = 5  # registry: where does the named actor live? body unused
STATS = 6  # host: mailbox depths of the actors hosted here
INFO = 7  # registry: the runtime's agent_info() rows (for `actors status`), answered in JSON
GONE = 8  # registry: reply once the named agent's process at the address in body has exited and been handled
# registry: the named agent, hosted at the address in body, is stopping: its
# name is forgotten (sent by that agent's own process only), then the reply
LEAVING = 9
# An agent's pickled snapshot for the named store (the body is the
# snapshot's pickle itself, never unpickled on the way), on a connection
# that carries nothing else. Request id 0: told, read in batches, the last
# one kept (`runtime.wire._drain`); else acknowledged by a REPLY once
# committed (`runtime.wire._journal`)
SNAPSHOT = 10

_PREFIX = struct.Struct("!iBQH")  # length, kind, request id, name length
_HEADER = struct.Struct("!BQH")
_LENGTH = struct.Struct("!i")
_MAX_FRAME = 0x7FFFFFFF - _HEADER.size - 1024


# Bodies larger than this are written with writev, not joined: no copy.
_JOIN_LIMIT = 1 << 16


def encode(kind: int, request_id: int, name: bytes, body: bytes) -> bytes | tuple[bytes, bytes]:
    """One whole frame, length prefix included (a pair of buffers if large)."""
    size = _HEADER.size + len(name) + len(body)
    if size > _MAX_FRAME:
        msg = f"message of {len(body):,} bytes is too large for one frame (limit 2 GiB)"
        raise MessageSerializationError(msg)
    head = _PREFIX.pack(size, kind, request_id, len(name))
    if len(body) > _JOIN_LIMIT:
        return (head + name, body)
    return b"".join((head, name, body))


def write_all(fd: int, data: bytes | bytearray | tuple[bytes | bytearray, bytes]) -> None:
    """Write every byte of a frame to the blocking descriptor `fd`."""
    if isinstance(data, tuple):
        head, body = data
        written = os.writev(fd, data)
        if written < len(head):
            write_all(fd, head[written:])
            written = len(head)
        data, written = body, written - len(head)
        if written >= len(data):
            return
    else:
        written = os.write(fd, data)
    if written < len(data):
        view = memoryview(data)
        while written < len(data):
            written += os.write(fd, view[written:])


def socket_view(fd: int) -> socket.socket:
    """A socket object over `fd` that must be `detach()`ed, never closed.

    Family and type are given, so CPython need not ask the kernel for them.
    """
    return socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fileno=fd)


def set_read_timeout(fd: int, seconds: float | None) -> None:
    """Make blocking reads of `fd` give up after `seconds` (None: never).

    SO_RCVTIMEO keeps the descriptor blocking, so a wait is one read()
    rather than poll() then read(); a read that times out raises
    BlockingIOError. The socket object is only a view: it never owns `fd`.
    """
    value = 0.0 if seconds is None else max(seconds, 1e-6)  # 0 would mean "forever"
    whole = int(value)
    view = socket_view(fd)
    try:
        view.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", whole, int((value - whole) * 1e6)))
    finally:
        view.detach()


def readable_now(fd: int) -> bool:
    """Whether `fd` (a socket, a pidfd) is readable right now: bytes, EOF,
    an exit. One `poll`: not `select`, which refuses descriptors past 1023
    (a runtime with many agents has them), nor `multiprocessing`'s `wait`,
    which builds a selector each time."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def shutdown_fd(fd: int) -> None:
    """Shut a socket down both ways (its readers see EOF); the fd stays open."""
    view = socket_view(fd)
    try:
        view.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        view.detach()


def decode_header(frame: memoryview) -> tuple[int, int, str, memoryview]:
    """Split a frame (without its length) into kind, request id, name and body."""
    kind, request_id, name_len = _HEADER.unpack_from(frame)
    end = _HEADER.size + name_len
    return kind, request_id, bytes(frame[_HEADER.size:end]).decode(), frame[end:]


class FrameReader:
    """Reads frames from a blocking descriptor, many per system call.

    Either `read()` blocks for the next frame, or, when a poller says the
    descriptor is readable, `pump()` reads once and `buffered()`/`read()`
    then take the frames that are complete, without ever blocking.
    """

    __slots__ = ("_buf", "_fd", "_filled", "_large", "_pos")

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buf: bytes | bytearray = b""  # a large frame is read into a bytearray
        self._pos = 0
        self._large: bytearray | None = None  # pump(): a large frame being filled
        self._filled = 0

    def pump(self) -> None:
        """Read once what the descriptor holds (call it when it is readable).

        EOFError at the end. A large frame is gathered in a buffer of its own
        size, so pumping it in pieces copies each byte once.
        """
        if self._large is not None:
            got = os.readv(self._fd, [memoryview(self._large)[self._filled:]])
            if not got:
                raise EOFError("connection closed")
            self._filled += got
            if self._filled == len(self._large):
                self._buf, self._pos, self._large = self._large, 0, None
            return
        self._read_chunk()  # leaves the unread bytes at the start of _buf
        size = self._large_size()
        if size is not None and len(self._buf) < size:
            self._large = bytearray(size)
            self._large[: len(self._buf)] = self._buf
            self._filled = len(self._buf)
            self._buf = b""

    def buffered(self) -> bool:
        """Whether a whole frame is already here (no need to wait)."""
        return self._complete() is not None

    def _complete(self) -> int | None:
        available = len(self._buf) - self._pos
        if available < _LENGTH.size:
            return None
        (size,) = _LENGTH.unpack_from(self._buf, self._pos)
        return size if available >= _LENGTH.size + size else None

    def next_kind(self) -> int:
        """The kind of the next frame, without taking it (only once `buffered()`)."""
        return self._buf[self._pos + _LENGTH.size]

    def read(self) -> memoryview:
        """The next frame (without its length prefix); EOFError at the end."""
        while True:
            size = self._complete()
            if size is not None:
                start = self._pos + _LENGTH.size
                self._pos = start + size
                return memoryview(self._buf)[start:start + size]
            self._fill()

    def _read_chunk(self) -> None:
        chunk = os.read(self._fd, 1 << 16)
        if not chunk:
            raise EOFError("connection closed")
        self.feed(chunk)

    def feed(self, chunk: bytes) -> None:
        """Add bytes read elsewhere (a non-blocking read) to the buffer."""
        rest = self._buf[self._pos:]
        self._buf = rest + chunk if rest else chunk
        self._pos = 0

    def _large_size(self) -> int | None:
        # The whole size (length prefix included) of the frame the unread
        # bytes begin, if it is too large to gather by joining chunks.
        if len(self._buf) - self._pos < _LENGTH.size:
            return None
        size = _LENGTH.size + _LENGTH.unpack_from(self._buf, self._pos)[0]
        return size if size > _JOIN_LIMIT else None

    def _fill(self) -> None:
        size = self._large_size()
        if size is not None:
            self._read_large(self._buf[self._pos:], size)
        else:
            self._read_chunk()

    def _read_large(self, rest: bytes | bytearray, size: int) -> None:
        # A large frame is read straight into a buffer of its own size:
        # one copy out of the kernel, none to stitch pieces together.
        buf = bytearray(size)
        buf[: len(rest)] = rest
        view = memoryview(buf)
        filled = len(rest)
        while filled < size:
            try:
                got = os.readv(self._fd, [view[filled:]])
            except BlockingIOError:
                # A read timeout mid-frame: keep what came, and let the
                # caller's deadline decide whether to wait for the rest.
                self._buf, self._pos = bytes(view[:filled]), 0
                raise
            if not got:
                raise EOFError("connection closed")
            filled += got
        self._buf = buf
        self._pos = 0
