"""Awaiting an ask's reply on an asyncio event loop, without blocking it.

A cross-process ask's reply comes on the asking thread's `Channel`. An
awaited ask (`AskFuture`, itself an asyncio future: see `_future`) is
bound to a future of the loop (`bind`): a callback for its request id on
that channel (`Channel.watch`), and the loop reads the channel's socket
itself (`loop.add_reader`): when it is readable the loop's thread reads
what is there without blocking (`Channel.pump_ready`) and settles the
waiting futures. A thread that happens to be reading the same channel in
a blocking wait (leader/follower, see `_channel`) settles them too,
through `call_soon_threadsafe`. Measured against handing each reply over
from a reader thread (benchmarks/bench_async.py), the loop's own reader is
faster. An iteration after an ask is bound, a loop with nothing else to
run polls the socket for the reply before it sleeps (`_spin`), as a
blocking ask does: a loop asleep in epoll wakes only after its CPU does,
which doubled an awaited ask's time on an idle machine.

The loop's work stays in small slices, so its other tasks keep their
pace under a thousand asks in flight (bench_async's worst lag): binding an
ask is a callback, a dict entry and no system call (the descriptor is
registered once per channel); a callback files at most `PUMP_FRAMES`
replies, and while more are buffered the socket is not read and the rest
go `PUMP_FRAMES` per loop iteration (`_pause`), each iteration also
running the tasks the previous one woke.

Cancelling the awaiting task abandons the ask: its reply, when it comes,
is dropped (`Channel.abandon`). An await that times out keeps it, as a
blocking `get` does, for a later `get` or await of the same future.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from actors import ActorDeadError, AskTimeout
from actors._future import wait_future
from runtime.wire._frames import FrameReader, socket_view
from runtime.wire._spin import Spinner

__all__ = ["PUMP_FRAMES", "AwaitedReplies", "await_ask", "bind", "unbind"]

# Replies an event loop files per callback: each wakes a task, whose step
# runs in the loop's next iteration; bounding them bounds an iteration.
PUMP_FRAMES = 32

# Per loop: which channel each descriptor it reads belongs to, so a
# descriptor number reused by a new channel is re-registered cleanly.
_readers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, AwaitedReplies]] = weakref.WeakKeyDictionary()


def _readable(loop: asyncio.AbstractEventLoop, channel: AwaitedReplies) -> None:
    # The loop's thread: the channel's socket has bytes (or EOF).
    if channel.closed or not channel.pump_ready(True):
        # Closed, or another thread is reading it (and settles our
        # waiters): stop watching; the next await registers again.
        _unwatch_fd(loop, channel)
    elif channel._reader.buffered():
        _pause(loop, channel)


def _pause(loop: asyncio.AbstractEventLoop, channel: Any) -> None:
    # More replies are buffered than one callback files: stop reading the
    # socket, and file them `PUMP_FRAMES` per loop iteration, so the
    # loop's other callbacks (and the tasks these replies woke) run in
    # between; reading resumes once they are all filed.
    if not channel._aio_paused:
        channel._aio_paused = True
        loop.remove_reader(channel._fd)
        loop.call_soon(_buffered, loop, channel)


def _buffered(loop: asyncio.AbstractEventLoop, channel: Any) -> None:
    # The loop's thread, an iteration after `_pause`.
    channel._aio_paused = False
    if channel._aio_loop is not loop:
        return  # no longer watched by this loop (`_unwatch_fd`)
    if channel.closed or not channel.pump_ready(False):
        _unwatch_fd(loop, channel)
    elif channel._reader.buffered():
        channel._aio_paused = True
        loop.call_soon(_buffered, loop, channel)
    else:
        loop.add_reader(channel._fd, _readable, loop, channel)


def _unwatch_fd(loop: asyncio.AbstractEventLoop, channel: AwaitedReplies) -> None:
    channel._aio_loop = None
    readers = _readers.get(loop)
    if readers is not None and readers.get(channel._fd) is channel:
        del readers[channel._fd]
        loop.remove_reader(channel._fd)


def _watch_fd(loop: asyncio.AbstractEventLoop, channel: AwaitedReplies) -> None:
    if channel._aio_loop is loop:  # read by this loop already (or paused): one attribute read per await
        return
    channel._aio_loop = loop
    readers = _readers.get(loop)
    if readers is None:
        readers = _readers[loop] = {}
    fd = channel._fd
    known = readers.get(fd)
    if known is channel:
        return
    if known is not None:
        loop.remove_reader(fd)  # a closed channel's number, reused
    loop.add_reader(fd, _readable, loop, channel)
    readers[fd] = channel


async def await_ask(future: Any, timeout: float | None) -> Any:
    """The outcome `(ok, value)` of an `AskFuture` whose reply does not
    come on a channel (those are `bind`'s), awaited on the running loop;
    for a future with no `_source`, its value (or its error raised)."""
    source = future._source
    if source is None:  # a future with a waiter of its own: a worker thread waits
        return await wait_future(_Blocking(future), timeout)
    # An ask to an actor of this process: its pykka future.
    try:
        return True, await wait_future(source, timeout)
    except AskTimeout:
        raise
    except Exception as exc:  # noqa: BLE001 - the ask's outcome
        return False, exc


def bind(loop: asyncio.AbstractEventLoop, future: Any, waiter: asyncio.Future[None]) -> None:
    """Have the reply to `future`'s cross-process ask set its outcome
    (`_take_outcome`) and then `waiter`'s result, in the loop's thread,
    with the loop reading the channel; now, if the reply is here."""
    channel, request_id, what = future._source
    loop_thread = threading.get_ident()

    def done(outcome: tuple[bool, Any]) -> None:  # any thread
        if threading.get_ident() == loop_thread:
            _settle(future, waiter, outcome)
        else:
            try:
                loop.call_soon_threadsafe(_settle, future, waiter, outcome)
            except RuntimeError:
                future._take_outcome(outcome)  # the loop is closed: only a later get may want it

    outcome = channel.watch(request_id, done, what)
    if outcome is not None:
        _settle(future, waiter, outcome)
        return
    _watch_fd(loop, channel)
    # Frames a blocking read left (read unlocked: see `pump_ready`).
    buffered = channel._reader.buffered() and not channel._aio_paused
    if buffered and channel.pump_ready(False) and channel._reader.buffered():
        _pause(loop, channel)
    elif not channel._aio_spin_due:
        channel._aio_spin_due = True
        loop.call_soon(_spin, loop, channel)


def _spin(loop: asyncio.AbstractEventLoop, channel: AwaitedReplies) -> None:
    # The loop's thread, an iteration after an ask was bound. A reply
    # comes within tens of microseconds, while a loop asleep in epoll wakes
    # only after its CPU does (as long again here): when the loop has
    # nothing else to run, poll the socket first, as a blocking ask does
    # (up to `SPIN`, skipped after fruitless spins: `Backoff`). A loop
    # with other callbacks ready (or one that doesn't say: not asyncio's
    # own) never spins.
    channel._aio_spin_due = False
    ready = getattr(loop, "_ready", None)
    if ready is None or ready or channel._aio_loop is not loop or channel._aio_paused or not channel._waiters:
        return
    if channel.pump_ready(False, spin=True) and channel._reader.buffered():
        _pause(loop, channel)


def unbind(future: Any, *, abandon: bool) -> None:
    """Stop waiting for `future`'s reply (a timed-out or cancelled await);
    with `abandon`, it is dropped when it comes, else kept for a `get`."""
    channel, request_id, _what = future._source
    channel.unwatch(request_id, abandon=abandon)


def _settle(future: Any, waiter: asyncio.Future[None], outcome: tuple[bool, Any]) -> None:
    future._take_outcome(outcome)  # also if nobody waits any more: a later get takes it
    if not waiter.done():
        waiter.set_result(None)


class AwaitedReplies:
    """The part of `Channel` that serves awaited asks (a mixin: it uses the
    channel's reader, condition and reply table)."""

    # The channel's own (set in `Channel.__init__`), declared for the checker.
    address: str
    closed: bool
    _fd: int
    _reader: FrameReader
    _cond: threading.Condition
    _reading: bool
    _replies: dict[int, tuple[bool, Any]]
    _abandoned: set[int]
    _waiters: dict[int, Callable[[tuple[bool, Any]], None]]

    if TYPE_CHECKING:
        def _close(self) -> None: ...
        def _take(self, frame: memoryview) -> None: ...

    #: The event loop that reads this channel's socket (`_watch_fd`), if
    #: any, and whether it paused reading to file buffered replies first.
    _aio_loop: asyncio.AbstractEventLoop | None = None
    _aio_paused = False
    #: A spin is scheduled (`_spin`), and the loop's spinning state.
    _aio_spin_due = False
    _aio_spinner: Spinner | None = None

    def watch(
        self, request_id: int, waiter: Callable[[tuple[bool, Any]], None], what: str
    ) -> tuple[bool, Any] | None:
        """Have `waiter(outcome)` called (by whichever thread reads it) when
        the reply to `request_id` comes; or return the outcome if it is here."""
        with self._cond:
            if request_id in self._replies:
                return self._replies.pop(request_id)
            if self.closed:
                return False, ActorDeadError(f"{what} died before answering")
            self._waiters[request_id] = waiter
        return None

    def unwatch(self, request_id: int, *, abandon: bool) -> None:
        """Stop waiting for `request_id` (a timed-out or cancelled await);
        with `abandon`, its reply is dropped when it comes."""
        with self._cond:
            self._waiters.pop(request_id, None)
            if abandon and self._replies.pop(request_id, None) is None:
                self._abandoned.add(request_id)

    def pump_ready(self, readable: bool, *, spin: bool = False) -> bool:
        """Take the replies that are here without ever blocking: the frames
        already buffered (at most `PUMP_FRAMES` of them: the caller sees
        what is left with `_reader.buffered()`), and with `readable` what
        the socket holds now, or with `spin` what comes while it is polled
        for a moment (see `_spin`). False if another thread is reading (it
        files the replies).

        `_reader.buffered()` may be read without the lock: only the one
        thread reading changes the reader, and it settles every waiter
        registered before, so a stale False only means another thread
        files the frames."""
        with self._cond:
            if self._reading:
                return False
            self._reading = True
        try:
            reader = self._reader
            if spin:
                spinner = self._aio_spinner
                if spinner is None:
                    spinner = self._aio_spinner = Spinner()
                spinner.read(self._fd, reader)  # bytes fed, or none (EOF: the loop's reader sees it)
            elif readable:
                view = socket_view(self._fd)
                try:
                    chunk = view.recv(1 << 16, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    chunk = None
                except OSError:
                    chunk = b""
                finally:
                    view.detach()
                if chunk == b"":
                    self._close()  # EOF: the peer is gone; its waiters learn it
                    return True
                if chunk:
                    reader.feed(chunk)
            for _ in range(PUMP_FRAMES):
                if not reader.buffered():
                    break
                self._take(reader.read())
        finally:
            with self._cond:
                self._reading = False
                self._cond.notify_all()
        return True

    def _fail_waiters(self) -> None:
        # The connection is gone: every awaited ask on it fails now.
        if not self._waiters:
            return
        waiters = list(self._waiters.values())
        self._waiters.clear()
        for waiter in waiters:
            waiter((False, ActorDeadError(f"the process at {self.address} died before answering")))


class _Blocking:
    """A future with only a blocking waiter (a stop, a chained ask): a
    worker thread waits for it (`wait_future`'s fallback)."""

    __slots__ = ("_future",)

    def __init__(self, future: Any) -> None:
        self._future = future

    def get(self, *, timeout: float | None = None) -> Any:
        return self._future.get(timeout=timeout)
