"""The futures of actors built on `ActorBase`: pykka's threading future, lighter."""

from __future__ import annotations

import asyncio
import queue
import threading
import traceback

import pykka
import pytest

from actors._future import NotifyingFuture, wait_future


def set_soon(future: NotifyingFuture, value: object) -> threading.Thread:
    thread = threading.Thread(target=lambda: (threading.Event().wait(0.05), future.set(value)))
    thread.start()
    return thread


def test_every_waiting_thread_gets_the_value_set_later():
    future = NotifyingFuture()
    got = []
    waiters = [threading.Thread(target=lambda: got.append(future.get(timeout=30))) for _ in range(3)]
    for waiter in waiters:
        waiter.start()
    set_soon(future, "value").join(30)
    for waiter in waiters:
        waiter.join(30)
    assert got == ["value"] * 3
    assert future.get(timeout=0) == "value"  # and again, at once


def test_a_wait_with_no_outcome_in_time_raises_timeout():
    future = NotifyingFuture()
    with pytest.raises(pykka.Timeout):
        future.get(timeout=0)
    with pytest.raises(pykka.Timeout):
        future.get(timeout=0.05)
    future.set(1)
    assert future.get(timeout=0) == 1  # a timed-out wait leaves the future usable


def test_an_outcome_is_set_once():
    future = NotifyingFuture()
    future.set(1)
    with pytest.raises(queue.Full):
        future.set(2)
    with pytest.raises(queue.Full):
        future.set_exception((ValueError, ValueError("late"), None))
    assert future.get() == 1


def test_an_exception_set_is_raised_to_each_getter_with_its_traceback():
    future = NotifyingFuture()
    try:
        raise ValueError("broken")
    except ValueError:
        future.set_exception()
    for _ in range(2):
        with pytest.raises(ValueError, match="broken") as caught:
            future.get(timeout=1)
        assert "raise ValueError" in "".join(traceback.format_tb(caught.value.__traceback__))


def test_a_get_hook_answers_waiters_and_runs_once():
    future = NotifyingFuture()
    calls = []
    got = []
    waiter = threading.Thread(target=lambda: got.append(future.get(timeout=30)))
    waiter.start()
    future.set_get_hook(lambda timeout: calls.append(timeout) or "hooked")
    waiter.join(30)
    assert got == ["hooked"] and future.get() == "hooked" and len(calls) == 1
    with pytest.raises(queue.Full):
        future.set(1)


def test_notify_calls_back_once_now_or_when_set():
    early, late = NotifyingFuture(), NotifyingFuture()
    early.set(1)
    calls = []
    early.notify(lambda: calls.append("early"))
    late.notify(lambda: calls.append("late"))
    assert calls == ["early"]
    set_soon(late, 2).join(30)
    assert calls == ["early", "late"]


def test_pykka_combinators_and_asyncio_await_it():
    futures = [NotifyingFuture() for _ in range(3)]
    doubled = futures[0].map(lambda v: v * 2)
    for n, future in enumerate(futures):
        future.set(n + 1)
    assert doubled.get(timeout=1) == 2
    assert pykka.get_all(futures, timeout=1) == [1, 2, 3]
    pending = NotifyingFuture()
    thread = set_soon(pending, "awaited")
    assert asyncio.run(wait_future(pending, timeout=30)) == "awaited"
    thread.join(30)
