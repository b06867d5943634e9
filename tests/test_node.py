"""The transport: every connection must prove it holds the runtime's key."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import struct
import tempfile
import threading
import time
import uuid
from multiprocessing.connection import Client

import pytest

from actors import Agent
from conftest import wait_for
from runtime.wire import _handshake
from runtime.wire._channel import Channel, PeerGone
from runtime.wire._node import Node
from runtime.wire._frames import LOOKUP, encode


class Echo(Agent):
    def on_receive(self, message):
        return message


def test_a_process_without_the_runtime_key_is_refused(rt):
    rt.spawn(Echo, "e")
    address = rt._node.address
    with pytest.raises(Exception) as info:
        conn = Client(address, family="AF_UNIX", authkey=b"not the key")
        conn.send_bytes(b"\x01" * 20)
        conn.recv_bytes()
    assert "digest" in str(info.value).lower() or isinstance(info.value, (EOFError, OSError))
    assert rt.agents["e"].ask("still fine", timeout=10) == "still fine"


def test_sockets_are_private_to_the_owner(rt):
    rt.spawn(Echo, "e")
    address = rt._node.address
    assert stat.S_IMODE(os.stat(os.path.dirname(address)).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(address).st_mode) & 0o077 == 0


@pytest.fixture
def node():
    """A bare node (no runtime), as every process has one."""
    rundir = tempfile.mkdtemp(prefix="actors-")  # short: socket paths are limited
    n = Node(uuid.uuid4().hex, os.urandom(32), rundir)
    try:
        yield n
    finally:
        n.close()
        shutil.rmtree(rundir, ignore_errors=True)


def _dropped(sock: socket.socket) -> bool:
    """Whether the node closed `sock` (what it sent is read and ignored)."""
    try:
        while True:
            if not sock.recv(4096, socket.MSG_DONTWAIT):
                return True
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def _serving_threads() -> int:
    return sum(t.name == "node-conn" for t in threading.enumerate())


def _looks_up(n: Node) -> bool:
    """Whether an honest peer gets through the handshake and an answer."""
    try:
        channel = Channel(n.address, n.authkey)
    except PeerGone:
        return False
    try:
        request_id = channel.next_id()
        channel.send(encode(LOOKUP, request_id, b"nobody", b""))
        return channel.wait(request_id, 10.0, "the node") is None
    finally:
        channel.close()


def test_a_peer_trickling_its_handshake_is_dropped_at_the_deadline(node, monkeypatch):
    monkeypatch.setattr(_handshake, "HANDSHAKE_DEADLINE", 1.0)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(node.address)
        started = time.monotonic()
        sock.sendall(struct.pack("!i", 128))  # a plausible length; then one byte at a time
        while not _dropped(sock):
            assert time.monotonic() - started < 8.0, "a trickling peer kept its handshake open"
            try:
                sock.send(b"x")
            except OSError:
                break  # dropped
            time.sleep(0.2)  # the peer's pace, not a wait for the node
    finally:
        sock.close()
    assert _looks_up(node)


def test_idle_unauthenticated_connections_hold_no_more_threads_than_the_cap(node, monkeypatch):
    monkeypatch.setattr(_handshake, "MAX_PENDING_HANDSHAKES", 4)
    monkeypatch.setattr(_handshake, "HANDSHAKE_DEADLINE", 2.0)
    before = _serving_threads()
    idle = []
    try:
        for _ in range(30):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            idle.append(sock)
            sock.connect(node.address)
        # Those beyond the cap are closed at once; the rest wait for their deadline.
        wait_for(lambda: sum(_dropped(s) for s in idle) >= 26, timeout=5.0)
        assert _serving_threads() - before <= 4
        wait_for(lambda: _looks_up(node), timeout=20.0)  # an honest peer gets in
        wait_for(lambda: all(_dropped(s) for s in idle))
        wait_for(lambda: _serving_threads() == before)
    finally:
        for sock in idle:
            sock.close()
