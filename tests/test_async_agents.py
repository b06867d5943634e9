"""Agents with `async def` handlers (runtime/local/_aio_host.py, actors/_agent.py)."""

from __future__ import annotations

import asyncio
import time

import pytest

from actors import Agent

from conftest import wait_for


class Sleeper(Agent):
    capabilities = ["nap"]
    max_concurrency = 20

    async def on_start(self):
        await asyncio.sleep(0)
        self.in_flight = self.peak = 0

    async def on_receive(self, message):
        if message == "boom":
            raise ValueError("boom")
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        await asyncio.sleep(0.3)
        self.in_flight -= 1
        return message

    def peak_seen(self):
        return self.peak

    async def do_work(self, task):
        await asyncio.sleep(0.05)
        n = await self.ctx.aio.state.update("shared", "naps", lambda v: (v or 0) + 1)
        async with self.ctx.aio.sync.get_lock("pool"):
            doubled = await self.ctx.aio.peer("plain").ask(task["payload"], timeout=5)
        return {"n": n, "doubled": doubled}


class Plain(Agent):
    def on_receive(self, message):
        return message * 2


class BadStart(Agent):
    async def on_start(self):
        raise RuntimeError("no start")


def test_async_handlers_interleave_up_to_max_concurrency(rt):
    sleeper = rt.spawn(Sleeper, "sleeper")
    start = time.perf_counter()
    futures = [sleeper.ask(i, block=False) for i in range(20)]
    assert [f.get(timeout=10) for f in futures] == list(range(20))
    assert time.perf_counter() - start < 3.0  # one at a time would take 6 s
    assert sleeper.proxy().peak_seen().get(timeout=5) > 1


def test_default_max_concurrency_runs_one_async_handler_at_a_time(rt):
    class One(Agent):
        async def on_receive(self, message):
            self.count = getattr(self, "count", 0) + 1
            seen = self.count
            await asyncio.sleep(0.02)
            return seen == self.count  # nobody else ran meanwhile

    one = rt.spawn(One, "one")
    futures = [one.ask(i, block=False) for i in range(5)]
    assert all(f.get(timeout=10) for f in futures)


def test_an_exception_fails_only_its_own_ask(rt):
    sleeper = rt.spawn(Sleeper, "sleeper")
    ok = sleeper.ask("fine", block=False)
    with pytest.raises(ValueError, match="boom"):
        sleeper.ask("boom", timeout=5)
    assert ok.get(timeout=5) == "fine"
    assert sleeper.is_alive()


def test_an_exception_from_a_tell_crashes_the_agent_and_it_restarts(rt):
    sleeper = rt.spawn(Sleeper, "sleeper")
    sleeper.tell("boom")
    wait_for(lambda: next(r for r in rt.agent_info() if r["name"] == "sleeper")["restarts"] == 1)
    assert sleeper.ask("again", timeout=10) == "again"


def test_an_async_on_start_failure_is_raised_by_spawn(rt):
    with pytest.raises(RuntimeError, match="no start"):
        rt.spawn(BadStart, "bad")


def test_sync_and_async_agents_ask_each_other_in_one_runtime(rt):
    rt.spawn(Plain, "plain")
    sleeper = rt.spawn(Sleeper, "sleeper")
    result = rt.submit_task({"id": "a1", "type": "nap", "payload": 21})
    assert result == {"n": 1, "doubled": 42}
    assert rt.state.get("shared", "task:a1:status") == "completed"
    assert sleeper.proxy().peak_seen().get(timeout=5) == 0  # a sync method, on the same loop


def test_map_runs_async_do_work_concurrently(rt):
    rt.spawn(Plain, "plain")
    rt.spawn(Sleeper, "sleeper")
    results = rt.map("nap", list(range(10)))
    assert [r["doubled"] for r in results] == [2 * i for i in range(10)]
    assert rt.state.get("shared", "naps") == 10


def test_async_agents_embedded_in_an_asyncio_app_are_awaited_without_blocking(rt):
    sleeper = rt.spawn(Sleeper, "sleeper")

    async def main():
        return await asyncio.gather(*(rt.aio.peer("sleeper").ask(i, timeout=10) for i in range(10)))

    assert asyncio.run(main()) == list(range(10))
    assert sleeper.stop() is True


def test_ray_backend_refuses_async_agents_clearly():
    from runtime.ray._runtime import RayRuntime

    with pytest.raises(NotImplementedError, match="async def handlers"):
        RayRuntime._launch(object.__new__(RayRuntime), Sleeper, "s", [], "permanent", 3, 5.0, (), {}, "agent")


class Napper(Agent):
    """Async work that only waits: many tasks can be in flight at once."""

    capabilities = ["wait"]
    max_concurrency = 10

    def on_start(self):
        self.in_flight = self.peak = 0

    async def do_work(self, task):
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        await asyncio.sleep(0.3)
        self.in_flight -= 1
        return task["payload"] * 2

    def peak_seen(self):
        return self.peak


def test_map_keeps_up_to_max_concurrency_async_tasks_in_flight_per_agent(rt):
    agents = [rt.spawn(Napper, f"napper{i}") for i in range(2)]
    start = time.perf_counter()
    results = rt.map("wait", list(range(40)))
    elapsed = time.perf_counter() - start
    assert results == [2 * i for i in range(40)]
    assert elapsed < 4.0  # one at a time per agent would take 6 s (two at a time, 3 s)
    peaks = [agent.proxy().peak_seen().get(timeout=5) for agent in agents]
    assert max(peaks) > 2 and max(peaks) <= Napper.max_concurrency


def test_imap_over_async_agents_keeps_the_input_order(rt):
    rt.spawn(Napper, "napper")
    assert list(rt.imap("wait", range(25))) == [2 * i for i in range(25)]


class Relay(Agent):
    """A sync agent whose handler asks another agent (so its ask carries a chain)."""

    def on_receive(self, message):
        target, body = message
        return self.ctx.peer(target).ask(body, timeout=10)


def test_a_sync_agents_handler_asking_an_async_agent_gets_its_reply(rt):
    rt.spawn(Sleeper, "sleeper")
    relay = rt.spawn(Relay, "relay")
    assert relay.ask(("sleeper", "hello"), timeout=10) == "hello"
    assert relay.ask(("sleeper", "again"), timeout=10) == "again"
