"""Coordinated tasks in batches: chunked map, retries, records kept in a window."""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
import time

import pytest

from actors import Agent, EventType
from conftest import wait_for
import actors._deferral
import runtime._map
import runtime._tasks
from runtime import Runtime


class Doubler(Agent):
    capabilities = ["double"]

    def do_work(self, task):
        n = task["payload"]
        if n == "boom":
            raise ValueError("can't double boom")
        return n * 2


class Committer(Agent):
    """Commits each payload once by key (expected_version=0); the first agent
    to reach payload `kill_at` SIGKILLs its own process in mid-chunk."""

    capabilities = ["commit"]

    def do_work(self, task):
        n, kill_at = task["payload"]
        committed = self.ctx.state.set("shared", f"done:{n}", self.agent_id, expected_version=0)
        if n == kill_at and self.ctx.store.set("killed", self.agent_id, expected_version=0):
            os.kill(os.getpid(), signal.SIGKILL)
        return {"n": n, "committed": committed}


class SlowToRestart(Agent):
    """Dies under its first task; each later start takes `RESTART_SECONDS`."""

    capabilities = ["phoenix"]

    def on_start(self):
        if not self.ctx.store.set("phoenix:first-start", True, expected_version=0):
            time.sleep(RESTART_SECONDS)  # a slow start, as a Ray actor's on a loaded cluster

    def do_work(self, task):
        if self.ctx.store.set("phoenix:died", True, expected_version=0):
            os.kill(os.getpid(), signal.SIGKILL)
        return task["payload"]


RESTART_SECONDS = 1.0


class OwnExecute(Agent):
    capabilities = ["own"]

    def execute_task(self, task):
        return {"via": "own", "n": super().execute_task(task)}

    def do_work(self, task):
        return task["payload"] + 1


def task_keys(rt):
    return [k for k in rt.state.list_keys("shared") if k.startswith("task:")]


def test_a_map_of_twenty_thousand_tasks_returns_every_result_in_order(rt):
    rt.spawn(Doubler, "d1")
    rt.spawn(Doubler, "d2")
    results = rt.map("double", range(20_000))
    assert results == [2 * i for i in range(20_000)]
    assert rt.sync.statistics()["locks"] == 0  # every task lock was given back, and left nothing behind


def test_exceptions_inside_chunks_come_back_in_place_or_raise(rt):
    rt.spawn(Doubler, "d1")
    rt.spawn(Doubler, "d2")
    payloads = [i if i % 97 else "boom" for i in range(1, 600)]
    results = rt.map("double", payloads, return_exceptions=True)
    for payload, result in zip(payloads, results):
        if payload == "boom":
            assert isinstance(result, ValueError) and "can't double boom" in str(result)
        else:
            assert result == 2 * payload
    with pytest.raises(ValueError, match="can't double boom"):
        rt.map("double", payloads)
    assert rt.map("double", [1, "boom", 3], return_exceptions=True)[::2] == [2, 6]
    failed = rt.events.get_history(EventType.TASK_FAILED, limit=1)[0]  # recent: the history is bounded
    assert "ValueError: can't double boom" in failed.payload["error"]
    assert rt.state.get("shared", f"task:{failed.payload['task_id']}:status") == "failed"


def test_an_agent_killed_mid_chunk_loses_no_task_and_commits_none_twice(rt):
    rt.spawn(Committer, "c1")
    rt.spawn(Committer, "c2")
    n = 800
    results = rt.map("commit", [(i, 500) for i in range(n)], retries=3)
    assert [r["n"] for r in results] == list(range(n))  # none lost, in order
    assert rt.store.get("killed") in ("c1", "c2")  # an agent did die under a chunk
    for i in range(n):
        assert rt.state.get_version("shared", f"done:{i}").version == 1
    results_kept = [k for k in task_keys(rt) if k.endswith(":result")]
    assert len(results_kept) == n
    assert all(rt.state.get_version("shared", k).version == 1 for k in results_kept)  # recorded once each
    assert rt.sync.statistics()["locks"] == 0


def test_a_retried_task_waits_for_its_agent_to_restart_however_long_the_restart_takes(rt, monkeypatch):
    for module in (runtime._tasks, runtime._map):  # submit_task's retries, and map's
        monkeypatch.setattr(module, "RETRY_WAIT", RESTART_SECONDS / 5)  # far shorter than the restart
    rt.spawn(SlowToRestart, "phoenix")
    assert rt.submit_task({"type": "phoenix", "payload": 42}, retries=2) == 42
    assert rt.map("phoenix", [1, 2, 3], retries=2) == [1, 2, 3]
    assert rt.agent_info()[0]["restarts"] == 1


def test_a_task_whose_agent_died_fails_once_its_retries_are_spent():
    with Runtime() as rt:
        rt.spawn(Committer, "c1", restart="temporary")
        results = rt.map("commit", [(i, 3) for i in range(6)], retries=0, return_exceptions=True)
        assert any(isinstance(r, Exception) for r in results)
        assert rt.sync.statistics()["locks"] == 0


def test_task_records_keeps_only_the_most_recent_tasks():
    with Runtime(task_records=5) as rt:
        rt.spawn(Doubler, "d")
        assert rt.map("double", range(300)) == [2 * i for i in range(300)]
        keys = task_keys(rt)
        assert len(keys) == 15  # status, result, completed for each of the last 5 tasks
        ids = {k.split(":")[1] for k in keys}
        assert len(ids) == 5
        for task_id in ids:
            assert rt.state.get("shared", f"task:{task_id}:status") == "completed"
            assert rt.state.get("shared", f"task:{task_id}:completed") is True
        assert rt.submit_task({"id": "last", "type": "double", "payload": 21}) == 42
        assert rt.state.get("shared", "task:last:result") == 42
        assert len(task_keys(rt)) == 15


def test_task_records_none_keeps_every_record_and_bad_values_are_refused():
    with Runtime(task_records=None) as rt:
        rt.spawn(Doubler, "d")
        rt.map("double", range(40))
        assert len(task_keys(rt)) == 3 * 40
    with pytest.raises(ValueError, match="task_records"):
        Runtime(task_records=-1)


def test_recent_tasks_keep_their_records_and_events_written_by_their_agent(rt):
    rt.spawn(Doubler, "d1")
    assert rt.submit_task({"id": "s1", "type": "double", "payload": 4}) == 8
    version = rt.state.get_version("shared", "task:s1:result")
    assert version.value == 8 and version.updated_by == "d1"
    assert rt.state.get_version("shared", "task:s1:status").value == "completed"
    assert rt.state.get("shared", "task:s1:completed") is True
    kinds = [e.type for e in rt.events.get_history(limit=1000) if e.payload.get("task_id") == "s1"]
    assert kinds == [EventType.TASK_CREATED, EventType.TASK_STARTED, EventType.TASK_COMPLETED]
    rt.map("double", [1, 2, 3])
    done = rt.events.get_history(EventType.TASK_COMPLETED, limit=3)
    for event in done:
        task_id = event.payload["task_id"]
        assert event.source == "d1"
        assert rt.state.get_version("shared", f"task:{task_id}:result").updated_by == "d1"
        assert rt.state.get("shared", f"task:{task_id}:status") == "completed"


def test_a_submitted_tasks_records_events_and_free_lock_are_there_when_submit_returns(rt, monkeypatch):
    # The end's records are written while the next task travels, or by the
    # timer: hold the timer off, and whoever looks must still find them.
    monkeypatch.setattr(actors._deferral, "CARRY", 60.0)
    rt.spawn(Doubler, "d1")
    heard = []
    rt.events.subscribe(EventType.TASK_COMPLETED, lambda event: heard.append(event.payload["task_id"]))
    for n in range(20):
        assert rt.submit_task({"id": f"now-{n}", "type": "double", "payload": n}) == 2 * n
        assert rt.state.get("shared", f"task:now-{n}:result") == 2 * n
        [last] = rt.events.get_history(EventType.TASK_COMPLETED, limit=1)
        assert last.payload == {"task_id": f"now-{n}", "result": 2 * n}
        assert rt.sync.get_lock(f"task:now-{n}").acquire("after", timeout=0)
    wait_for(lambda: len(heard) == 20)


def test_a_lone_submitted_tasks_end_reaches_its_subscribers_without_anything_after_it(rt):
    rt.spawn(Doubler, "d1")
    heard = []
    rt.events.subscribe(EventType.TASK_COMPLETED, lambda event: heard.append(event.payload["task_id"]))
    assert rt.submit_task({"id": "lone", "type": "double", "payload": 3}) == 6
    wait_for(lambda: heard == ["lone"])


def test_a_task_waits_for_its_lock_held_by_someone_else_and_its_start_is_heard_meanwhile(rt):
    rt.spawn(Doubler, "d1")
    heard = []
    rt.events.subscribe(EventType.TASK_STARTED, lambda event: heard.append(event.payload["task_id"]))
    lock = rt.sync.get_lock("task:held")
    assert lock.acquire("someone", timeout=5)
    results = []
    worker = threading.Thread(
        target=lambda: results.append(rt.submit_task({"id": "held", "type": "double", "payload": 1})))
    worker.start()
    wait_for(lambda: rt.state.get("shared", "task:held:status") == "in_progress")
    # The router defers a chunk's start while the chunk travels (`defer_tells`):
    # never for as long as a lock wait.
    wait_for(lambda: "held" in heard)
    assert lock.statistics().waiting == ("d1",) and not results  # parked behind the holder
    assert lock.release("someone")
    worker.join(30)
    assert results == [2] and lock.holder() is None


def test_an_agent_that_overrides_execute_task_gets_its_map_tasks_through_it(rt):
    rt.spawn(OwnExecute, "o")
    assert rt.map("own", [1, 2, 3]) == [{"via": "own", "n": n + 1} for n in (1, 2, 3)]
    assert rt.submit_task({"id": "o1", "type": "own", "payload": 9}) == {"via": "own", "n": 10}
    assert rt.state.get_version("shared", "task:o1:result").version == 1


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_counts_every_task_of_a_chunked_map(rt, monkeypatch):
    rt.spawn(Doubler, "d")
    terminal = _Terminal()  # the bar is drawn on a terminal only
    monkeypatch.setattr(sys, "stderr", terminal)
    rt.map("double", range(500), progress=True)
    err = terminal.getvalue()
    assert "500/500" in err and "/s" in err and "ETA" in err
