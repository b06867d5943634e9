"""Locks as actors: FIFO, timeouts enforced by the lock, fencing tokens."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from actors import Agent, BrokenBarrierError, EventType, LockTimeout
from conftest import pid_of, wait_for


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
    with pytest.raises(LockTimeout, match="'busy'"), lock:
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
    os.kill(pid_of(rt, "holder"), signal.SIGKILL)
    waiter.join(10)
    assert lock.holder() == "next"
    left = wait_for(lambda: rt.events.get_history(EventType.AGENT_LEFT, source="holder"))
    assert left[-1].payload["reclaimed"] == ["lock res"]
    error = rt.events.get_history(EventType.ERROR_OCCURRED, source="supervisor")[-1]
    assert error.payload["reclaimed"] == ["lock res"] and error.payload["agent_id"] == "holder"


class Party(Agent):
    def rounds(self, barrier_id, count, n):
        barrier = self.ctx.sync.get_barrier(barrier_id, count)
        results = []
        for i in range(n):
            self.ctx.state.update("shared", f"{barrier_id}:arrived:{i}", lambda v: (v or 0) + 1)
            results.append(barrier.wait(timeout=30))
            # Everyone of round i arrived before anyone passed it.
            results.append(self.ctx.state.get("shared", f"{barrier_id}:arrived:{i}") == count)
        return results

    def wait_once(self, barrier_id, count, timeout=30):
        return self.ctx.sync.get_barrier(barrier_id, count).wait(timeout=timeout)

    def limited(self, n):
        sem = self.ctx.sync.get_semaphore("pool", 2)
        for _ in range(n):
            with sem:
                now = self.ctx.state.update("shared", "inside", lambda v: (v or 0) + 1)
                self.ctx.state.update("shared", "peak", lambda v, now=now: max(v or 0, now))
                self.ctx.state.update("shared", "inside", lambda v: v - 1)
        return n


def test_a_request_that_times_out_is_withdrawn_by_request_not_by_holder(rt):
    lock = rt.sync.get_lock("twice")
    lock.acquire("owner")
    results = {}
    late = threading.Thread(target=lambda: results.setdefault("long", lock.acquire("same", timeout=30)))
    late.start()
    wait_for(lambda: lock.statistics().waiting == ("same",))
    assert lock.acquire("same", timeout=0.1) is False  # the same holder's second request expires...
    assert lock.statistics().waiting == ("same",)  # ...and only that request left the queue
    lock.release("owner")
    late.join(10)
    assert results["long"] is True and lock.holder() == "same"


def test_grants_racing_with_timeouts_never_leak_the_lock(rt):
    lock = rt.sync.get_lock("race")
    granted = []

    def contender(k):
        for i in range(20):
            if lock.acquire(f"c{k}", timeout=0.005 * (i % 4)):
                granted.append(k)
                lock.release(f"c{k}")

    threads = [threading.Thread(target=contender, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    wait_for(lambda: lock.statistics().waiting == ())
    assert lock.holder() is None and granted


def test_a_semaphore_counts_permits_per_holder_and_refuses_non_holders(rt):
    sem = rt.sync.get_semaphore("s", 3)
    assert sem.acquire("a") and sem.acquire("a")
    assert sem.available() == 1 and sem.holders() == {"a": 2}
    assert sem.release("b") is False
    assert sem.acquire("b") is True
    assert sem.acquire("c", timeout=0.1) is False
    assert sem.release("a") is True and sem.acquire("c", timeout=5) is True
    with pytest.raises(ValueError, match="already exists"):
        rt.sync.get_semaphore("s", 5)


def test_a_semaphore_of_two_never_has_three_holders(rt):
    agents = [rt.spawn(Party, f"p{i}") for i in range(4)]
    futures = [a.proxy().limited(10) for a in agents]
    assert [f.get(timeout=120) for f in futures] == [10] * 4
    assert rt.state.get("shared", "peak") == 2
    # `with sem:` tells its release, so the last ones may still be on their way.
    wait_for(lambda: rt.sync.get_semaphore("pool", 2).available() == 2)


def test_a_barrier_of_three_across_processes_for_several_rounds(rt):
    agents = [rt.spawn(Party, f"p{i}") for i in range(3)]
    futures = [a.proxy().rounds("b3", 3, 4) for a in agents]
    assert [f.get(timeout=120) for f in futures] == [[True] * 8] * 3


def test_a_barrier_waiter_that_times_out_gets_false_and_reset_breaks_the_round(rt):
    barrier = rt.sync.get_barrier("b", 2)
    assert barrier.wait("alone", timeout=0.1) is False
    assert barrier.waiting() == 0
    broken = {}

    def waiter():
        try:
            barrier.wait("w", timeout=30)
        except BrokenBarrierError as exc:
            broken["error"] = exc

    thread = threading.Thread(target=waiter)
    thread.start()
    wait_for(lambda: barrier.waiting() == 1)
    barrier.reset()
    thread.join(10)
    assert "reset" in str(broken["error"])


def test_sigkill_of_a_lock_holder_frees_the_lock_within_a_second(rt):
    holder = rt.spawn(Holder, "holder", restart="temporary")
    holder.proxy().grab("res").get(timeout=10)
    lock = rt.sync.get_lock("res")
    os.kill(pid_of(rt, "holder"), signal.SIGKILL)
    started = time.monotonic()
    assert lock.acquire("next", timeout=30) is True
    assert time.monotonic() - started < 5  # typically a few ms; generous on a loaded machine


def test_sigkill_of_a_party_breaks_the_barrier_for_the_others(rt):
    parties = [rt.spawn(Party, f"p{i}", restart="temporary") for i in range(3)]
    assert [f.get(timeout=60) for f in [p.proxy().wait_once("b", 3) for p in parties]] == [True] * 3
    waiting = [p.proxy().wait_once("b", 3, 60) for p in parties[:2]]
    barrier = rt.sync.get_barrier("b", 3)
    wait_for(lambda: barrier.waiting() == 2)
    victim = pid_of(rt, "p2")
    started = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    for future in waiting:
        with pytest.raises(BrokenBarrierError, match="'p2' died"):
            future.get(timeout=60)
    assert time.monotonic() - started < 5


def test_free_locks_beyond_the_limit_are_retired_and_come_back_with_their_tokens(rt):
    first = rt.sync.get_lock("task:0")
    assert first.acquire("a") is True
    token = first.token()
    first.release("a")
    held = rt.sync.get_lock("held")
    held.acquire("keeper")
    threads_before = threading.active_count()
    for i in range(1, 400):  # one lock per task, as execute_task makes them
        with rt.sync.get_lock(f"task:{i}"):
            pass
    stats = rt.sync.statistics()
    assert stats["retired_locks"] > 0 and stats["locks"] <= 256 + 64
    assert threading.active_count() < threads_before + 330  # threads don't pile up per lock
    assert held.holder() == "keeper"  # a lock in use is never retired
    assert first.acquire("b") is True  # the old client finds the lock made anew
    assert first.token() > token  # and its fencing tokens kept growing
    assert first.release("b") is True


def test_an_agent_using_a_retired_lock_goes_on(rt):
    holder = rt.spawn(Holder, "holder")
    assert holder.proxy().grab("res").get(timeout=30) is True
    assert holder.proxy().drop("res").get(timeout=30) is True
    for i in range(300):
        rt.sync.get_lock(f"task:{i}")
    assert holder.proxy().grab("res").get(timeout=30) is True
    assert rt.sync.get_lock("res").holder() == "holder"
