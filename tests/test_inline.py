"""Services run a message on the thread that read it when idle: still one at a time, in order."""

from __future__ import annotations

import threading

from actors import Agent


class Worker(Agent):
    def bump(self, key, n):
        for _ in range(n):
            self.ctx.state.update("shared", key, lambda v: (v or 0) + 1)
        return n

    def take_and_give(self, sem_id, n):
        semaphore = self.ctx.sync.get_semaphore(sem_id, 1)
        taken = 0
        for _ in range(n):
            # release is a tell: were it overtaken by the next acquire, the
            # permit would still be held and acquire(timeout=0) would fail.
            taken += semaphore.acquire(timeout=0)
            semaphore.release()
        return taken


def test_a_senders_tell_is_never_overtaken_by_its_next_ask(rt):
    worker = rt.spawn(Worker, "w")
    assert worker.proxy().take_and_give("one", 300).get(timeout=120) == 300


def test_agents_and_the_runtimes_own_threads_updating_at_once_lose_nothing(rt):
    # Agents' requests may run in the runtime's reader threads, the runtime's
    # own calls in the store's thread: both must see every other write.
    workers = [rt.spawn(Worker, f"w{i}") for i in range(3)]
    futures = [w.proxy().bump("shared-count", 150) for w in workers]

    def bump_here():
        for _ in range(150):
            rt.state.update("shared", "shared-count", lambda v: (v or 0) + 1)

    threads = [threading.Thread(target=bump_here) for _ in range(2)]
    for thread in threads:
        thread.start()
    assert [f.get(timeout=120) for f in futures] == [150] * 3
    for thread in threads:
        thread.join(120)
    assert rt.state.get("shared", "shared-count") == 5 * 150


def test_locks_nobody_contends_for_cost_no_thread(rt):
    before = threading.active_count()
    for i in range(50):
        with rt.sync.get_lock(f"lone-{i}"):
            pass
    assert threading.active_count() - before < 10  # not one per lock


def test_a_contended_lock_queues_its_waiters_and_grants_each_in_turn(rt):
    lock = rt.sync.get_lock("contended")
    assert lock.acquire("first", timeout=5)
    granted = []

    def take_turn(name):
        if lock.acquire(name, timeout=60):
            granted.append(name)
            lock.release(name)

    waiters = [threading.Thread(target=take_turn, args=(f"w{i}",)) for i in range(3)]
    for waiter in waiters:
        waiter.start()
    lock.release("first")
    for waiter in waiters:
        waiter.join(90)
    assert sorted(granted) == ["w0", "w1", "w2"]
    assert lock.holder() is None
