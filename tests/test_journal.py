"""Acknowledged snapshots: one thread reads every agent's connection, the store commits them together."""

from __future__ import annotations

import socket
import threading

import pytest

from actors._snapshot import SnapshotBatch
from runtime.wire._frames import SNAPSHOT, TELL, FrameReader, decode_header, encode, set_read_timeout
from runtime.wire._journal import SnapshotAcks, SnapshotJournal
from runtime.wire._reply import Outbox
from runtime.wire._serialization import loads
from conftest import wait_for


class Connection:
    """One agent's end (`theirs`) of a snapshot connection the journal serves."""

    def __init__(self, journal: SnapshotJournal, sender: str, first: bytes) -> None:
        self.ours, self.theirs = socket.socketpair()
        self.outbox = Outbox(self.ours.fileno())
        reader = FrameReader(self.ours.fileno())
        self.theirs.sendall(first)
        self.served = threading.Thread(
            target=journal.serve, args=(self.ours.fileno(), reader, reader.read(), self.outbox, sender)
        )
        self.served.start()
        set_read_timeout(self.theirs.fileno(), 10)  # a missing reply fails the test, not hangs it
        self.replies = FrameReader(self.theirs.fileno())

    def reply(self) -> tuple[int, tuple[bool, object]]:
        _kind, request_id, _name, body = decode_header(self.replies.read())
        return request_id, loads(bytes(body))

    def end(self) -> None:
        self.theirs.close()
        self.served.join(10)
        assert not self.served.is_alive()
        self.outbox.close()
        self.ours.close()


def _handed_over(journal: SnapshotJournal) -> int:
    with journal._lock:  # handed over and the journal woken, together
        return len(journal._adding)


def _snapshot(request_id: int, blob: bytes) -> bytes:
    return encode(SNAPSHOT, request_id, b"_state", blob)


@pytest.fixture
def store():
    """A store stand-in: keeps each batch, and answers it at once (every
    snapshot kept, except one from "refused")."""
    batches: list[tuple[str, SnapshotBatch]] = []

    def deliver(name: str, batch: SnapshotBatch, acks: SnapshotAcks) -> None:
        batches.append((name, batch))
        acks.set([ValueError(f"{sender} may not") if sender == "refused" else None for sender, _blob in batch])

    journal = SnapshotJournal(deliver)
    yield journal, batches
    journal.close()


def test_each_snapshot_is_acknowledged_by_its_request_id_once_the_store_answered(store):
    journal, batches = store
    conn = Connection(journal, "a", _snapshot(7, b"one"))
    try:
        assert conn.reply() == (7, (True, None))
        conn.theirs.sendall(_snapshot(8, b"two"))
        assert conn.reply() == (8, (True, None))
        assert [batch for _name, batch in batches] == [[("a", b"one")], [("a", b"two")]]
        assert {name for name, _batch in batches} == {"_state"}
    finally:
        conn.end()


def test_snapshots_read_in_one_poll_go_to_the_store_as_one_batch_and_each_agent_gets_its_own_answer(store):
    journal, batches = store
    hold, inside = threading.Lock(), threading.Event()
    deliver = journal._deliver

    def slow(name, batch, acks):  # the first batch waits, so what follows arrives together
        inside.set()
        with hold:
            deliver(name, batch, acks)

    journal._deliver = slow
    with hold:
        first = Connection(journal, "a", _snapshot(1, b"a1"))
        assert inside.wait(10)
        second = Connection(journal, "b", _snapshot(2, b"b1"))
        third = Connection(journal, "refused", _snapshot(3, b"r1"))
        first.theirs.sendall(_snapshot(4, b"a2"))
        wait_for(lambda: _handed_over(journal) == 2)  # the journal is still busy with the first
    try:
        assert first.reply() == (1, (True, None))
        assert first.reply() == (4, (True, None))
        assert second.reply() == (2, (True, None))
        request_id, (ok, error) = third.reply()
        assert (request_id, ok, type(error)) == (3, False, ValueError)
        assert [len(batch) for _name, batch in batches] == [1, 3]  # the three read in one poll: one batch
        assert sorted(pair for _name, batch in batches for pair in batch) == [
            ("a", b"a1"), ("a", b"a2"), ("b", b"b1"), ("refused", b"r1"),
        ]
    finally:
        for conn in (first, second, third):
            conn.end()


def test_a_snapshot_larger_than_one_read_arrives_whole(store):
    journal, batches = store
    big = bytes(range(256)) * 4096  # 1 MiB: many reads, as the agent's write goes on
    conn = Connection(journal, "a", _snapshot(1, b"small"))
    try:
        assert conn.reply() == (1, (True, None))
        writer = threading.Thread(target=conn.theirs.sendall, args=(b"".join(_parts(_snapshot(2, big))),))
        writer.start()
        assert conn.reply() == (2, (True, None))
        writer.join(10)
        assert batches[-1][1] == [("a", big)]
    finally:
        conn.end()


def _parts(frame):
    return frame if isinstance(frame, tuple) else (frame,)


def test_a_failed_commit_is_every_agent_of_the_batch_s_answer():
    def deliver(_name, _batch, acks):
        try:
            raise OSError("disk full")
        except OSError:
            acks.set_exception()

    journal = SnapshotJournal(deliver)
    conn = Connection(journal, "a", _snapshot(5, b"x"))
    try:
        request_id, (ok, error) = conn.reply()
        assert (request_id, ok, str(error)) == (5, False, "disk full")
    finally:
        conn.end()
        journal.close()


def test_a_connection_ends_only_after_its_last_snapshots_reached_the_store(store):
    journal, batches = store
    conn = Connection(journal, "a", _snapshot(1, b"last"))
    conn.theirs.shutdown(socket.SHUT_WR)  # the agent died right after writing
    conn.served.join(10)
    assert not conn.served.is_alive()
    assert [batch for _name, batch in batches] == [[("a", b"last")]]
    conn.end()


def test_a_frame_that_is_not_an_acknowledged_snapshot_ends_its_connection(store):
    journal, batches = store
    for bad in (encode(TELL, 0, b"_state", b"x"), _snapshot(0, b"told, not asked")):
        conn = Connection(journal, "a", _snapshot(1, b"fine"))
        assert conn.reply() == (1, (True, None))
        conn.theirs.sendall(bad)
        conn.served.join(10)
        assert not conn.served.is_alive()  # the journal let go of it; its peer sees EOF when it is closed
        conn.end()
    assert [batch for _name, batch in batches] == [[("a", b"fine")], [("a", b"fine")]]


def test_closing_the_journal_ends_every_connection_it_serves():
    journal = SnapshotJournal(lambda _name, _batch, acks: acks.set([None] * len(_batch)))
    conn = Connection(journal, "a", _snapshot(1, b"x"))
    assert conn.reply() == (1, (True, None))
    journal.close()
    conn.served.join(10)
    assert not conn.served.is_alive()
    conn.end()
