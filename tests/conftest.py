"""Shared fixtures: a runtime per test, and a guard against leaked processes."""

from __future__ import annotations

import time

import psutil
import pytest

from runtime import Runtime

# multiprocessing's own helpers may outlive a runtime (the contract allows it).
_HELPERS = ("multiprocessing.forkserver", "multiprocessing.resource_tracker")


def _ray_process(cmdline: str) -> bool:
    # Ray's own daemons and worker pool live as long as the test session's
    # Ray instance (see the `ray_session` fixture), which ends them.
    return "/ray/" in cmdline or cmdline.startswith("ray::") or "ray_process_reaper" in cmdline


def stray_processes() -> list[psutil.Process]:
    """Descendants of this process other than multiprocessing's and Ray's helpers."""
    strays = []
    for proc in psutil.Process().children(recursive=True):
        try:
            cmdline = " ".join(proc.cmdline())
            if any(h in cmdline for h in _HELPERS) or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            # A Ray worker on its way out has an empty command line, but
            # still its name ("ray::Host").
            if _ray_process(cmdline) or proc.name().startswith("ray::"):
                continue
        except psutil.Error:
            continue
        strays.append(proc)
    return strays


def pid_of(rt, name: str) -> int:
    """The pid of agent `name`'s process, from `agent_info()`."""
    return next(row["pid"] for row in rt.agent_info() if row["name"] == name)


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


@pytest.fixture(scope="module")
def ray_session():
    """A local Ray instance (bound to 127.0.0.1) for the tests of one module,
    ended after them so the rest of the suite runs without it."""
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             _node_ip_address="127.0.0.1")
    yield ray
    ray.shutdown()


@pytest.fixture(params=["local", "ray"])
def any_rt(request):
    """A runtime on each backend: the same test runs on both."""
    if request.param == "ray":
        request.getfixturevalue("ray_session")
    runtime = Runtime(backend=request.param)
    try:
        yield runtime
    finally:
        runtime.shutdown()


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
