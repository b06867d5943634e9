"""One timer thread per process runs delayed calls in order, skipping cancelled ones."""

from __future__ import annotations

import logging
import threading

from actors._timers import call_later
from conftest import wait_for


def test_calls_run_in_the_order_they_fall_due_not_the_order_asked():
    ran = []
    call_later(0.15, ran.append, "late")
    call_later(0.05, ran.append, "early")
    call_later(0.05, ran.append, "early, asked second")
    wait_for(lambda: len(ran) == 3)
    assert ran == ["early", "early, asked second", "late"]


def test_a_cancelled_call_does_not_run():
    ran = threading.Event()
    call_later(0.05, ran.set).cancel()
    marker = threading.Event()
    call_later(0.1, marker.set)
    wait_for(marker.is_set)
    assert not ran.is_set()


def test_a_failing_call_is_logged_and_the_next_still_runs(caplog):
    def fail():
        raise RuntimeError("boom")

    after = threading.Event()
    with caplog.at_level(logging.ERROR, logger="actors"):
        call_later(0.01, fail)
        call_later(0.02, after.set)
        wait_for(after.is_set)
    assert "a timed call failed" in caplog.text


def test_calls_cancelled_long_before_they_fall_due_do_not_pile_up():
    from actors import _timers

    for _ in range(10_000):  # e.g. lock requests granted long before their timeout
        call_later(60, print).cancel()
    assert len(_timers._timers._heap) <= 1024
