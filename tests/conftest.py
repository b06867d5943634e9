"""Shared fixtures: a runtime per test, and a guard against leaked processes."""

from __future__ import annotations

import time

import psutil
import pytest

from runtime import Runtime

# multiprocessing's own helpers may outlive a runtime (the contract allows it).
_HELPERS = ("multiprocessing.forkserver", "multiprocessing.resource_tracker")


def stray_processes() -> list[psutil.Process]:
    """Descendants of this process other than multiprocessing's helpers."""
    strays = []
    for proc in psutil.Process().children(recursive=True):
        try:
            cmdline = " ".join(proc.cmdline())
            if any(h in cmdline for h in _HELPERS) or proc.status() == psutil.STATUS_ZOMBIE:
                continue
        except psutil.Error:
            continue
        strays.append(proc)
    return strays


def wait_for(condition, timeout: float = 20.0, interval: float = 0.01):
    """Poll `condition()` until it is truthy; return its value or fail."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s: {condition}")
        time.sleep(interval)


@pytest.fixture
def rt():
    runtime = Runtime()
    try:
        yield runtime
    finally:
        runtime.shutdown()


@pytest.fixture(autouse=True)
def no_leaked_processes():
    yield
    # Processes end shortly after being reaped by their parent; give them time.
    deadline = time.monotonic() + 10
    while stray_processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    leaked = stray_processes()
    for proc in leaked:  # end only what this test started, by PID
        proc.kill()
    assert not leaked, f"processes left behind: {[(p.pid, p.cmdline()) for p in leaked]}"
