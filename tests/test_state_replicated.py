"""Replicated state: quorum writes, resolved reads, replicas that crash."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from actors import Agent, EventType, QuorumNotReachedError, StateVersion
from actors._replicated import HybridClock
from conftest import wait_for


class User(Agent):
    def write(self, store, key, value):
        return store.set_replicated(key, value)


def test_writes_reach_a_quorum_and_reads_return_them(rt):
    cache = rt.replicated_state("cache", replicas=3, quorum=2)
    assert cache.set_replicated("k", {"v": 1}) is True
    assert cache.get("k") == {"v": 1}
    assert cache.get("missing") is None
    rows = {row["name"]: row for row in rt.agent_info()}
    assert {"cache.replica0", "cache.replica1", "cache.replica2"} <= set(rows)
    assert all(rows[f"cache.replica{i}"]["kind"] == "service" for i in range(3))
    assert len({rows[f"cache.replica{i}"]["pid"] for i in range(3)}) == 3
    assert "cache.replica0" not in rt.agents  # services are not team members
    assert rt.replicated_state("cache") is cache


def test_an_agent_can_use_a_replicated_store_it_was_handed(rt):
    cache = rt.replicated_state("cache", replicas=2, quorum=2)
    user = rt.spawn(User, "user")
    assert user.proxy().write(cache, "k", "from agent").get(timeout=30) is True
    version = cache.get_version("k")
    assert version.value == "from agent" and version.updated_by == "user"


def test_bad_parameters_are_refused(rt):
    with pytest.raises(ValueError, match="quorum must be between 1 and replicas"):
        rt.replicated_state("x", replicas=2, quorum=3)
    with pytest.raises(ValueError, match="replicas must be a positive int"):
        rt.replicated_state("x", replicas=0)
    cache = rt.replicated_state("y", replicas=1, quorum=1)
    with pytest.raises(TypeError, match="keys must be str"):
        cache.set_replicated(1, "v")


def test_last_write_wins_by_default_and_a_custom_resolver_can_choose(rt):
    cache = rt.replicated_state("c", replicas=3, quorum=3)
    older = StateVersion("older", 10, 0.0, "a", "")
    newer = StateVersion("newer", 20, 0.0, "b", "")
    cache.replicas[0].proxy().put("k", older).get(timeout=10)
    cache.replicas[1].proxy().put("k", newer).get(timeout=10)
    assert cache.get("k") == "newer"
    picky = rt.replicated_state("p", replicas=2, quorum=1, conflict_resolver=lambda vs: min(vs, key=lambda v: v.value))
    picky.replicas[0].proxy().put("k", StateVersion("b", 1, 0.0, "x", "")).get(timeout=10)
    picky.replicas[1].proxy().put("k", StateVersion("a", 2, 0.0, "y", "")).get(timeout=10)
    assert picky.get("k") == "a"
    assert picky.sync_stores("k") == "a"
    assert [v.value for v in picky.versions("k")] == ["a", "a"]


def test_the_clock_never_runs_backwards():
    clock = HybridClock()
    stamps = [clock.now() for _ in range(1000)]
    assert stamps == sorted(stamps) and len(set(stamps)) == 1000
    clock.observe(stamps[-1] + 10**12)  # a stamp from a clock far ahead
    assert clock.now() > stamps[-1] + 10**12


def test_killing_a_replica_mid_stream_loses_no_acknowledged_write_and_it_catches_up(rt):
    cache = rt.replicated_state("cache", replicas=3, quorum=2)
    acked = []
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set() and i < 2000:
            if cache.set_replicated(f"k{i}", i):
                acked.append(f"k{i}")
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    wait_for(lambda: len(acked) > 50)
    victim = next(r for r in rt.agent_info() if r["name"] == "cache.replica1")
    os.kill(victim["pid"], signal.SIGKILL)
    wait_for(lambda: any(r["name"] == "cache.replica1" and r["restarts"] == 1 and r["alive"]
                         for r in rt.agent_info()))
    written = len(acked)
    wait_for(lambda: len(acked) > written + 20)  # writes go on after the restart
    stop.set()
    thread.join(60)
    assert len(acked) > 50
    assert [k for k in acked if cache.replicas[0].proxy().read(k).get(timeout=10) is None
            and cache.replicas[2].proxy().read(k).get(timeout=10) is None] == []
    assert [k for k in acked if cache.get(k) is None] == []
    others = cache.replicas[0].proxy().dump().get(timeout=10)
    wait_for(lambda: set(others) <= set(cache.replicas[1].proxy().dump().get(timeout=10)))



def _restarted(rt, names, restarts):
    rows = {r["name"]: r for r in rt.agent_info()}
    return all(rows[n]["alive"] and rows[n]["restarts"] >= restarts for n in names)


def _replica_errors(rt, name):
    return [e for e in rt.events.get_history(EventType.ERROR_OCCURRED, limit=1000)
            if e.source.startswith(f"{name}.replica")]


def test_reads_and_writes_that_reach_fewer_than_quorum_replicas_raise(rt):
    cache = rt.replicated_state("cache", replicas=3, quorum=2)
    assert cache.set_replicated("k", "v") is True
    assert rt.remove_agent("cache.replica1") and rt.remove_agent("cache.replica2")
    with pytest.raises(QuorumNotReachedError) as info:
        cache.set_replicated("k", "w")
    assert (info.value.key, info.value.quorum, info.value.answered, info.value.operation) == ("k", 2, 1, "write")
    with pytest.raises(QuorumNotReachedError) as info:
        cache.get("k")
    assert (info.value.quorum, info.value.answered, info.value.operation) == (2, 1, "read")
    assert "cache" in str(info.value) and "'k'" in str(info.value)
    with pytest.raises(QuorumNotReachedError):
        cache.get("never written")  # not None: absent on one replica is not absent
    assert cache.set_replicated("k", "w", quorum=1) is True  # a lower quorum, asked for, is reached


def test_with_every_replica_restarted_empty_reads_raise_and_the_loss_is_published(rt):
    cache = rt.replicated_state("cache", replicas=3, quorum=2)
    for i in range(10):
        cache.set_replicated(f"k{i}", i)
    names = [f"cache.replica{i}" for i in range(3)]
    pids = [r["pid"] for r in rt.agent_info() if r["name"] in names]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: _restarted(rt, names, 1))
    wait_for(lambda: len({e.source for e in _replica_errors(rt, "cache")}) == 3)
    assert "could not catch up" in _replica_errors(rt, "cache")[0].payload["error"]
    for key in ("k0", "k9", "never written"):
        with pytest.raises(QuorumNotReachedError) as info:
            cache.get(key)
        assert info.value.answered == 0
    # What is written after the loss is known again.
    assert cache.set_replicated("k0", "again") is True
    assert cache.get("k0") == "again"


def test_losing_fewer_than_quorum_replicas_at_a_time_loses_nothing_and_raises_nothing(rt):
    cache = rt.replicated_state("cache", replicas=3, quorum=2)
    for i in range(20):
        cache.set_replicated(f"k{i}", i)
    for n, victim in enumerate(["cache.replica1", "cache.replica0", "cache.replica2"], start=1):
        os.kill(next(r["pid"] for r in rt.agent_info() if r["name"] == victim), signal.SIGKILL)
        wait_for(lambda victim=victim: _restarted(rt, [victim], 1))
        cache.set_replicated(f"after{n}", n)
    assert [cache.get(f"k{i}") for i in range(20)] == list(range(20))
    assert [cache.get(f"after{n}") for n in (1, 2, 3)] == [1, 2, 3]
    assert cache.get("never written") is None
    assert _replica_errors(rt, "cache") == []
