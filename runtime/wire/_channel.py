"""The sending side: one authenticated connection per (thread, peer process).

A thread that asks and then waits reads its own reply off its own
connection, so a blocking ask costs no hop through a reader thread. Futures
handed to other threads still work: whoever waits first reads for everyone
(leader/follower), parking replies that belong to others. Tells that follow
each other closely are batched into one write (see `runtime.wire._batching`).
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client
from typing import Any


from actors import ActorDeadError, AskTimeout
from runtime.wire._aio import AwaitedReplies
from runtime.wire._future import AskFuture, local_waiter, unwrap
from runtime.wire._batching import BATCH_BYTES, BURST, flush_thread, queued
from runtime.wire._serialization import loads, unloadable
from runtime.wire._signals import slice_for_signals
from runtime.wire._spin import Spinner
from runtime.wire._frames import (
    REPLY, FrameReader, decode_header, readable_now, set_read_timeout, shutdown_fd, socket_view, write_all,
)

__all__ = ["AskFuture", "Channel", "PeerGone", "local_waiter"]  # the futures from `_future`, for callers

_request_ids = itertools.count(1)
_POLL_READ = 0.05  # a poll that found bytes waits at most this for the rest of their frame


class PeerGone(ConnectionError):
    """The process at the other end could not be reached or went away."""


class Channel(AwaitedReplies):
    """One connection to one peer process, used by one thread to send.

    Only the owning thread sends; the flusher thread may write queued tells
    too, under `_send_lock`, so frames leave in the order they were sent.
    """

    def __init__(self, address: str, authkey: bytes) -> None:
        self.address = address
        try:
            self._conn = Client(address, family="AF_UNIX", authkey=authkey)
        except AuthenticationError as exc:
            raise PeerGone(f"{address} refused the key: {exc}") from exc
        except (OSError, EOFError) as exc:
            raise PeerGone(f"can't connect to {address}: {exc}") from exc
        self._fd = self._conn.fileno()
        self._reader = FrameReader(self._fd)
        self._spinner = Spinner()
        # Waiting with a timeout sleeps in read() under SO_RCVTIMEO: one
        # system call, where poll() then read() cost two wake-ups (~25 us).
        self._read_timeout: float | None = None
        self._cond = threading.Condition(threading.Lock())
        self._reading = False
        self._replies: dict[int, tuple[bool, Any]] = {}
        self._abandoned: set[int] = set()  # ids whose replies nobody will read
        self._dropped: deque[int] = deque()  # ids abandoned, not yet moved to _abandoned
        self._waiters: dict[int, Callable[[tuple[bool, Any]], None]] = {}  # awaited asks (`_aio`)
        self._send_lock = threading.Lock()
        self._queued = bytearray()  # whole TELL frames not yet written
        self._last_tell = 0.0  # when this thread last told through here
        self.closed = False

    def next_id(self) -> int:
        return next(_request_ids)

    def send(self, frame: bytes | tuple[bytes, bytes]) -> None:
        """Write `frame` now, after every tell this thread queued anywhere."""
        flush_thread(self)
        with self._send_lock:
            self._write(frame)
            # A tell after a request is not part of a burst (ask, tell, ask,
            # tell: queueing each tell would only delay it to the next ask).
            self._last_tell = 0.0

    def tell(self, frame: bytes | tuple[bytes, bytes]) -> None:
        """Write a TELL frame, or queue it if it follows the last one closely."""
        now = time.perf_counter()
        with self._send_lock:
            queue = self._queued
            last, self._last_tell = self._last_tell, now
            if isinstance(frame, tuple) or (not queue and now - last > BURST):
                self._write(frame)  # a large or a lone tell goes at once, after any queued
                return
            if self.closed:
                raise PeerGone(f"connection to {self.address} is closed")
            first = not queue
            queue += frame
            if len(queue) >= BATCH_BYTES:
                self._write(b"")
                return
        if first:
            queued(self)

    def _write(self, frame: bytes | tuple[bytes, bytes]) -> None:
        # Called with _send_lock held: queued tells first, then `frame`.
        if self.closed:
            raise PeerGone(f"connection to {self.address} is closed")
        queue = self._queued
        try:
            if queue:
                if isinstance(frame, tuple):  # rare: tells queued before a large frame
                    write_all(self._fd, queue)
                    write_all(self._fd, frame)
                else:
                    write_all(self._fd, (queue, frame))
                queue.clear()
            elif frame:
                write_all(self._fd, frame)
        except OSError as exc:
            self._broken()
            raise PeerGone(f"lost connection to {self.address}: {exc}") from exc

    def _broken(self) -> None:
        # A write failed: the queued tells are lost with the peer, as tells in
        # its socket would be. Shut down rather than close: another thread
        # may be reading replies off this descriptor; it sees EOF and closes.
        self._queued.clear()
        self.closed = True
        shutdown_fd(self._fd)

    def flush(self) -> None:
        """Write the queued tells now (owning thread; blocks if the peer lags)."""
        with self._send_lock:
            if self._queued:
                try:
                    self._write(b"")
                except PeerGone:
                    pass  # the next send on this channel reports it

    def try_flush(self) -> bool:
        """Write what the socket takes without waiting; True once none is left.

        Called by the flusher thread; a busy owner writes its queue itself.
        """
        if not self._send_lock.acquire(blocking=False):
            return False
        try:
            queue = self._queued
            if not queue or self.closed:
                queue.clear()
                return True
            view = socket_view(self._fd)
            try:
                sent = view.send(queue, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return False
            except OSError:
                self._broken()
                return True
            finally:
                view.detach()
            del queue[:sent]
            return not queue
        finally:
            self._send_lock.release()

    def _close(self) -> None:
        # Under the send lock: the owner or the flusher may be writing to
        # this descriptor, and must never write to a number reused after it.
        with self._send_lock:
            self.closed = True
            self._queued.clear()
            try:
                self._conn.close()
            except OSError:
                pass
        self._fail_waiters()

    def close(self) -> None:
        with self._cond:
            self._close()
            self._cond.notify_all()

    def discard(self) -> None:
        """The peer is known gone (from any thread): later sends fail, queued
        tells are dropped, and the descriptor is released, by its reader if
        one is reading it right now (it sees EOF), else here."""
        with self._cond:
            if not self._reading:
                self._close()
            else:
                with self._send_lock:
                    if not self.closed:
                        self.closed = True
                        self._queued.clear()
                        shutdown_fd(self._fd)
            self._cond.notify_all()

    def wait(self, request_id: int, timeout: float | None, what: str) -> Any:
        """Block until the reply to `request_id` arrives; return or raise it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        polled = False
        with self._cond:
            while True:
                if request_id in self._replies:
                    return unwrap(self._replies.pop(request_id))
                if self.closed:
                    msg = f"{what} died before answering"
                    raise ActorDeadError(msg)
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0 and not polled and not self._reading:
                    # Out of time (or a poll: timeout 0): take a reply that has
                    # arrived but was not read yet, once, without waiting.
                    polled = True
                    if self._reader.buffered() or readable_now(self._fd):
                        self._read_unlocked(_POLL_READ)
                        continue
                if remaining is not None and remaining <= 0:
                    # Its reply, if it comes late, is kept for a later wait
                    # (until the future is dropped: see `abandon`).
                    msg = f"{what} did not answer within {timeout} s"
                    raise AskTimeout(msg)
                step = slice_for_signals(remaining)  # the main thread sees a Ctrl-C meanwhile
                if self._reading:  # another thread reads for us: wait for news
                    self._cond.wait(step)
                    continue
                self._read_unlocked(step)

    def _read_unlocked(self, timeout: float | None) -> None:
        # Under `_cond`, which is let go meanwhile: read one frame as the
        # channel's reader (others wait for news), then wake them.
        self._reading = True
        self._cond.release()
        try:
            self._read_one(timeout)
        finally:
            self._cond.acquire()
            self._reading = False
            self._cond.notify_all()

    def abandon(self, request_id: int) -> None:
        """Nobody will wait for `request_id` any more: drop its reply, now or when it comes.

        Takes no lock (it runs from a future's `__del__`, which may happen in
        any thread, even one holding `_cond`); the next read settles it.
        """
        self._dropped.append(request_id)

    def _forget_dropped(self) -> None:
        # Called with _cond held.
        while self._dropped:
            request_id = self._dropped.popleft()
            if self._replies.pop(request_id, None) is None:
                self._abandoned.add(request_id)

    def _read_one(self, timeout: float | None) -> None:
        # Called without the condition held; only one thread at a time.
        try:
            reader = self._reader
            if not reader.buffered():
                self._spinner.read(self._fd, reader)
                if not reader.buffered():
                    self._set_read_timeout(timeout)
            frame = reader.read()
        except BlockingIOError:
            return  # the timeout ran out with nothing read
        except (EOFError, OSError):
            self._close()
            return
        self._take(frame)

    def _take(self, frame: memoryview) -> None:
        # A frame read by the one thread reading now: file its reply.
        kind, request_id, _name, body = decode_header(frame)
        if kind != REPLY:
            return
        try:
            outcome = loads(body)
        except Exception as exc:  # noqa: BLE001 - e.g. a class only the answering process has
            outcome = (False, unloadable(body, exc))
        waiter = None
        with self._cond:
            self._forget_dropped()
            if request_id in self._abandoned:
                self._abandoned.discard(request_id)
            elif self._waiters and request_id in self._waiters:
                waiter = self._waiters.pop(request_id)
            else:
                self._replies[request_id] = outcome
        if waiter is not None:
            waiter(outcome)

    def _set_read_timeout(self, timeout: float | None) -> None:
        # A read may end early (the wait loop then reads again), and at most
        # 1% + 1 ms late. So a timeout already set between half the remaining
        # time and a hair over it is kept: asks that all use the same timeout
        # cost no system call each.
        current = self._read_timeout
        if timeout is None:
            if current is None:
                return
        elif current is not None and timeout / 2 <= current <= timeout * 1.01 + 0.001:
            return
        set_read_timeout(self._fd, timeout)
        self._read_timeout = timeout

