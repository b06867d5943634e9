"""Durable agent state: `snapshot()` saved after each message, `restore()` at start."""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import sqlite3
import threading
import time

import pytest

from actors import Agent, NamespacePermissionError
from actors._durable import SqliteBackend
from runtime import Runtime
from conftest import pid_of, wait_for


class Counter(Agent):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.started_at = None

    def on_start(self) -> None:
        self.started_at = self.count  # restore ran before on_start

    def snapshot(self) -> dict:
        return {"count": self.count}

    def restore(self, snapshot: dict) -> None:
        self.count = snapshot["count"]

    def on_receive(self, message):
        if message == "inc":
            self.count += 1
        elif message == "boom":
            raise RuntimeError("boom")
        return {"count": self.count, "started_at": self.started_at, "pid": os.getpid()}


class AsyncCounter(Counter):
    max_concurrency = 4

    async def on_receive(self, message):
        await asyncio.sleep(0)
        if message == "inc":
            self.count += 1
        return {"count": self.count, "started_at": self.started_at, "pid": os.getpid()}


def _restarted_as(rt, name, old_pid):
    try:
        return rt.agents[name].ask("get", timeout=5)["pid"] != old_pid
    except Exception:
        return False


def _restarted(rt, old_pid):
    return lambda: _restarted_as(rt, "c", old_pid)


@pytest.fixture(params=["in memory", "with a state file"])
def any_rt(request, tmp_path):
    """A runtime whose store keeps snapshots in memory (told), or in a
    state file (acknowledged once committed: `runtime.wire._journal`)."""
    runtime = Runtime() if request.param == "in memory" else Runtime(state_path=str(tmp_path / "state.db"))
    try:
        yield runtime
    finally:
        runtime.shutdown()


@pytest.mark.parametrize("cls", [Counter, AsyncCounter])
def test_a_counter_sigkilled_after_50_acknowledged_increments_comes_back_at_50(any_rt, cls):
    rt = any_rt
    ref = rt.spawn(cls, "c")
    for i in range(50):
        assert ref.ask("inc", timeout=10)["count"] == i + 1
    pid = pid_of(rt, "c")
    os.kill(pid, signal.SIGKILL)
    wait_for(_restarted(rt, pid))
    state = ref.ask("get", timeout=10)
    assert state["count"] == 50
    assert state["started_at"] == 50


def test_a_counter_killed_right_after_each_acknowledged_increment_loses_none(rt):
    ref = rt.spawn(Counter, "c", max_restarts=50, restart_window=1.0)
    for i in range(6):
        assert ref.ask("inc", timeout=10)["count"] == i + 1  # the restored count, plus one
        pid = pid_of(rt, "c")
        os.kill(pid, signal.SIGKILL)
        wait_for(_restarted(rt, pid))


def test_four_agents_asked_at_once_with_a_state_file_each_come_back_at_their_own_count(tmp_path):
    # Their snapshots share commits (`runtime.wire._journal`): each must
    # still be acknowledged to, and restored for, its own agent.
    with Runtime(state_path=str(tmp_path / "state.db")) as rt:
        refs = {f"c{i}": rt.spawn(Counter, f"c{i}") for i in range(4)}
        counts = {name: 20 + 10 * i for i, name in enumerate(refs)}

        def hammer(name):
            for n in range(counts[name]):
                assert refs[name].ask("inc", timeout=30)["count"] == n + 1

        threads = [threading.Thread(target=hammer, args=(name,)) for name in refs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        pids = {name: pid_of(rt, name) for name in refs}
        for pid in pids.values():
            os.kill(pid, signal.SIGKILL)
        for name, pid in pids.items():
            wait_for(lambda name=name, pid=pid: _restarted_as(rt, name, pid))
        assert {name: ref.ask("get", timeout=10)["count"] for name, ref in refs.items()} == counts


def test_a_runtime_shut_down_while_its_agents_are_asked_keeps_every_acknowledged_change(tmp_path):
    path = str(tmp_path / "state.db")
    rt = Runtime(state_path=path)
    refs = [rt.spawn(Counter, f"c{i}") for i in range(4)]
    acknowledged = dict.fromkeys(range(4), 0)

    def hammer(i):
        try:
            while True:
                acknowledged[i] = refs[i].ask("inc", timeout=30)["count"]
        except Exception:  # the runtime went away under this ask
            return

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    wait_for(lambda: min(acknowledged.values()) >= 20)
    rt.shutdown()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    with Runtime(state_path=path) as again:
        restored = {i: again.spawn(Counter, f"c{i}").ask("get", timeout=10)["count"] for i in range(4)}
    for i, count in acknowledged.items():
        assert count <= restored[i] <= count + 1  # at most the change in flight at the shutdown, unanswered


def test_a_snapshot_the_state_file_could_not_commit_fails_its_ask_and_the_next_saves_it(tmp_path, monkeypatch):
    with Runtime(state_path=str(tmp_path / "state.db")) as rt:
        ref = rt.spawn(Counter, "c")
        assert ref.ask("inc", timeout=10)["count"] == 1
        commit, failing = SqliteBackend.commit, threading.Event()

        def flaky(self, *args):
            if failing.is_set():
                failing.clear()
                raise sqlite3.OperationalError("disk I/O error")
            return commit(self, *args)

        monkeypatch.setattr(SqliteBackend, "commit", flaky)
        failing.set()
        with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
            ref.ask("inc", timeout=10)
        assert ref.ask("inc", timeout=10)["count"] == 3  # saved now, with the change the failed one made
        pid = pid_of(rt, "c")
        os.kill(pid, signal.SIGKILL)
        wait_for(_restarted(rt, pid))
        assert ref.ask("get", timeout=10)["count"] == 3


def test_a_snapshot_still_unread_when_its_agent_dies_is_restored_by_the_restart(rt, monkeypatch):
    # In memory, a snapshot is told before the reply: here its frame is
    # held up in the runtime's reader for a second, past the agent's death
    # and the restart's fork, and the restore must still see it.
    ref = rt.spawn(Counter, "c")
    ref.ask("inc", timeout=10)
    node, deliver, armed = rt._node, rt._node._deliver_snapshot, threading.Event()

    def slow_delivery(frame, sender):
        if armed.is_set() and sender == "c":
            armed.clear()
            time.sleep(1.0)
        deliver(frame, sender)

    monkeypatch.setattr(node, "_deliver_snapshot", slow_delivery)
    armed.set()
    assert ref.ask("inc", timeout=10)["count"] == 2
    pid = pid_of(rt, "c")
    os.kill(pid, signal.SIGKILL)
    wait_for(_restarted(rt, pid))
    assert ref.ask("get", timeout=10)["count"] == 2
    assert not armed.is_set()


def test_a_stopped_agent_spawned_again_in_the_same_runtime_comes_back_where_it_was(rt):
    ref = rt.spawn(Counter, "c")
    for _ in range(3):
        ref.ask("inc", timeout=10)
    ref.stop()
    assert rt.spawn(Counter, "c").ask("get", timeout=10)["count"] == 3


def test_state_survives_a_runtime_restart_on_the_same_file(tmp_path):
    path = str(tmp_path / "state.db")
    with Runtime(state_path=path) as rt:
        ref = rt.spawn(Counter, "c")
        for _ in range(7):
            ref.ask("inc", timeout=10)
    with Runtime(state_path=path) as rt:
        assert rt.spawn(Counter, "c").ask("get", timeout=10)["count"] == 7
        assert rt.spawn(Counter, "other").ask("get", timeout=10)["count"] == 0


def _snapshot_version(rt, name):
    # In memory, a snapshot is told to the store before the reply, so a
    # third process may read the one before for a moment: poll.
    current = rt.state.get_version("_snapshots", name)
    return None if current is None else current.version


def test_a_handler_that_raises_saves_nothing_and_an_unchanged_snapshot_is_not_written(rt):
    ref = rt.spawn(Counter, "c")
    ref.ask("inc", timeout=10)
    wait_for(lambda: _snapshot_version(rt, "c") is not None)
    version = _snapshot_version(rt, "c")
    for _ in range(3):
        ref.ask("get", timeout=10)
    with pytest.raises(RuntimeError):
        ref.ask("boom", timeout=10)
    ref.ask("inc", timeout=10)
    wait_for(lambda: _snapshot_version(rt, "c") != version)
    assert _snapshot_version(rt, "c") == version + 1  # one write: the gets and the failure wrote none


def test_snapshots_keep_out_of_history_and_only_their_agent_writes_them(rt):
    ref = rt.spawn(Counter, "c")
    ref.ask("inc", timeout=10)
    assert not [row for row in rt.state.history(limit=1000) if row["namespace"] == "_snapshots"]
    with pytest.raises(NamespacePermissionError):
        rt.store._call("save_snapshot", "c", b"forged")


class Forger(Agent):
    def forge(self) -> None:
        self.ctx.store._call("save_snapshot", "c", b"forged")


    def tell_snapshot(self, blob: bytes) -> None:
        self.ctx.store._ref.tell(blob)  # how snapshots are told: the store takes the sender's name


def test_an_agent_cannot_write_another_agents_snapshot(rt):
    ref = rt.spawn(Counter, "c")
    ref.ask("inc", timeout=10)
    forger = rt.spawn(Forger, "forger")
    with pytest.raises(NamespacePermissionError):
        forger.proxy().forge().get(timeout=10)
    forger.proxy().tell_snapshot(b"forged").get(timeout=10)
    wait_for(lambda: rt.state.get("_snapshots", "forger") == b"forged")
    assert pickle.loads(rt.state.get("_snapshots", "c")) == {"count": 1}


def test_a_snapshot_frame_from_a_process_that_is_no_agent_keeps_nothing(rt):
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    rt.spawn(Counter, "c").ask("inc", timeout=10)
    address, key = rt._node.address, rt._node.authkey.hex()
    script = textwrap.dedent(f"""
        import pickle, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
        from runtime.wire._channel import Channel
        from runtime.wire._frames import SNAPSHOT, encode
        channel = Channel({address!r}, bytes.fromhex({key!r}))
        channel.send(encode(SNAPSHOT, 0, b"_state", pickle.dumps(b"forged", pickle.HIGHEST_PROTOCOL)))
        channel.close()
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])  # has the key, but the registry doesn't know it
    assert proc.wait(timeout=60) == 0
    assert rt._node.wait_drained(proc.pid, 30)  # everything it sent was read
    wait_for(lambda: rt.state.get("_snapshots", "c") is not None)
    assert rt.state.list_keys("_snapshots") == ["c"]


def test_a_class_with_snapshot_but_no_restore_is_refused():
    with pytest.raises(TypeError, match="restore"):
        type("Half", (Agent,), {"snapshot": lambda self: 1})
