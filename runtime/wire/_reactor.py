"""An agent's own thread reads its inbound connections while its mailbox is empty.

With a reader thread per connection, each message wakes the reader, which
hands it to the actor's thread. Here the actor's thread, once its mailbox
runs empty, polls the sockets itself: first without sleeping for up to
`IDLE_SPIN` (so the next request finds this CPU awake, and its sender
doesn't pay for waking it), then asleep in `epoll_wait`. A spinning reader
thread beside the actor's thread would take the GIL from it; the actor's
own thread spinning takes nothing from anyone.

While the actor is busy, nobody reads, so a long handler would leave
`STATS` requests unanswered and let socket buffers fill until senders
block. A standby thread prevents that: once the actor has been on one
message for `TAKEOVER` seconds, it takes over the sockets and fills the
mailbox, as the reader threads did, until the actor comes back for more
and asks for them again. The standby looks every `TAKEOVER` only while
messages flow; once the actor has sat idle for a whole period it sleeps
until the actor's next message.

Backpressure: the mailbox holds at most `mailbox_size` messages that came
from other processes (`MAILBOX_SIZE` by default). Whoever reads looks at
each frame's kind before taking it: a TELL that would go past the bound
(or an ASK past twice the bound) is left where it is, and its connection
is paused (no longer polled; its unread frames wait in its `FrameReader`,
at most one read's worth). The kernel's socket buffers then fill, and the
sender's blocking write (its `tell`) waits. Frames that never enter the
mailbox (STATS) are answered at once on connections not paused, and asks
(a stop is one) still get in past a mailbox full of tells. Once the actor
has taken the mailbox down to half the bound it asks the token holder to
resume the paused connections, oldest first. Messages put by threads of
the agent's own process are not bounded (blocking them could deadlock the
actor on itself). As with any bounded mailbox, two agents whose handlers
flood each other with tells can end up waiting on each other once both
mailboxes are full; the runtime's services never wait on an agent this way
except through tells they send it (event and topic deliveries, which then
wait for a subscriber that is `mailbox_size` messages behind).

Invariants: only the holder of `_token` polls or reads the sockets (the
actor's thread inside `get()`, or the standby while it has taken over),
and only it pauses or resumes a connection. A paused connection is in
`_paused` and not registered with the epoll; an empty mailbox (the actor
in `serve`) always resumes every paused connection first, so nothing
stays paused while the actor waits for work.
"""

from __future__ import annotations

import logging
import os
import select
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sized
from multiprocessing.connection import Connection
from typing import Any, NamedTuple

from actors._base import DequeInbox
from runtime.wire._reply import Outbox
from runtime.wire._spin import IDLE_SPIN, Backoff
from runtime.wire._frames import ASK, ASK_CHAINED, TELL, FrameReader

__all__ = ["MAILBOX_SIZE", "TAKEOVER", "Reactor", "ReactorInbox", "check_mailbox_size"]

logger = logging.getLogger("runtime")

TAKEOVER = 0.005  # seconds on one message before the standby reads for the actor

# Messages waiting unread before senders wait. Enough that a busy agent never
# runs dry (it asks for more at half of it, and one read of a socket brings
# at most 64 KiB), small enough that a mailbox of small messages costs
# around a megabyte and a stop or a task waits behind at most this many.
MAILBOX_SIZE = 1000

_ASKS = (ASK, ASK_CHAINED)

_READABLE = select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR


def check_mailbox_size(mailbox_size: object) -> int:
    """`mailbox_size` if it is a positive int; TypeError/ValueError naming it otherwise."""
    if isinstance(mailbox_size, bool) or not isinstance(mailbox_size, int):
        msg = f"mailbox_size must be a positive int (messages), got {mailbox_size!r}"
        raise TypeError(msg)
    if mailbox_size < 1:
        msg = f"mailbox_size must be a positive int (messages), got {mailbox_size!r}"
        raise ValueError(msg)
    return mailbox_size


class _Inbound(NamedTuple):
    conn: Connection
    reader: FrameReader
    outbox: Outbox


class Reactor:
    """The inbound connections of an agent's process, read by whoever holds the token.

    `dispatch(outbox, frame)` delivers one frame (into a mailbox, or answers
    it); `forget(conn)` is told when a connection has ended.
    """

    def __init__(self, dispatch: Callable[[Outbox, memoryview], None], forget: Callable[[Connection], None]) -> None:
        self._dispatch = dispatch
        self._forget = forget
        self._epoll = select.epoll()
        self._inbound: dict[int, _Inbound] = {}
        self._added: deque[_Inbound] = deque()  # from handshake threads; registered by the token holder
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)  # a put, or a new connection
        self._reclaim = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)  # the actor wants the sockets back
        self._epoll.register(self._wake, select.EPOLLIN)
        self._epoll.register(self._reclaim, select.EPOLLIN)
        self._token = threading.Lock()
        self._backoff = Backoff()
        self.waiting = False  # the actor sleeps in epoll_wait: a put from elsewhere must wake it
        self.busy_since: float | None = time.perf_counter()  # None while the actor is in get()
        self.handled = 0  # messages the actor has taken
        # Backpressure (see the module's docstring); unbounded until `bind`.
        self._mailbox: Sized = ()
        self._tell_limit = self._ask_limit = sys.maxsize
        self.resume_at = -1  # the actor asks for paused connections at this depth
        self.paused: list[_Inbound] = []  # token holder only; others may test it
        self.resume_asked = False
        self._standby_asleep = False
        self._kick = threading.Event()
        threading.Thread(target=self._standby, name="reactor-standby", daemon=True).start()

    def add(self, conn: Connection) -> None:
        """Serve a connection that passed the handshake (from any thread)."""
        fd = conn.fileno()
        self._added.append(_Inbound(conn, FrameReader(fd), Outbox(fd)))
        os.eventfd_write(self._wake, 1)

    def wake(self) -> None:
        """End the actor's sleep: something was put in its mailbox."""
        os.eventfd_write(self._wake, 1)

    def bind(self, mailbox: Sized, mailbox_size: int) -> None:
        """Bound what sockets put into `mailbox` (the hosted actor's queue)."""
        self._mailbox = mailbox
        self._tell_limit = mailbox_size
        self._ask_limit = 2 * mailbox_size  # room for asks (a stop) past a mailbox full of tells
        self.resume_at = mailbox_size // 2

    def ask_resume(self) -> None:
        """In the actor's thread: the mailbox has room again for paused connections."""
        self.resume_asked = True
        os.eventfd_write(self._wake, 1)  # the standby may sleep in epoll_wait

    # -- the actor's side -------------------------------------------------

    def serve(self, has_work: Callable[[], object]) -> None:
        """In the actor's thread, its mailbox empty: read until there is work
        (until `has_work()` is true: e.g. the mailbox's `__len__`)."""
        if not self._token.acquire(blocking=False):
            os.eventfd_write(self._reclaim, 1)  # the standby has the sockets: ask for them
            self._token.acquire()
        try:
            if self._spin(has_work):
                return
            self.waiting = True
            # Checked after `waiting` is set, as `put` checks `waiting` after
            # appending: a put from another thread is seen by one or the other.
            if not has_work():
                self._poll_once(-1)
        finally:
            self.waiting = False
            self._token.release()

    def _spin(self, has_work: Callable[[], object]) -> bool:
        if not self._backoff.turn(IDLE_SPIN):
            return False

        def probe() -> object:
            self._poll_once(0)
            return has_work()

        return self._backoff.spin(IDLE_SPIN, probe)

    def started(self) -> None:
        """The actor took a message: it is busy from now on."""
        self.busy_since = time.perf_counter()
        self.handled += 1
        if self._standby_asleep:
            self._kick.set()

    # -- reading ------------------------------------------------------------

    def _poll_once(self, timeout: float) -> bool:
        """Wait up to `timeout` s (-1: for ever) and deliver every whole frame; True if reclaimed."""
        if self.paused and (self.resume_asked or len(self._mailbox) <= self.resume_at):
            self._resume()
        inbound: _Inbound | None
        while self._added:
            inbound = self._added.popleft()
            fd = inbound.conn.fileno()
            self._inbound[fd] = inbound
            self._epoll.register(fd, _READABLE)
        events = self._epoll.poll(timeout)
        self.waiting = False  # awake: puts need not wake us now
        reclaimed = False
        for fd, _mask in events:
            if fd == self._wake or fd == self._reclaim:
                try:
                    os.eventfd_read(fd)
                except BlockingIOError:
                    pass
                reclaimed = reclaimed or fd == self._reclaim
                continue
            inbound = self._inbound.get(fd)
            if inbound is not None:
                self._read(inbound)
        return reclaimed

    def _read(self, inbound: _Inbound) -> None:
        try:
            inbound.reader.pump()
        except (EOFError, OSError):
            self._drop(inbound)
            return
        self._deliver(inbound, polled=True)

    def _deliver(self, inbound: _Inbound, polled: bool) -> bool:
        """Dispatch the whole frames `inbound` holds while the mailbox has room.

        False if it was paused (its next frame waits for room) or dropped.
        `polled`: whether its descriptor is registered with the epoll now.
        """
        reader = inbound.reader
        mailbox = self._mailbox
        tell_limit = self._tell_limit
        try:
            while reader.buffered():
                # One comparison per frame while there is room; the kind is
                # looked at only once the mailbox is full.
                if len(mailbox) >= tell_limit and self._must_wait(reader.next_kind(), len(mailbox)):
                    if polled:  # not polled until resumed: its socket fills, its sender waits
                        self._epoll.unregister(inbound.conn.fileno())
                    self.paused.append(inbound)
                    return False
                self._dispatch(inbound.outbox, reader.read())
        except Exception:  # a malformed frame: drop this peer, not the agent
            logger.exception("dropping a connection that sent a malformed frame")
            self._drop(inbound, polled)
            return False
        return True

    def _resume(self) -> None:
        # Oldest first; one that fills the mailbox again is paused again.
        self.resume_asked = False
        paused, self.paused = self.paused, []
        for inbound in paused:
            if self._deliver(inbound, polled=False):
                self._epoll.register(inbound.conn.fileno(), _READABLE)

    def _must_wait(self, kind: int, depth: int) -> bool:
        # Called with the mailbox at the bound: tells wait; asks (a stop is
        # one) get in up to twice the bound; STATS never enter it.
        return kind == TELL or (kind in _ASKS and depth >= self._ask_limit)

    def _drop(self, inbound: _Inbound, polled: bool = True) -> None:
        fd = inbound.conn.fileno()
        if polled:
            self._epoll.unregister(fd)  # before the close: the number may be reused at once
        del self._inbound[fd]
        self._forget(inbound.conn)
        inbound.outbox.close()  # replies still to come are dropped, never written to a reused fd
        inbound.conn.close()

    # -- the standby's side -----------------------------------------------

    def _standby(self) -> None:
        last = self.handled
        while True:
            time.sleep(TAKEOVER)
            busy = self.busy_since
            if busy is None and self.handled == last:
                self._sleep_until_kicked()
            elif busy is not None and time.perf_counter() - busy >= TAKEOVER:
                self._take_over()
            last = self.handled

    def _sleep_until_kicked(self) -> None:
        # The actor sat idle a whole period: nothing to watch until it works.
        self._standby_asleep = True
        if self.busy_since is None:  # read after the flag is set, as `started` reads them the other way
            self._kick.wait()
        self._kick.clear()
        self._standby_asleep = False

    def _take_over(self) -> None:
        if not self._token.acquire(blocking=False):
            return  # the actor is back in its mailbox, reading for itself
        try:
            while not self._poll_once(-1):
                pass  # read for the actor until it asks for the sockets back
        finally:
            self._token.release()


class ReactorInbox(DequeInbox):
    """A mailbox whose `get()`, when empty, reads the process's sockets (see `Reactor`)."""

    __slots__ = ("_reactor",)

    def __init__(self, reactor: Reactor, mailbox_size: int = MAILBOX_SIZE) -> None:
        super().__init__()
        self._reactor = reactor
        reactor.bind(self._queue, mailbox_size)

    def put(self, envelope: Any, /) -> None:
        self._queue.append(envelope)
        if self._reactor.waiting:
            self._reactor.wake()

    def get(self) -> Any:
        queue = self._queue
        reactor = self._reactor
        reactor.busy_since = None
        if not queue:
            self._idle()
            while not queue:
                reactor.serve(queue.__len__)
        envelope = queue.popleft()
        if reactor.paused and not reactor.resume_asked and len(queue) <= reactor.resume_at:
            reactor.ask_resume()  # once per pause: senders waiting on a full mailbox may go on
        reactor.started()
        self.current = envelope
        return envelope

