"""The transport: every connection must prove it holds the runtime's key."""

from __future__ import annotations

import os
import stat
from multiprocessing.connection import Client

import pytest

from actors import Agent


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
