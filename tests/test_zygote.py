"""Agent processes, and what they start, never outlive their runtime or agent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading

import psutil
import pytest

from actors import Agent
from runtime import Runtime
from conftest import pid_of, wait_for


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _kill(pids) -> None:
    for pid in pids:  # only the pids this test was told about
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


class Starter(Agent):
    """Starts `sleep 60` when told to, and says its pid."""

    def on_receive(self, message):
        self.child = subprocess.Popen(["sleep", "60"], start_new_session=message == "own session")
        return self.child.pid


BURNER = textwrap.dedent("""
    import json, os, sys
    import psutil
    from actors import Agent
    from runtime import Runtime

    class Burner(Agent):
        def on_receive(self, message):
            print("burning", flush=True)
            return sum(range(10**11))  # one C call: never gives the GIL back

    rt = Runtime()
    ref = rt.spawn(Burner, "burner")
    rt.spawn(Agent, "idle")
    pids = [row["pid"] for row in rt.agent_info()]
    print(json.dumps({"agents": pids, "zygote": psutil.Process(pids[0]).ppid()}), flush=True)
    ref.tell("burn")
    sys.stdin.read()  # until the test kills this process
""")


def test_an_agent_busy_in_a_c_call_dies_with_its_killed_runtime(tmp_path):
    script = tmp_path / "burn.py"
    script.write_text(BURNER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=env)
    pids: list[int] = []
    try:
        started = json.loads(proc.stdout.readline())
        pids = [*started["agents"], started["zygote"]]
        assert len(pids) == 3 and proc.pid not in pids
        assert proc.stdout.readline().strip() == "burning"
        burner = psutil.Process(started["agents"][0])
        busy_from = burner.cpu_times().user
        wait_for(lambda: burner.cpu_times().user > busy_from + 0.3, timeout=30)  # inside the C call
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        wait_for(lambda: all(_gone(pid) for pid in pids), timeout=10)
    finally:
        _kill(pids)
        proc.kill()
        proc.wait(10)
        proc.stdin.close()
        proc.stdout.close()


def test_a_runtime_made_in_a_thread_that_ended_keeps_its_zygote():
    # The zygote's parent death signal fires when the thread that started it
    # ends: the zygote must tell that apart from the runtime's death.
    made = []

    def make() -> None:
        rt = Runtime()
        made.append(rt)
        rt.spawn(Agent, "early")  # the zygote is serving before the thread ends

    thread = threading.Thread(target=make)
    thread.start()
    thread.join()
    with made[0] as rt:
        assert rt.spawn(Agent, "late").ask({"op": "ping"}, timeout=30) is None
        assert rt.agents["early"].ask({"op": "ping"}, timeout=30) is None


@pytest.mark.parametrize("how", ["killed", "stopped"])
def test_a_process_an_agent_started_ends_with_the_agent(rt, how):
    ref = rt.spawn(Starter, "starter", restart="temporary")
    sleep_pid = ref.ask("start", timeout=30)
    try:
        assert not _gone(sleep_pid)
        if how == "killed":
            os.kill(pid_of(rt, "starter"), signal.SIGKILL)
        else:
            ref.stop()
        wait_for(lambda: _gone(sleep_pid), timeout=10)
    finally:
        _kill([sleep_pid])


def test_a_process_that_left_its_agents_group_is_reaped_and_ended_with_the_runtime():
    rt = Runtime()
    try:
        ref = rt.spawn(Starter, "starter", restart="temporary")
        zygote = rt._zygote._proc.pid
        sleep_pid = ref.ask("own session", timeout=30)
        os.kill(pid_of(rt, "starter"), signal.SIGKILL)
        # Orphaned, it is the zygote's now (a subreaper), not init's.
        wait_for(lambda: psutil.Process(sleep_pid).ppid() == zygote, timeout=10)
    finally:
        rt.shutdown()
    try:
        wait_for(lambda: _gone(sleep_pid), timeout=10)
    finally:
        _kill([sleep_pid])


def test_agents_die_with_a_killed_zygote():
    rt = Runtime()
    pids: list[int] = []
    try:
        rt.spawn(Agent, "a", restart="temporary")
        pids = [pid_of(rt, "a")]
        os.kill(rt._zygote._proc.pid, signal.SIGKILL)
        wait_for(lambda: all(_gone(pid) for pid in pids), timeout=10)
    finally:
        _kill(pids)
        rt.shutdown()


def test_the_zygote_leaves_a_sigterm_to_its_runtime(rt):
    # `kill %1` or `timeout` signal the runtime's whole process group: the
    # runtime stops its agents cleanly, so the zygote must not end them first.
    ref = rt.spawn(Agent, "a")
    os.kill(rt._zygote._proc.pid, signal.SIGTERM)
    assert rt.spawn(Agent, "b").ask({"op": "ping"}, timeout=30) is None
    assert ref.ask({"op": "ping"}, timeout=30) is None


def test_an_agents_boot_spec_loads_with_nothing_but_what_the_zygote_imported(rt):
    # Every agent is forked from the zygote: what its boot spec needs (the
    # host, the service clients in its context) must be imported there once,
    # not again (and, without bytecode caches, compiled) in each agent.
    rt.spawn(Agent, "a")
    boot = rt._records["a"].boot
    check = textwrap.dedent("""
        import pickle, sys
        from runtime.local._zygote import warm_up
        warm_up()
        before = set(sys.modules)
        pickle.loads(sys.stdin.buffer.read())
        print(" ".join(sorted(set(sys.modules) - before)))
    """)
    out = subprocess.run([sys.executable, "-c", check], input=boot, capture_output=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout.decode().split() == []
