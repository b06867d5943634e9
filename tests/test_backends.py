"""The contract's main behaviours, on the local backend and on Ray alike."""

from __future__ import annotations

import os
import signal
import threading

import pykka
import pytest

from actors import ActorDeadError, Agent, AskTimeout, EventType, Message, MessageSerializationError
from conftest import wait_for


class Worker(Agent):
    capabilities = ["compute"]

    def on_start(self):
        self.count = 0

    def on_receive(self, message):
        if message == "pid":
            return os.getpid()
        if message == "count":
            return self.count
        if message == "fail":
            raise ValueError("asked to fail")
        if isinstance(message, tuple) and message[0] == "sleep":
            import time

            time.sleep(message[1])
            return "slept"
        self.count += 1
        return {"echo": message}

    def do_work(self, task):
        return {"status": "completed", "output": sum(task["payload"]["data"]), "by": self.agent_id}

    def add_many(self, key, n):
        for _ in range(n):
            self.ctx.state.update("shared", key, lambda v: (v or 0) + 1)
        return n

    def locked_increments(self, n):
        for _ in range(n):
            with self.ctx.sync.get_lock("counter"):
                value = self.ctx.state.get("shared", "unsafe") or 0
                self.ctx.state.set("shared", "unsafe", value + 1)
        return n

    def grab(self, lock_id):
        return self.ctx.sync.get_lock(lock_id).acquire(timeout=10)

    def ask_peer(self, ref, message):
        return ref.ask(message, timeout=30)

    def task_records(self, task_ids):
        state = self.ctx.state
        return [(state.get("shared", f"task:{t}:status"), state.get("shared", f"task:{t}:completed"))
                for t in task_ids]


class Listener(Agent):
    def on_start(self):
        self.seen = []
        self.ctx.comm.pub_sub.subscribe("news", lambda m: self.seen.append(m.payload))

    def handle_request(self, message):
        return {"from": message.sender, "got": message.payload}

    def get_seen(self):
        return list(self.seen)


def test_ask_tell_proxy_keep_order_and_pykka_semantics(any_rt):
    w = any_rt.spawn(Worker, "w")
    for i in range(20):
        w.tell(i)
    assert w.ask("count", timeout=60) == 20
    assert w.proxy().do_work({"payload": {"data": [1, 2]}}).get(timeout=60)["output"] == 3
    future = w.ask({"x": 1}, block=False)
    assert isinstance(future, pykka.Future) and future.get(timeout=60) == {"echo": {"x": 1}}


def test_errors_are_the_same_on_both_backends(any_rt):
    w = any_rt.spawn(Worker, "w", restart="temporary")
    with pytest.raises(ValueError, match="asked to fail"):
        w.ask("fail", timeout=60)
    with pytest.raises(AskTimeout):
        w.ask(("sleep", 1), timeout=0.2)
    with pytest.raises(MessageSerializationError):
        w.ask(threading.Lock(), timeout=60)
    with pytest.raises(ActorDeadError):
        any_rt.get_agent("ghost").ask("hi", timeout=60)
    assert w.stop(timeout=60) is True
    wait_for(lambda: not w.is_alive(), timeout=60)
    with pytest.raises(ActorDeadError):
        w.ask("count", timeout=60)


def test_an_agent_spawned_without_a_name_gets_one(any_rt):
    ref = any_rt.spawn(Worker)
    assert ref.name.startswith("worker-")
    assert ref.name in any_rt.agents
    assert ref.ask("hi", timeout=60) == {"echo": "hi"}


def test_refs_travel_to_other_agents(any_rt):
    a = any_rt.spawn(Worker, "a")
    b = any_rt.spawn(Worker, "b")
    assert a.proxy().ask_peer(b, "hello").get(timeout=60) == {"echo": "hello"}


def test_state_from_four_agents_loses_no_update(any_rt):
    agents = [any_rt.spawn(Worker, f"w{i}") for i in range(4)]
    futures = [a.proxy().add_many("n", 25) for a in agents]
    assert [f.get(timeout=300) for f in futures] == [25] * 4
    assert any_rt.state.get("shared", "n") == 100


def test_locks_serialize_agents_and_are_released_when_the_holder_dies(any_rt):
    agents = [any_rt.spawn(Worker, f"w{i}") for i in range(2)]
    assert [f.get(timeout=300) for f in [a.proxy().locked_increments(15) for a in agents]] == [15, 15]
    assert any_rt.state.get("shared", "unsafe") == 30
    holder = any_rt.spawn(Worker, "holder", restart="temporary")
    assert holder.proxy().grab("res").get(timeout=60) is True
    os.kill(holder.ask("pid", timeout=60), signal.SIGKILL)
    assert any_rt.sync.get_lock("res").acquire("next", timeout=60) is True


def test_events_reactive_state_and_handlers_in_this_process(any_rt):
    got = []
    any_rt.events.subscribe(EventType.TASK_COMPLETED, lambda e: got.append(e.payload["task_id"]))
    any_rt.spawn(Worker, "w")
    assert "w" in any_rt.state.get("shared", "active_agents")
    result = any_rt.submit_task({"id": "t1", "type": "compute", "payload": {"data": [1, 2, 3]}})
    assert result["output"] == 6
    wait_for(lambda: any_rt.state.get("shared", "task:t1:completed") is True, timeout=60)
    wait_for(lambda: got == ["t1"], timeout=60)
    assert [r["output"] for r in any_rt.map("compute", [{"data": [i]} for i in range(6)])] == list(range(6))


def test_a_maps_records_events_and_locks_are_all_there_for_any_process_when_it_returns(any_rt):
    workers = [any_rt.spawn(Worker, f"w{i}") for i in range(2)]
    results = any_rt.map("compute", [{"data": [i]} for i in range(100)])
    assert [r["output"] for r in results] == list(range(100))
    # read at once, from this process and from an agent's: no waiting
    completed = any_rt.events.get_history(EventType.TASK_COMPLETED, limit=1000)
    ids = [e.payload["task_id"] for e in completed]
    assert len(set(ids)) == 100
    started = {e.payload["task_id"] for e in any_rt.events.get_history(EventType.TASK_STARTED, limit=1000)}
    assert started == set(ids)
    assert all(any_rt.state.get("shared", f"task:{t}:status") == "completed" for t in ids[-20:])
    assert workers[0].proxy().task_records(ids).get(timeout=60) == [("completed", True)] * 100
    for task_id in ids[-10:]:  # every task's lock was given back
        lock = any_rt.sync.get_lock(f"task:{task_id}")
        assert lock.acquire("runtime", timeout=5) is True
        lock.release("runtime")


def test_request_reply_and_pub_sub_reach_agents(any_rt):
    listener = any_rt.spawn(Listener, "listener")
    reply = any_rt.comm.request_reply.request("me", "listener", "ping", timeout=60)
    assert reply == {"from": "me", "got": "ping"}
    assert listener.ask(Message(sender="x", payload=1), timeout=60)["got"] == 1
    assert any_rt.comm.pub_sub.publish("me", "news", "hello") == 1
    wait_for(lambda: listener.proxy().get_seen().get(timeout=60) == ["hello"], timeout=60)


def test_a_killed_agent_is_announced_restarted_and_followed_by_its_refs(any_rt):
    w = any_rt.spawn(Worker, "w")
    pid = w.ask("pid", timeout=60)
    os.kill(pid, signal.SIGKILL)

    def restarted():
        return [e for e in any_rt.events.get_history(EventType.AGENT_JOINED, source="w")
                if e.payload["restarts"] == 1]

    wait_for(restarted, timeout=120)
    left = any_rt.events.get_history(EventType.AGENT_LEFT, source="w")[-1]
    assert left.payload["reason"].startswith("crashed")
    assert wait_for(lambda: _pid_or_none(w) not in (None, pid), timeout=60)
    row = any_rt.agent_info()[0]
    assert row["restarts"] == 1 and isinstance(row["node"], str) and row["node"]


def _pid_or_none(ref):
    # On Ray the first call through a ref whose host died may still go to
    # the dead host (and fail); the ref then follows the name.
    try:
        return ref.ask("pid", timeout=60)
    except ActorDeadError:
        return None


def test_the_supervisor_gives_up_after_too_many_restarts(any_rt):
    w = any_rt.spawn(Worker, "w", max_restarts=1, restart_window=60.0)
    for restarts in (1, 2):
        os.kill(wait_for(lambda: _pid_or_none(w), timeout=60), signal.SIGKILL)
        if restarts == 1:
            wait_for(lambda: any(e.payload["restarts"] == 1 for e in
                                 any_rt.events.get_history(EventType.AGENT_JOINED, source="w")), timeout=120)
    wait_for(lambda: any(e.payload["reason"].startswith("gave up") for e in
                         any_rt.events.get_history(EventType.AGENT_LEFT, source="w")), timeout=120)
    with pytest.raises(ActorDeadError):
        w.ask("pid", timeout=60)


def test_without_ray_the_ray_backend_says_how_to_install_it(monkeypatch):
    import sys

    from runtime import Runtime

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(ImportError, match=r"pip install 'actors-runtime\[ray\]'"):
        Runtime(backend="ray")


def test_replicated_state_and_streams_work_on_both_backends(any_rt):
    cache = any_rt.replicated_state("cache", replicas=2, quorum=2)
    assert cache.set_replicated("k", "v") is True and cache.get("k") == "v"
    any_rt.comm.streaming.create_stream("s", maxsize=2)
    for i in range(3):
        threading.Thread(target=any_rt.comm.streaming.send, args=("s", i), daemon=True).start()
    got = sorted(any_rt.comm.streaming.receive("s", timeout=60) for _ in range(3))
    assert got == [0, 1, 2]


def test_a_clean_ray_shutdown_prints_no_worker_died_paragraph(tmp_path):
    # Hosts leave through Ray (exit_actor), so the raylet reports no worker
    # that "died ... SYSTEM_ERROR ... OOM killer" on a clean shutdown.
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    pytest.importorskip("ray")
    script = tmp_path / "tiny.py"
    script.write_text(textwrap.dedent("""
        from actors import Agent
        from runtime import Runtime

        class Echo(Agent):
            def on_receive(self, message):
                return message

        with Runtime(backend="ray", address="local", num_cpus=1) as rt:  # a Ray of its own
            print(rt.spawn(Echo, "echo").ask("hi", timeout=60), flush=True)
            rt.spawn(Echo, "other").stop()
    """))
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=110,
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(root)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "hi"
    assert "SYSTEM_ERROR" not in out.stderr and "worker died" not in out.stderr.lower(), out.stderr


class Tally(Agent):
    """A durable counter: its count survives a SIGKILL on either backend."""

    count = 0

    def snapshot(self):
        return self.count

    def restore(self, snapshot):
        self.count = snapshot

    def on_receive(self, message):
        if message == "pid":
            return os.getpid()
        self.count += 1
        return self.count


def test_a_durable_agent_comes_back_with_its_acknowledged_state(any_rt):
    tally = any_rt.spawn(Tally, "tally")
    assert [tally.ask("inc", timeout=60) for _ in range(5)] == [1, 2, 3, 4, 5]
    pid = tally.ask("pid", timeout=60)
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: _pid_or_none(tally) not in (None, pid), timeout=120)
    assert tally.ask("inc", timeout=60) == 6
