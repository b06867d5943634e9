"""Streams: ordered, bounded, any process to any process."""

from __future__ import annotations

import hashlib
import os
import threading
import time

import pytest

from actors import Agent, StreamClosedError, UnknownStreamError
from conftest import wait_for


class Producer(Agent):
    def produce(self, stream_id, n):
        for i in range(n):
            self.ctx.comm.streaming.send(stream_id, {"i": i, "by": self.agent_id})
        return n

    def produce_bytes(self, stream_id, size):
        payload = os.urandom(size)
        chunks = self.ctx.comm.streaming.send_bytes(stream_id, payload, chunk_size=1 << 20)
        self.ctx.comm.streaming.close_stream(stream_id)
        return chunks, hashlib.sha256(payload).hexdigest()


class Consumer(Agent):
    def consume(self, stream_id):
        return list(self.ctx.comm.streaming.iterate(stream_id))

    def digest(self, stream_id):
        digest = hashlib.sha256()
        for chunk in self.ctx.comm.streaming.iterate(stream_id):
            digest.update(chunk)
        return digest.hexdigest()


def test_chunks_arrive_in_order_between_two_agent_processes(rt):
    rt.comm.streaming.create_stream("s", maxsize=8)
    producer = rt.spawn(Producer, "producer")
    consumer = rt.spawn(Consumer, "consumer")
    reading = consumer.proxy().consume("s")
    assert producer.proxy().produce("s", 200).get(timeout=60) == 200
    rt.comm.streaming.close_stream("s")
    assert reading.get(timeout=60) == [{"i": i, "by": "producer"} for i in range(200)]


def test_send_blocks_while_maxsize_chunks_are_unread(rt):
    rt.comm.streaming.create_stream("slow", maxsize=4)
    producer = rt.spawn(Producer, "producer")
    writing = producer.proxy().produce("slow", 10)
    wait_for(lambda: rt.comm.streaming.statistics("slow")["writers_waiting"] == 1)
    stats = rt.comm.streaming.statistics("slow")
    assert stats["buffered"] == 4 and stats["sent"] == 4  # memory stays bounded
    got = [rt.comm.streaming.receive("slow", timeout=10)["i"] for _ in range(10)]
    assert got == list(range(10))
    assert writing.get(timeout=10) == 10


def test_receive_returns_none_on_timeout_and_at_the_end(rt):
    rt.comm.streaming.create_stream("s")
    started = time.monotonic()
    assert rt.comm.streaming.receive("s", timeout=0.2) is None
    assert time.monotonic() - started >= 0.15
    rt.comm.streaming.send("s", "last")
    rt.comm.streaming.close_stream("s")
    assert rt.comm.streaming.receive("s", timeout=5) == "last"
    assert rt.comm.streaming.receive("s", timeout=5) is None
    assert list(rt.comm.streaming.iterate("s")) == []
    with pytest.raises(StreamClosedError):
        rt.comm.streaming.send("s", "too late")


def test_a_blocked_reader_is_woken_by_close(rt):
    rt.comm.streaming.create_stream("s")
    out = []
    reader = threading.Thread(target=lambda: out.append(list(rt.comm.streaming.iterate("s"))))
    reader.start()
    wait_for(lambda: rt.comm.streaming.statistics("s")["readers_waiting"] == 1)
    rt.comm.streaming.send("s", 1)
    rt.comm.streaming.close_stream("s")
    reader.join(10)
    assert out == [[1]]


def test_unknown_streams_and_bad_sizes_fail_clearly(rt):
    with pytest.raises(UnknownStreamError, match="'nope'"):
        rt.comm.streaming.send("nope", 1)
    with pytest.raises(ValueError, match="maxsize must be a positive int"):
        rt.comm.streaming.create_stream("x", maxsize=0)


def test_a_large_payload_streams_in_chunks_intact(rt):
    rt.comm.streaming.create_stream("big", maxsize=2)
    producer = rt.spawn(Producer, "producer")
    consumer = rt.spawn(Consumer, "consumer")
    reading = consumer.proxy().digest("big")
    chunks, digest = producer.proxy().produce_bytes("big", 5 * (1 << 20) + 123).get(timeout=120)
    assert chunks == 6
    assert reading.get(timeout=120) == digest
