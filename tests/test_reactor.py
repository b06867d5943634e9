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


class Slow(Agent):
    """Takes about 2 ms per message (every 100th: 10 ms, so the standby reads meanwhile)."""

    def on_start(self):
        self.handled = 0

    def on_receive(self, message):
        import time

        if message == "count":
            return self.handled
        self.handled += 1
        time.sleep(0.010 if self.handled % 100 == 0 else 0.002)
        return None


def test_a_flood_of_tells_waits_for_a_bounded_mailbox_and_every_tell_arrives(rt):
    import time

    import psutil

    slow = rt.spawn(Slow, "slow", mailbox_size=50)
    agent = psutil.Process(next(r["pid"] for r in rt.agent_info() if r["name"] == "slow"))
    me = psutil.Process()
    rss_before = (agent.memory_info().rss, me.memory_info().rss)
    depths, rss_peak, flooding = [], [0, 0], threading.Event()
    flooding.set()

    def sample():  # from another thread, so through another connection than the flood's
        while flooding.is_set():
            row = next(r for r in rt.agent_info() if r["name"] == "slow")
            if row["mailbox"] is not None:
                depths.append(row["mailbox"])
            rss_peak[0] = max(rss_peak[0], agent.memory_info().rss)
            rss_peak[1] = max(rss_peak[1], me.memory_info().rss)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    n = 2000
    started = time.monotonic()
    try:
        for i in range(n):
            slow.tell(("note", i, b"x" * 300))
        told = time.monotonic() - started
    finally:
        flooding.clear()
        sampler.join(30)
    assert slow.ask("count", timeout=60) == n
    assert depths and max(depths) <= 50 + 5, max(depths)
    assert max(depths) >= 25  # it was sampled while full
    # The sender waited for the agent: only what fits in the mailbox and the
    # socket buffers (about 600 of these messages here) was ahead of it.
    assert told >= (n - 1000) * 0.002
    assert rss_peak[0] - rss_before[0] < 64 << 20
    assert rss_peak[1] - rss_before[1] < 64 << 20


def test_a_full_mailbox_still_answers_stats_and_takes_a_stop(rt, tmp_path):
    gate = rt.spawn(Gate, "gate", mailbox_size=10)
    release = tmp_path / "go"
    held = gate.proxy().hold(str(release))
    outcome = []

    def flood():
        try:
            for i in range(100_000):
                gate.tell(("note", (i, b"x" * 300)))
            outcome.append("all told")
        except Exception as exc:
            outcome.append(exc)

    flooder = threading.Thread(target=flood)
    flooder.start()
    try:
        wait_for(lambda: [r for r in rt.agent_info() if r["name"] == "gate" and r["mailbox"] == 10])
        assert not outcome  # the flooder waits: its tells are not all taken
        stopped = gate.stop(block=False)  # an ask: it gets in past a mailbox full of tells
        wait_for(lambda: [r for r in rt.agent_info() if r["name"] == "gate" and r["mailbox"] == 11])
        release.touch()
        assert held.get(timeout=60) == "released"
        assert stopped.get(timeout=60) is True
    finally:
        release.touch()
        flooder.join(60)
    assert not flooder.is_alive() and outcome and outcome[0] != "all told"


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-5, ValueError), (2.5, TypeError), ("10", TypeError),
                                        (True, TypeError)])
def test_a_bad_mailbox_size_is_refused(rt, bad, error):
    with pytest.raises(error, match="mailbox_size must be a positive int"):
        rt.spawn(Gate, "gate", mailbox_size=bad)
    assert "gate" not in rt.agents
