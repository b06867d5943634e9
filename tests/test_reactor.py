"""An agent's own thread reads its sockets; a standby reads while it is busy."""

from __future__ import annotations

import threading

import pytest

from actors import Agent, AskTimeout
from conftest import wait_for


class Gate(Agent):
    """Blocks in `hold` until told (through a side channel) to go on."""

    def on_start(self):
        self.received = []
        self.ticks = 0

    def hold(self, path):
        import os
        import time

        deadline = time.monotonic() + 60
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.01)
        return "released"

    def on_receive(self, message):
        if message == "tick":
            self.ticks += 1
            return None
        if isinstance(message, tuple) and message[0] == "note":
            self.received.append(message[1])
            return None
        return message

    def count(self):
        return len(self.received), self.received[:3], self.received[-1:]

    def tick_later(self, seconds):
        timer = threading.Timer(seconds, self.actor_ref.tell, ("tick",))
        timer.daemon = True
        timer.start()

    def tick_count(self):
        return self.ticks


def test_a_busy_agent_still_takes_in_tells_so_senders_never_block(rt, tmp_path):
    gate = rt.spawn(Gate, "gate")
    release = tmp_path / "go"
    held = gate.proxy().hold(str(release))
    chunk = b"x" * 100_000
    for i in range(60):  # 6 MB: far more than a socket buffer holds
        gate.tell(("note", (i, chunk)))
    # It is still busy, and its mailbox holds what came meanwhile.
    wait_for(lambda: [r for r in rt.agent_info() if r["name"] == "gate" and r["mailbox"] >= 60])
    with pytest.raises(AskTimeout):
        held.get(timeout=0.05)
    release.touch()
    assert held.get(timeout=60) == "released"
    total, first, last = gate.proxy().count().get(timeout=60)
    assert total == 60 and first[0][0] == 0 and last[0][0] == 59


def test_a_message_put_by_a_thread_of_the_agent_wakes_it(rt):
    gate = rt.spawn(Gate, "gate")
    gate.proxy().tick_later(0.2).get(timeout=30)
    assert wait_for(lambda: gate.proxy().tick_count().get(timeout=30) == 1)


def test_frames_of_every_size_arrive_whole(rt):
    gate = rt.spawn(Gate, "gate")
    for size in (0, 1, 65_535, 65_537, 3_000_000):
        payload = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
        assert gate.ask(payload, timeout=60) == payload
