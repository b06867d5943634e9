"""Agents: lifecycle hooks, the built-in coordinated behaviour, requests."""

from __future__ import annotations

import os

import pytest

from actors import Agent, AgentStartError, EventType, Message
from conftest import wait_for


class Worker(Agent):
    capabilities = ["compute"]

    def on_start(self):
        self.started_in = os.getpid()

    def do_work(self, task):
        return {"status": "completed", "output": sum(task["payload"]["data"])}

    def on_receive(self, message):
        return {"echo": message}

    def where(self):
        return {"pid": os.getpid(), "started_in": self.started_in, "ctx_id": self.ctx.agent_id}


class FailsToStart(Agent):
    def on_start(self):
        raise RuntimeError("no database")


class FailsInInit(Agent):
    def __init__(self):
        super().__init__()
        raise ValueError("bad config")


class ExitsDuringStart(Agent):
    def on_start(self):
        os._exit(7)


class Recorder(Agent):
    """Appends to a file on stop, so a test can see that on_stop ran."""

    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_stop(self):
        with open(self.path, "a") as f:
            f.write(f"{self.agent_id} stopped\n")


class Broken(Agent):
    capabilities = ["compute"]

    def do_work(self, task):
        raise ValueError(f"can't do {task['id']}")


def test_each_agent_runs_in_a_process_of_its_own_and_on_start_runs_there(rt):
    a = rt.spawn(Worker, "a")
    b = rt.spawn(Worker, "b")
    where_a = a.proxy().where().get(timeout=10)
    where_b = b.proxy().where().get(timeout=10)
    assert where_a["pid"] != os.getpid() != where_b["pid"]
    assert where_a["pid"] != where_b["pid"]
    assert where_a["started_in"] == where_a["pid"]
    assert where_a["ctx_id"] == "a"


def test_spawn_raises_what_on_start_raised_and_leaves_no_process(rt):
    with pytest.raises(RuntimeError, match="no database"):
        rt.spawn(FailsToStart, "f")
    assert "f" not in rt.agents


def test_spawn_raises_what_init_raised(rt):
    with pytest.raises(ValueError, match="bad config"):
        rt.spawn(FailsInInit, "f")


def test_spawn_reports_a_process_that_exits_during_start(rt):
    with pytest.raises(AgentStartError, match="exited with code 7"):
        rt.spawn(ExitsDuringStart, "x")


def test_spawn_refuses_what_is_not_an_agent_and_duplicate_names(rt):
    with pytest.raises(TypeError, match="subclass of actors.Agent"):
        rt.spawn(dict, "d")
    rt.spawn(Worker, "w")
    with pytest.raises(ValueError, match="already running"):
        rt.spawn(Worker, "w")
    with pytest.raises(ValueError, match="restart must be one of"):
        rt.spawn(Worker, "w2", restart="sometimes")


def test_execute_task_records_progress_in_shared_state_and_events(rt):
    w = rt.spawn(Worker, "w")
    result = w.proxy().execute_task({"id": "t1", "type": "compute", "payload": {"data": [1, 2, 3]}}).get(timeout=10)
    assert result == {"status": "completed", "output": 6}
    assert rt.state.get("shared", "task:t1:result") == result
    assert rt.state.get("shared", "task:t1:status") == "completed"
    wait_for(lambda: rt.state.get("shared", "task:t1:completed") is True)
    kinds = [e.type for e in rt.events.get_history(source="w")]
    assert EventType.TASK_STARTED in kinds and EventType.TASK_COMPLETED in kinds
    assert rt.sync.get_lock("task:t1").holder() is None


def test_a_failing_task_emits_task_failed_reraises_and_releases_its_lock(rt):
    rt.spawn(Broken, "b")
    with pytest.raises(ValueError, match="can't do t9"):
        rt.submit_task({"id": "t9", "type": "compute", "payload": {}})
    failed = rt.events.get_history(EventType.TASK_FAILED)
    assert failed[-1].payload["task_id"] == "t9"
    assert "can't do t9" in failed[-1].payload["error"]
    assert rt.sync.get_lock("task:t9").holder() is None


def test_default_do_work_returns_the_designs_result(rt):
    rt.add_agent("plain", ["generic"])
    assert rt.submit_task({"id": "p", "type": "generic"}) == {"status": "completed", "output": "Result"}


def test_handle_request_answers_status_and_unknown_actions(rt):
    w = rt.spawn(Worker, "w")
    status = w.ask(Message(sender="me", payload={"action": "get_status"}), timeout=10)
    assert status["agent_id"] == "w" and status["active"] is True and status["capabilities"] == ["compute"]
    assert w.ask(Message(sender="me", payload={"action": "dance"}), timeout=10) == {"error": "Unknown action"}


def test_agents_request_work_from_peers(rt):
    rt.spawn(Worker, "w")
    rt.add_agent("coordinator", ["coordination"])
    coordinator = rt.agents["coordinator"]
    task = {"id": "peer-1", "type": "compute", "payload": {"data": [4, 5]}}
    result = coordinator.proxy().request_peer("w", "execute_task", task).get(timeout=10)
    assert result == {"status": "completed", "output": 9}
    status = coordinator.proxy().request_peer("w", "get_status").get(timeout=10)
    assert status["tasks_completed"] == 1


def test_on_stop_runs_for_every_agent_at_shutdown(tmp_path):
    from runtime import Runtime

    path = tmp_path / "stops.txt"
    with Runtime() as rt:
        rt.spawn(Recorder, "r1", args=(str(path),))
        rt.spawn(Recorder, "r2", kwargs={"path": str(path)})
    assert sorted(path.read_text().splitlines()) == ["r1 stopped", "r2 stopped"]


def test_remove_agent_stops_it_and_announces_it_left(rt, tmp_path):
    path = tmp_path / "stops.txt"
    rt.spawn(Recorder, "r", args=(str(path),))
    assert "r" in rt.state.get("shared", "active_agents")
    assert rt.remove_agent("r") is True
    assert path.read_text() == "r stopped\n"
    assert "r" not in rt.agents
    left = wait_for(lambda: rt.events.get_history(EventType.AGENT_LEFT, source="r"))
    assert left[-1].payload["reason"] == "stopped"
    wait_for(lambda: "r" not in rt.state.get("shared", "active_agents"))
    assert rt.remove_agent("r") is False
