"""Reading a dead process's connections to their end, and snapshots in batches."""

from __future__ import annotations

import os
import pickle
import socket
import threading

from runtime.wire._drain import OpenConnections, read_snapshots
from runtime.wire._frames import SNAPSHOT, FrameReader, decode_header, encode


def _snapshot_frame(value: int) -> bytes:
    return encode(SNAPSHOT, 0, b"_state", pickle.dumps(pickle.dumps(value)))


def test_snapshots_read_at_once_deliver_only_the_last_and_reading_ends_at_eof():
    ours, theirs = socket.socketpair()
    try:
        theirs.sendall(b"".join(_snapshot_frame(n) for n in range(5)))
        theirs.close()
        reader = FrameReader(ours.fileno())
        delivered = []

        def deliver(frame):
            _kind, _id, name, body = decode_header(frame)
            delivered.append((name, pickle.loads(pickle.loads(body))))

        read_snapshots(reader, reader.read(), deliver)
        assert delivered == [("_state", 4)]
    finally:
        ours.close()


def test_a_pid_is_drained_once_its_last_connection_was_read_to_its_end():
    reading = OpenConnections()
    pid = os.getpid()
    first, second, done = threading.Event(), threading.Event(), threading.Event()

    def read(until):
        with reading.of(pid):
            until.wait(10)

    threads = [threading.Thread(target=read, args=(event,)) for event in (first, second)]
    for thread in threads:
        thread.start()
    try:
        assert reading.wait_drained(pid, 0.05) is False
        first.set()
        threads[0].join()
        assert reading.wait_drained(pid, 0.05) is False  # one still open
        waiter = threading.Thread(target=lambda: reading.wait_drained(pid, 10) and done.set())
        waiter.start()
        second.set()
        waiter.join()
        assert done.is_set()
        assert reading.wait_drained(12345678, 0) is True  # a pid never seen has nothing open
    finally:
        first.set()
        second.set()
        for thread in threads:
            thread.join()
