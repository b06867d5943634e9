"""Runtime: process lifecycle, task routing, introspection."""

from __future__ import annotations

import io
import os
import socket
import signal
import subprocess
import sys
import textwrap
import threading
import time

import psutil
import pytest

from actors import ActorDeadError, Agent, EventType, NoCapableAgentError
from conftest import pid_of, wait_for
from runtime import MultiAgentSystem, Runtime


class Worker(Agent):
    capabilities = ["compute"]

    def do_work(self, task):
        time.sleep(task["payload"].get("sleep", 0))
        return {"status": "completed", "output": task["payload"]["n"] * 2, "by": self.agent_id}


class Sleeper(Agent):
    def on_receive(self, message):
        time.sleep(message)
        return message


def test_multi_agent_system_is_the_runtime():
    assert MultiAgentSystem is Runtime


def test_shutdown_reaps_every_agent_process():
    with Runtime() as rt:
        rt.spawn(Worker, "a")
        rt.spawn(Worker, "b")
        pids = [row["pid"] for row in rt.agent_info()]
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    rt.shutdown()  # twice is fine


def test_a_shut_down_runtime_refuses_new_agents():
    rt = Runtime()
    rt.shutdown()
    with pytest.raises(ActorDeadError, match="shut down"):
        rt.spawn(Worker, "late")


def test_agent_processes_exit_by_themselves_when_the_runtime_is_killed(tmp_path):
    script = tmp_path / "team.py"
    script.write_text(textwrap.dedent("""
        import sys, time
        from actors import Agent
        from runtime import Runtime

        class Idle(Agent):
            pass

        rt = Runtime()
        rt.spawn(Idle, "a")
        rt.spawn(Idle, "b")
        print(" ".join(str(row["pid"]) for row in rt.agent_info()), flush=True)
        time.sleep(120)
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

        def gone(pid):
            try:
                return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                return True

        wait_for(lambda: all(gone(pid) for pid in pids), timeout=10)
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()


def test_agent_info_reports_each_process(rt):
    rt.spawn(Worker, "w", capabilities=["compute", "extra"])
    rt.spawn(Sleeper, "s")
    rt.agents["s"].ask(0.3, block=False)
    rt.agents["s"].tell(0)
    rt.agents["s"].tell(0)
    # The busy agent still answers for its mailbox (two tells behind the ask).
    rows = wait_for(lambda: (r := {row["name"]: row for row in rt.agent_info()})["s"]["mailbox"] == 2 and r)
    assert set(rows) == {"w", "s"}
    w = rows["w"]
    assert w["kind"] == "agent" and w["alive"] is True and w["restarts"] == 0
    assert w["capabilities"] == ["compute", "extra"]
    assert w["pid"] != os.getpid() and psutil.pid_exists(w["pid"])
    assert w["rss_bytes"] > 1_000_000 and w["cpu_percent"] >= 0.0
    assert rows["s"]["mailbox"] == 2
    assert w["node"] == socket.gethostname()


def test_submit_task_routes_on_capability(rt):
    rt.spawn(Worker, "w")
    rt.add_agent("other", ["writing"])
    result = rt.submit_task({"id": "t1", "type": "compute", "payload": {"n": 21}})
    assert result["output"] == 42 and result["by"] == "w"
    created = rt.events.get_history(EventType.TASK_CREATED)
    assert created[-1].payload["task_id"] == "t1"


def test_submit_task_without_capable_agent_names_the_capability(rt):
    rt.add_agent("other", ["writing"])
    with pytest.raises(NoCapableAgentError, match="'painting'.*writing"):
        rt.submit_task({"id": "t", "type": "painting"})
    with pytest.raises(ValueError, match="'type'"):
        rt.submit_task({"id": "t"})


def test_submit_task_prefers_the_least_loaded_agent(rt):
    rt.spawn(Worker, "w1")
    rt.spawn(Worker, "w2")
    import threading

    results = []
    slow = threading.Thread(
        target=lambda: results.append(rt.submit_task({"type": "compute", "payload": {"n": 1, "sleep": 1.0}}))
    )
    slow.start()
    wait_for(lambda: rt.state.get("shared", "active_agents") and any(
        e.type is EventType.TASK_STARTED for e in rt.events.get_history(EventType.TASK_STARTED)))
    busy = rt.events.get_history(EventType.TASK_STARTED)[-1].source
    quick = rt.submit_task({"type": "compute", "payload": {"n": 2}})
    assert quick["by"] != busy
    slow.join(30)


def test_map_returns_results_in_input_order_over_all_capable_agents(rt):
    rt.spawn(Worker, "w1")
    rt.spawn(Worker, "w2")
    results = rt.map("compute", [{"n": i, "sleep": 0.01} for i in range(40)])
    assert [r["output"] for r in results] == [i * 2 for i in range(40)]
    assert {r["by"] for r in results} == {"w1", "w2"}


def test_map_can_return_exceptions_in_place(rt):
    rt.spawn(Worker, "w")
    results = rt.map("compute", [{"n": 1}, {}, {"n": 3}], return_exceptions=True)
    assert results[0]["output"] == 2 and results[2]["output"] == 6
    assert isinstance(results[1], KeyError)
    with pytest.raises(KeyError):
        rt.map("compute", [{"n": 1}, {}])


def test_a_crash_is_announced_and_a_permanent_agent_comes_back_under_its_name(rt):
    w = rt.spawn(Worker, "w")
    pid = pid_of(rt, "w")
    os.kill(pid, signal.SIGKILL)
    joined = wait_for(lambda: [e for e in rt.events.get_history(EventType.AGENT_JOINED, source="w")
                               if e.payload["restarts"] == 1])
    left = rt.events.get_history(EventType.AGENT_LEFT, source="w")[-1]
    assert "crashed" in left.payload["reason"] and "SIGKILL" in left.payload["reason"]
    assert joined
    assert w.proxy().do_work({"payload": {"n": 5}}).get(timeout=10)["output"] == 10  # the ref followed
    assert pid_of(rt, "w") != pid and rt.agent_info()[0]["restarts"] == 1


def test_a_temporary_agent_is_not_restarted(rt):
    w = rt.spawn(Worker, "w", restart="temporary")
    os.kill(pid_of(rt, "w"), signal.SIGKILL)
    wait_for(lambda: rt.events.get_history(EventType.AGENT_LEFT, source="w"))
    wait_for(lambda: not w.is_alive())
    with pytest.raises(ActorDeadError):
        w.ask("hi", timeout=10)


def test_imap_reads_payloads_lazily_with_a_bounded_window(rt):
    rt.spawn(Worker, "w1")
    rt.spawn(Worker, "w2")
    pulled = []

    def payloads():
        for i in range(100):
            pulled.append(i)
            yield {"n": i}

    results = rt.imap("compute", payloads())
    first = next(results)
    assert first["output"] == 0
    assert len(pulled) <= 1 + 2 * 2 * 2  # never far ahead of what was consumed
    rest = list(results)
    assert [r["output"] for r in [first, *rest]] == [2 * i for i in range(100)]


def test_imap_unordered_yields_as_tasks_complete(rt):
    rt.spawn(Worker, "w1")
    rt.spawn(Worker, "w2")
    payloads = [{"n": 0, "sleep": 0.5}] + [{"n": i} for i in range(1, 6)]
    outputs = [r["output"] for r in rt.imap("compute", payloads, ordered=False)]
    assert sorted(outputs) == [0, 2, 4, 6, 8, 10] and outputs[0] != 0  # the slow first task came later


def test_imap_without_capable_agents_fails_at_once(rt):
    with pytest.raises(NoCapableAgentError):
        rt.imap("nothing", [1])


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_map_shows_a_progress_bar_with_rate_and_eta_on_a_terminal(rt, monkeypatch):
    rt.spawn(Worker, "w")
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    rt.map("compute", [{"n": i} for i in range(5)], progress=True)
    err = terminal.getvalue()
    assert "5/5" in err and "/s" in err and "ETA" in err


def test_map_draws_no_progress_bar_into_a_file_or_pipe(rt, capsys):
    rt.spawn(Worker, "w")
    rt.map("compute", [{"n": i} for i in range(5)], progress=True)
    assert capsys.readouterr().err == ""


class Stuck(Agent):
    def on_receive(self, message):
        self.ctx.state.set("shared", f"stuck:{self.agent_id}", True)
        time.sleep(message)


def test_shutdown_returns_within_its_timeout_whatever_agents_do():
    rt = Runtime()
    try:
        agents = [rt.spawn(Stuck, f"stuck{i}") for i in range(3)]
        pids = [row["pid"] for row in rt.agent_info()]
        for agent in agents:
            agent.tell(60)
        wait_for(lambda: all(rt.state.get("shared", f"stuck:{a.name}") for a in agents))
    finally:
        started = time.monotonic()
        rt.shutdown(timeout=2)
        took = time.monotonic() - started
    # Its 2 s, then SIGKILL: well under the 6 s of three stops one after
    # another (slack for a loaded machine).
    assert took < 5.5, f"shutdown took {took:.1f} s"
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_short_lived_agents_leave_no_descriptors_threads_or_records_behind(rt):
    class Brief(Agent):  # defined here, it travels by value: no import of this module per agent
        def on_receive(self, message):
            return message

    me = psutil.Process()
    names = iter(range(10**6))

    def cycles(n):
        for _ in range(n):
            agent = rt.spawn(Brief, f"brief{next(names)}")
            assert agent.ask(0, timeout=10) == 0
            assert agent.stop(timeout=10) is True

    def measure():
        return me.num_fds(), threading.active_count(), len(rt._records), len(rt.agent_info())

    cycles(30)  # warm-up
    before = measure()
    cycles(150)
    after = measure()
    assert all(abs(a - b) <= 10 for a, b in zip(after, before)), (before, after)


# The kernel gives a process's signal to one of its threads, normally the
# main one; Python runs the handler in the main thread either way. Taken by
# another thread, a Ctrl-C must still end a wait of the main thread.
SIGNAL_TAKER = {
    "main thread": "",
    "another thread": """
        def take_signals():  # the only thread not blocking SIGINT: the kernel gives it the Ctrl-C
            time.sleep(120)
        threading.Thread(target=take_signals, daemon=True).start()
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # here and in every thread started from now
    """,
}


def _run_interrupted(tmp_path, body: str, taker: str) -> subprocess.CompletedProcess:
    script = tmp_path / "interrupted.py"
    script.write_text(textwrap.dedent("""
        import faulthandler, os, signal, sys, threading, time
        faulthandler.dump_traceback_later(45, exit=True)  # a hang shows every thread's stack
        from actors import Agent
        from runtime import Runtime
    """) + textwrap.dedent(SIGNAL_TAKER[taker]) + textwrap.dedent(body))
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=90,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})


@pytest.mark.parametrize("taker", list(SIGNAL_TAKER))
def test_ctrl_c_while_map_waits_returns_at_once_and_the_runtime_stops_its_agents(tmp_path, taker):
    # A script's user presses Ctrl-C during a batch of long tasks: map stops
    # handing out tasks and raises KeyboardInterrupt promptly, and leaving
    # the `with` block stops the agents (their on_stop runs) without waiting
    # for the tasks in flight.
    started = time.monotonic()
    out = _run_interrupted(tmp_path, """
        class Slow(Agent):
            capabilities = ["slow"]
            def do_work(self, task):
                print(f"working {task['payload']}", flush=True)
                time.sleep(60)
            def on_stop(self):
                print("on_stop ran", flush=True)

        started = None
        try:
            with Runtime() as rt:
                for i in range(2):
                    rt.spawn(Slow, f"slow{i}")
                def press_ctrl_c():  # once both agents are in a task
                    while sum(k.endswith(":status") for k in rt.state.list_keys("shared")) < 2:
                        time.sleep(0.01)
                    os.kill(os.getpid(), signal.SIGINT)
                threading.Thread(target=press_ctrl_c, daemon=True).start()
                try:
                    rt.map("slow", range(20))
                except KeyboardInterrupt:
                    started = time.monotonic()
                    print("map raised KeyboardInterrupt", flush=True)
                    raise
        except KeyboardInterrupt:
            print(f"runtime shut down in {time.monotonic() - started:.1f} s", flush=True)
    """, taker)
    took = time.monotonic() - started
    assert out.returncode == 0, out.stderr
    assert "map raised KeyboardInterrupt" in out.stdout
    assert out.stdout.count("on_stop ran") == 2
    assert out.stdout.count("working") <= 4  # no task handed out after the Ctrl-C
    assert took < 20, out.stdout
    shut = float(out.stdout.split("runtime shut down in ")[1].split()[0])
    assert shut < 5, out.stdout


@pytest.mark.parametrize("taker", list(SIGNAL_TAKER))
def test_ctrl_c_ends_a_blocking_ask_without_timeout(tmp_path, taker):
    out = _run_interrupted(tmp_path, """
        class Slow(Agent):
            def on_receive(self, message):
                self.ctx.state.set("shared", "busy", True)
                time.sleep(60)

        try:
            with Runtime() as rt:
                ref = rt.spawn(Slow, "slow")
                def press_ctrl_c():  # once the agent is in its handler
                    while not rt.state.get("shared", "busy"):
                        time.sleep(0.01)
                    os.kill(os.getpid(), signal.SIGINT)
                threading.Thread(target=press_ctrl_c, daemon=True).start()
                try:
                    ref.ask("work")
                except KeyboardInterrupt:
                    print("ask raised KeyboardInterrupt", flush=True)
                    raise  # out of the `with` block as interrupted: the agent's task is abandoned
        except KeyboardInterrupt:
            pass
    """, taker)
    assert out.returncode == 0, out.stderr
    assert "ask raised KeyboardInterrupt" in out.stdout
