"""Awaitable futures and the `aio` views (runtime/wire/_aio.py, actors/_aio.py)."""

from __future__ import annotations

import asyncio
import time

import pytest
from pykka.messages import ProxyCall

from actors import Agent, AskTimeout
from runtime import Runtime


class Echo(Agent):
    capabilities = ["compute"]

    def on_receive(self, message):
        if isinstance(message, tuple) and message[0] == "sleep":
            time.sleep(message[1])
        return message

    def add(self, a, b):
        return a + b

    def do_work(self, task):
        return sum(task["payload"])


@pytest.fixture
def rt():
    with Runtime() as runtime:
        runtime.spawn(Echo, "echo")
        yield runtime


async def _worst_lag_while(awaitable):
    """Await `awaitable` while a ticker measures how late the loop runs it."""
    lags = []

    async def ticker():
        while True:
            start = time.perf_counter()
            await asyncio.sleep(0.005)
            lags.append(time.perf_counter() - start - 0.005)

    tick = asyncio.create_task(ticker())
    try:
        result = await awaitable
    finally:
        tick.cancel()
    return result, max(lags)


def test_an_awaited_ask_does_not_block_the_loop_while_the_agent_works(rt):
    echo = rt.agents["echo"]
    result, lag = asyncio.run(_worst_lag_while(echo.ask(("sleep", 0.4), block=False)))
    assert result == ("sleep", 0.4)
    assert lag < 0.2  # blocking, the loop would be 0.4 s late


def test_an_awaited_proxy_call_returns_the_methods_result(rt):
    async def main():
        return await rt.agents["echo"].proxy().add(2, 3)

    assert asyncio.run(main()) == 5


def test_many_concurrent_awaited_asks_all_get_their_own_reply(rt):
    async def main():
        echo = rt.agents["echo"]
        return await asyncio.gather(*(echo.ask(i, block=False) for i in range(300)))

    assert asyncio.run(main()) == list(range(300))


async def _awaits(future):
    return await future


@pytest.mark.parametrize("wrap", [asyncio.ensure_future, lambda future: asyncio.create_task(_awaits(future))],
                         ids=["the ask itself", "a coroutine awaiting it"])
def test_cancelling_the_awaiting_task_abandons_the_ask(rt, wrap):
    echo = rt.agents["echo"]

    async def main():
        future = echo.ask(("sleep", 0.3), block=False)
        task = wrap(future)
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return await echo.ask("after", block=False), future._source

    reply, (channel, request_id, _what) = asyncio.run(main())
    assert reply == "after"  # the late reply was dropped, not taken for this one
    assert request_id not in channel._replies and request_id not in channel._waiters


def test_an_awaited_ask_future_keeps_its_value_for_get(rt):
    async def main():
        future = rt.agents["echo"].ask(7, block=False)
        return await future, future

    value, future = asyncio.run(main())
    assert value == 7 and future.get(timeout=0) == 7


def test_aio_ref_ask_times_out_with_ask_timeout(rt):
    async def main():
        await rt.aio.peer("echo").ask(("sleep", 0.5), timeout=0.05)

    with pytest.raises(AskTimeout):
        asyncio.run(main())


def test_aio_state_and_store_have_the_blocking_names_and_results(rt):
    async def main():
        aio = rt.aio
        assert await aio.state.set("shared", "aio-k", 1)
        assert await aio.state.update("shared", "aio-k", lambda v: v + 1) == 2
        assert await aio.store.set("aio-x", 5)
        return await aio.state.get("shared", "aio-k"), await aio.store.get("aio-x")

    assert asyncio.run(main()) == (2, 5)
    assert rt.state.get("shared", "aio-k") == 2


def test_aio_lock_works_with_async_with_and_the_factory_asks_nothing(rt):
    async def main():
        lock = rt.aio.sync.get_lock("aio-lock")
        async with lock:
            holder = await lock.holder()
        return holder, await lock.holder()

    assert asyncio.run(main()) == ("runtime", None)


def test_aio_semaphore_and_barrier(rt):
    async def main():
        sem = rt.aio.sync.get_semaphore("aio-sem", 2)
        async with sem:
            inside = await sem.available()
        barrier = rt.aio.sync.get_barrier("aio-bar", 1)
        return inside, await sem.available(), await barrier.wait()

    assert asyncio.run(main()) == (1, 2, True)


def test_aio_events_comm_and_streams(rt):
    async def main():
        aio = rt.aio
        event = await aio.events.emit("me", "task_created", {"a": 1})
        history = await aio.events.get_history(source="me")
        status = await aio.comm.request_reply.request("me", "echo", {"action": "get_status"})
        await aio.comm.streaming.create_stream("aio-s")
        await aio.comm.streaming.send("aio-s", 1)
        await aio.comm.streaming.send("aio-s", 2)
        await aio.comm.streaming.close_stream("aio-s")
        chunks = [chunk async for chunk in aio.comm.streaming.iterate("aio-s")]
        return event.id in [e.id for e in history], status["agent_id"], chunks

    assert asyncio.run(main()) == (True, "echo", [1, 2])


def test_rt_aio_submit_task_map_and_imap(rt):
    async def main():
        one = await rt.aio.submit_task({"id": "aio-t1", "type": "compute", "payload": [1, 2]})
        many = await rt.aio.map("compute", [[1], [2, 3]])
        lazy = [r async for r in rt.aio.imap("compute", [[i] for i in range(5)])]
        return one, many, lazy

    assert asyncio.run(main()) == (3, [1, 5], [0, 1, 2, 3, 4])


def test_gathering_asks_starts_no_task_per_ask(rt):
    echo = rt.agents["echo"]

    async def main():
        futures = [echo.ask(i, block=False) for i in range(300)]
        gathered = asyncio.gather(*futures)
        tasks = len(asyncio.all_tasks())
        return await gathered, tasks

    replies, tasks = asyncio.run(main())
    assert replies == list(range(300))
    assert tasks == 1  # only main: each ask is an asyncio future itself


def test_asks_work_with_asyncio_wait_and_wait_for(rt):
    echo = rt.agents["echo"]

    async def main():
        quick, slow = echo.ask("quick", block=False), echo.ask(("sleep", 0.5), block=False)
        done, pending = await asyncio.wait([quick, slow], return_when=asyncio.FIRST_COMPLETED)
        first = [f.result() for f in done]
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(slow, 0.01)  # cancels it, as wait_for does
        return first, pending == {slow}, slow.cancelled()

    assert asyncio.run(main()) == (["quick"], True, True)


def test_a_timed_out_await_keeps_the_ask_for_a_later_await_or_get(rt):
    from actors._future import wait_future

    echo = rt.agents["echo"]

    async def main():
        future = echo.ask(("sleep", 0.3), block=False)
        with pytest.raises(AskTimeout):
            await wait_future(future, 0.05)
        return await future, future

    value, future = asyncio.run(main())
    assert value == ("sleep", 0.3) and future.get(timeout=0) == ("sleep", 0.3)
    late = rt.agents["echo"].ask(("sleep", 0.3), block=False)

    async def give_up():
        with pytest.raises(AskTimeout):
            await wait_future(late, 0.05)

    asyncio.run(give_up())
    assert late.get(timeout=5) == ("sleep", 0.3)  # the reply was kept for a blocking get


def test_an_error_reply_is_raised_by_await_and_by_gather(rt):
    async def main():
        echo = rt.agents["echo"]
        bad = echo.ask(ProxyCall(("nope",), (), {}), block=False)
        results = await asyncio.gather(bad, echo.ask(1, block=False), return_exceptions=True)
        return type(results[0]).__name__, results[1], type(bad.exception()).__name__

    assert asyncio.run(main()) == ("AttributeError", 1, "AttributeError")


def test_an_ask_can_be_run_until_complete_on_a_loop_not_yet_running(rt):
    loop = asyncio.new_event_loop()
    try:
        future = rt.agents["echo"].ask(5, block=False)
        assert not asyncio.isfuture(future)  # outside a running loop: wrapped in a task, bound there
        assert loop.run_until_complete(future) == 5
    finally:
        loop.close()


def test_an_idle_loop_polls_for_an_awaited_reply_and_a_busy_one_never_does(rt, monkeypatch):
    from runtime.wire import _spin

    spins = []
    real = _spin.Spinner.read
    monkeypatch.setattr(_spin.Spinner, "read", lambda self, fd, reader: (spins.append(fd), real(self, fd, reader)))
    echo = rt.agents["echo"]

    async def idle():
        return [await echo.ask(i, block=False) for i in range(20)]

    assert asyncio.run(idle()) == list(range(20))
    assert spins  # nothing else to run: it polled before sleeping, as a blocking ask does

    async def busy():
        async def spinner_of_our_own():
            while True:
                await asyncio.sleep(0)  # always a callback ready

        other = asyncio.create_task(spinner_of_our_own())
        try:
            return [await echo.ask(i, block=False) for i in range(20)]
        finally:
            other.cancel()

    spins.clear()
    assert asyncio.run(busy()) == list(range(20))
    assert spins == []  # other work was ready: the loop never held it up polling
