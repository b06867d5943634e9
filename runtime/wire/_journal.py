"""Snapshots committed in batches: one thread reads every agent's acknowledged snapshots.

With a state file an agent's snapshot must be committed before its reply
leaves (`actors._snapshot`), so the agent waits for an acknowledgement.
Asked the usual way, each snapshot cost the runtime's process a reader
thread's wake-up, an unpickling, a reply future and a pickled reply, and
four busy agents kept four reader threads contending for its GIL. Here one
thread of the registry's node (`SnapshotJournal`, started at the first such
connection) polls them all: the snapshots one poll finds go to the store as
one message (`SnapshotBatch`, one transaction), and each agent gets a fixed
acknowledgement frame, or the error that stopped its snapshot.

The reader thread that accepted a connection stays in `serve` until its
end, so the connection is still counted as being read (`OpenConnections`:
a restarted agent's `restore` waits for it) and that thread closes it. A
connection's end is reported only after the snapshots read from it are in
the store's mailbox, so whatever asks after that sees them.
"""

from __future__ import annotations

import logging
import os
import select
import sys
import threading
from collections.abc import Callable
from typing import Any, cast

import pykka

from actors._snapshot import SnapshotBatch
from runtime.wire._frames import REPLY, SNAPSHOT, FrameReader, decode_header, encode
from runtime.wire._reply import Outbox, failure_body
from runtime.wire._serialization import dumps

__all__ = ["SnapshotAcks", "SnapshotJournal"]

logger = logging.getLogger("runtime")

_ACK = dumps((True, None))  # the reply to every snapshot kept
_READABLE = select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR


class SnapshotAcks(pykka.Future[Any]):
    """The reply to a `SnapshotBatch`: one REPLY frame per snapshot.

    The store sets it, once the batch is committed, to one outcome per
    snapshot (None, or the exception that refused it), or sets an
    exception when the commit failed, which every agent of the batch gets.
    """

    def __init__(self, targets: list[tuple[Outbox, int]]) -> None:
        super().__init__()
        self._targets = targets

    def set(self, value: Any = None) -> None:
        outcomes = cast("list[BaseException | None]", value)
        for (outbox, request_id), outcome in zip(self._targets, outcomes, strict=True):
            outbox.send(encode(REPLY, request_id, b"", _ACK if outcome is None else failure_body(outcome)))

    def set_exception(self, exc_info: Any = None) -> None:
        body = failure_body(cast("BaseException", (exc_info or sys.exc_info())[1]))
        for outbox, request_id in self._targets:
            outbox.send(encode(REPLY, request_id, b"", body))


class _Source:
    """One agent's snapshot connection, as the journal's thread sees it."""

    __slots__ = ("done", "fd", "first", "outbox", "reader", "sender")

    def __init__(self, fd: int, reader: FrameReader, first: memoryview, outbox: Outbox, sender: str) -> None:
        self.fd, self.reader, self.outbox, self.sender = fd, reader, outbox, sender
        self.first: memoryview | None = first  # read by the accepting thread; dropped once taken
        self.done = threading.Event()


class SnapshotJournal:
    """Reads the acknowledged snapshot connections of a node in one thread.

    `deliver(store_name, batch, acks)` hands a batch to the named store
    (in the journal's thread: it must not block for long).
    """

    def __init__(self, deliver: Callable[[str, SnapshotBatch, SnapshotAcks], None]) -> None:
        self._deliver = deliver
        self._epoll = select.epoll()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)  # a full pipe wakes the thread already
        self._epoll.register(self._wake_r, select.EPOLLIN)
        self._lock = threading.Lock()
        self._adding: list[_Source] = []  # under _lock: handed over by `serve`
        self._sources: dict[int, _Source] = {}  # the thread's own
        self._closed = False
        threading.Thread(target=self._run, name="snapshot-journal", daemon=True).start()

    def serve(self, fd: int, reader: FrameReader, first: memoryview, outbox: Outbox, sender: str) -> None:
        """Have the journal read the connection `fd` (whose first frame,
        a SNAPSHOT, was just read) until its end; return then."""
        source = _Source(fd, reader, first, outbox, sender)
        with self._lock:
            if self._closed:
                return
            self._adding.append(source)
            self._wake()
        source.done.wait()

    def close(self) -> None:
        """End the thread; connections still served end with it (their peers
        see EOF when the node shuts them down)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._wake()

    def _wake(self) -> None:
        # Under _lock, so the thread never closes the pipe under a writer.
        try:
            os.write(self._wake_w, b"+")
        except BlockingIOError:
            pass

    def _run(self) -> None:
        try:
            while self._turn():
                pass
        except Exception:  # a bug: its agents' snapshots now fail at once, rather than wait
            logger.exception("the snapshot journal failed")
        finally:
            for source in self._sources.values():
                source.done.set()
            with self._lock:
                self._closed = True  # also when the thread failed: nobody waits on it any more
                for source in self._adding:
                    source.done.set()
                self._epoll.close()
                os.close(self._wake_r)
                os.close(self._wake_w)

    def _turn(self) -> bool:
        # One poll: read what came, deliver it as batches, then report the
        # connections that ended (after their last snapshots are delivered).
        batches: dict[str, tuple[SnapshotBatch, list[tuple[Outbox, int]]]] = {}
        ended: list[_Source] = []
        for fd, _events in self._epoll.poll():
            if fd == self._wake_r:
                os.read(self._wake_r, 512)
                with self._lock:
                    if self._closed:
                        return False
                    adding, self._adding = self._adding, []
                for added in adding:
                    self._sources[added.fd] = added
                    self._epoll.register(added.fd, _READABLE)
                    first, added.first = cast("memoryview", added.first), None  # not kept: it may be large
                    if not (self._take(added, first, batches) and self._drain(added, batches)):
                        ended.append(added)
            elif (source := self._sources.get(fd)) is not None and not self._read(source, batches):
                ended.append(source)
        for store, (batch, targets) in batches.items():
            acks = SnapshotAcks(targets)
            try:
                self._deliver(store, batch, acks)
            except Exception:  # its agents learn it; the others' snapshots go on
                logger.exception("could not hand %d snapshots to %r", len(batch), store)
                acks.set_exception()
        for source in ended:
            if self._sources.pop(source.fd, None) is not None:
                self._epoll.unregister(source.fd)
            source.done.set()  # its reader thread closes the connection
        return True

    def _read(self, source: _Source, batches: dict[str, Any]) -> bool:
        """Read what `source` holds; False at its end or a broken protocol."""
        try:
            source.reader.pump()
        except (EOFError, OSError):
            return False
        return self._drain(source, batches)

    def _drain(self, source: _Source, batches: dict[str, Any]) -> bool:
        """Take the whole frames buffered; False if the peer broke the protocol."""
        while source.reader.buffered():
            if not self._take(source, source.reader.read(), batches):
                return False
        return True

    def _take(self, source: _Source, frame: memoryview, batches: dict[str, Any]) -> bool:
        try:
            kind, request_id, store, body = decode_header(frame)
        except (ValueError, UnicodeDecodeError):
            kind = request_id = 0
            store, body = "", frame
        if kind != SNAPSHOT or request_id == 0:
            logger.warning("dropping the snapshot connection of %r: it sent something else", source.sender)
            return False
        batch, targets = batches.setdefault(store, (SnapshotBatch(), []))
        batch.append((source.sender, bytes(body)))
        targets.append((source.outbox, request_id))
        return True
