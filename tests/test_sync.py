"""Locks as actors: FIFO, timeouts enforced by the lock, fencing tokens."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from actors import Agent, EventType, LockTimeout
from conftest import wait_for


class Holder(Agent):
    def grab(self, lock_id, timeout=30.0):
        return self.ctx.sync.get_lock(lock_id).acquire(timeout=timeout)

    def drop(self, lock_id):
        return self.ctx.sync.get_lock(lock_id).release()

    def unsafe_increments(self, n):
        state = self.ctx.state
        for _ in range(n):
            with self.ctx.sync.get_lock("counter"):
                value = state.get("shared", "unsafe") or 0
                state.set("shared", "unsafe", value + 1)
        return n


def test_acquire_release_and_holder(rt):
    lock = rt.sync.get_lock("l")
    assert lock.acquire("a", timeout=5) is True
    assert lock.holder() == "a"
    assert lock.acquire("b", timeout=0.1) is False
    assert lock.release("b") is False  # not the holder: nothing changes
    assert lock.holder() == "a"
    assert lock.release("a") is True
    assert lock.holder() is None


def test_waiters_are_served_first_come_first_served(rt):
    lock = rt.sync.get_lock("fifo")
    lock.acquire("first")
    order = []

    def wait_for_lock(name):
        if rt.sync.get_lock("fifo").acquire(name, timeout=30):
            order.append(name)
            rt.sync.get_lock("fifo").release(name)

    threads = []
    for name in ["w1", "w2", "w3"]:
        thread = threading.Thread(target=wait_for_lock, args=(name,))
        thread.start()
        threads.append(thread)
        wait_for(lambda n=name: n in lock.statistics().waiting)
    lock.release("first")
    for thread in threads:
        thread.join(30)
    assert order == ["w1", "w2", "w3"]


def test_a_waiter_that_times_out_leaves_the_queue(rt):
    lock = rt.sync.get_lock("t")
    lock.acquire("a")
    started = time.monotonic()
    assert lock.acquire("b", timeout=0.2) is False
    assert 0.15 < time.monotonic() - started < 10
    lock.release("a")
    assert lock.holder() is None  # b's expired request was not granted later


def test_fencing_tokens_only_grow(rt):
    lock = rt.sync.get_lock("fence")
    tokens = []
    for holder in ["a", "b", "a"]:
        lock.acquire(holder)
        tokens.append(lock.token())
        lock.release(holder)
    assert tokens == sorted(tokens) and len(set(tokens)) == 3


def test_with_lock_raises_lock_timeout_when_it_cannot_acquire(rt, monkeypatch):
    lock = rt.sync.get_lock("busy")
    lock.acquire("someone-else")
    monkeypatch.setattr(type(lock), "acquire", lambda self, holder=None, timeout=30.0: False)
    with pytest.raises(LockTimeout, match="'busy'"):
        with lock:
            pass


def test_four_processes_doing_unsafe_read_modify_write_under_one_lock_lose_nothing(rt):
    agents = [rt.spawn(Holder, f"h{i}") for i in range(4)]
    futures = [a.proxy().unsafe_increments(25) for a in agents]
    assert [f.get(timeout=120) for f in futures] == [25] * 4
    assert rt.state.get("shared", "unsafe") == 100


def test_locks_of_an_agent_that_dies_are_released_at_once(rt):
    holder = rt.spawn(Holder, "holder", restart="temporary")
    assert holder.proxy().grab("res").get(timeout=10) is True
    lock = rt.sync.get_lock("res")
    assert lock.holder() == "holder"
    waiter = threading.Thread(target=lambda: lock.acquire("next", timeout=30))
    waiter.start()
    os.kill(rt.agent_info()[0]["pid"], signal.SIGKILL)
    waiter.join(10)
    assert lock.holder() == "next"
    left = wait_for(lambda: rt.events.get_history(EventType.AGENT_LEFT, source="holder"))
    assert left[-1].payload["reclaimed_locks"] == ["res"]
