"""Agents are forked by the runtime's zygote; `preload` warms it up."""

from __future__ import annotations

import subprocess
import textwrap
import threading

import psutil
import pytest

from runtime import PreloadError, Runtime
from conftest import wait_for

WHERE = textwrap.dedent("""
    import os

    from actors import Agent

    IMPORTED_IN = os.getpid()


    class Where(Agent):
        def on_receive(self, message):
            return {"imported_in": IMPORTED_IN, "pid": os.getpid()}
""")


@pytest.fixture
def where_module(tmp_path, monkeypatch):
    (tmp_path / "where_agents.py").write_text(WHERE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "where_agents"
    import sys

    sys.modules.pop("where_agents", None)


def test_a_preloaded_module_is_imported_once_before_any_agent_is_forked(where_module):
    import where_agents

    with Runtime(preload=[where_module]) as rt:
        answers = [rt.spawn(where_agents.Where, f"w{i}").ask("where?", timeout=30) for i in range(2)]
    assert all(a["imported_in"] != a["pid"] for a in answers)
    assert answers[0]["imported_in"] == answers[1]["imported_in"]  # the zygote's import, shared


def test_without_preload_each_agent_imports_its_module_itself(where_module):
    import where_agents

    with Runtime() as rt:
        answer = rt.spawn(where_agents.Where, "w").ask("where?", timeout=30)
    assert answer["imported_in"] == answer["pid"]


def test_a_module_that_fails_to_preload_is_named_and_nothing_is_left_running(tmp_path, monkeypatch):
    (tmp_path / "broken_agents.py").write_text("raise RuntimeError('no model file')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with pytest.raises(PreloadError, match="'broken_agents'.*RuntimeError: no model file") as caught:
        Runtime(preload=["broken_agents"])
    assert isinstance(caught.value, ImportError) and caught.value.module == "broken_agents"
    assert {p.pid for p in psutil.Process().children(recursive=True)} - before == set()


@pytest.mark.parametrize(("preload", "error", "message"), [
    ([3], TypeError, "list of module names"),
    (["not a module"], ValueError, "'not a module' is not a module name"),
])
def test_preload_names_a_bad_entry(preload, error, message):
    with pytest.raises(error, match=message):
        Runtime(preload=preload)


@pytest.fixture
def zygote():
    from runtime.local._launcher import Zygote

    zygote = Zygote()
    zygote.wait_ready(30)
    yield zygote
    zygote.close()


@pytest.fixture
def sleeper():
    process = subprocess.Popen(["sleep", "60"])
    yield process
    process.kill()
    process.wait()


def _join_in_thread(handle, timeout):
    thread = threading.Thread(target=handle.join, args=(timeout,), daemon=True)
    thread.start()
    return thread


def test_a_waiter_gets_the_exit_status_even_when_another_thread_closes_the_handle_first(zygote, sleeper):
    # The supervisor learns an agent's exit, keeps its status in the handle
    # and closes it (dropping the zygote's copy) while a thread stopping the
    # agent waits for that status: the waiter must find it, not wait out
    # its whole timeout (a shutdown took 2 s longer per agent so).
    from runtime.local._launcher import AgentProcess

    handle = AgentProcess(sleeper.pid, zygote)
    waiter = _join_in_thread(handle, 60)
    sleeper.kill()
    sleeper.wait()
    wait_for(lambda: handle._users == 0)  # past the pidfd: waiting for the status
    with zygote._cond:  # the report and the supervisor's close, before the waiter wakes
        zygote._exits[sleeper.pid] = -9
        assert handle.exitcode == -9
        handle.close()
    waiter.join(10)
    assert not waiter.is_alive()
    assert handle.exitcode == -9 and zygote.exitcode(sleeper.pid) is None


def test_a_handle_closed_while_a_thread_waits_on_its_pidfd_is_closed_by_that_thread_when_done(zygote, sleeper):
    # Closing a descriptor another thread polls could hand that thread a
    # reused number: the close waits for the last user.
    from runtime.local._launcher import AgentProcess

    handle = AgentProcess(sleeper.pid, zygote)
    waiter = _join_in_thread(handle, 0.5)
    wait_for(lambda: handle._users == 1)
    handle.close()
    assert handle.sentinel >= 0  # still polled
    waiter.join(10)
    assert not waiter.is_alive() and handle.sentinel == -1
    assert handle.is_alive() is False  # closed: nothing more is known of it
