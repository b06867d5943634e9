"""Supervision: restart policies, restart intensity, retries and chaos."""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import pytest

from actors import ActorDeadError, Agent, EventType
from conftest import wait_for


class Fragile(Agent):
    capabilities = ["work"]

    def on_start(self):
        self.pid = os.getpid()

    def on_receive(self, message):
        if message == "boom":
            raise RuntimeError("told to explode")
        if message == "pid":
            return self.pid
        return message

    def do_work(self, task):
        if task["payload"] == "die-once" and not self.ctx.state.get("shared", "died-once"):
            self.ctx.state.set("shared", "died-once", True)
            os._exit(9)
        return {"status": "completed", "output": task["payload"], "by": self.agent_id}


class Committer(Agent):
    capabilities = ["commit"]

    def do_work(self, task):
        state = self.ctx.state
        time.sleep(random.uniform(0.002, 0.008))  # long enough for the killer to strike mid-batch
        # Versioned write keyed by task id: a retried task never commits twice.
        state.set("shared", f"result:{task['payload']}", task["payload"] * 2, expected_version=0)
        return state.get("shared", f"result:{task['payload']}")


def _joined(rt, name, restarts):
    return [e for e in rt.events.get_history(EventType.AGENT_JOINED, source=name, limit=1000)
            if e.payload.get("restarts") == restarts]


def test_a_told_message_that_raises_is_a_crash_and_the_agent_restarts(rt):
    agent = rt.spawn(Fragile, "f")
    first = agent.ask("pid", timeout=10)
    agent.tell("boom")
    wait_for(lambda: _joined(rt, "f", 1))
    left = rt.events.get_history(EventType.AGENT_LEFT, source="f")[-1]
    assert left.payload["reason"].startswith("crashed") and "told message raised" in left.payload["reason"]
    assert agent.ask("pid", timeout=10) != first


def test_an_ask_that_raises_is_not_a_crash(rt):
    class Picky(Fragile):
        def on_receive(self, message):
            raise ValueError("no")

    agent = rt.spawn(Picky, "p")
    with pytest.raises(ValueError):
        agent.ask("x", timeout=10)
    assert rt.agent_info()[0]["restarts"] == 0 and agent.is_alive()


def test_transient_agents_restart_after_a_crash_but_not_after_a_stop(rt):
    agent = rt.spawn(Fragile, "t", restart="transient")
    os.kill(agent.ask("pid", timeout=10), signal.SIGKILL)
    wait_for(lambda: _joined(rt, "t", 1))
    assert agent.stop(timeout=10) is True
    wait_for(lambda: not agent.is_alive())
    assert rt.events.get_history(EventType.AGENT_LEFT, source="t")[-1].payload["reason"] == "stopped"
    assert "t" not in rt.agents


def test_too_many_restarts_in_the_window_and_the_supervisor_gives_up(rt):
    agent = rt.spawn(Fragile, "g", max_restarts=2, restart_window=30.0)
    for restarts in (1, 2):
        os.kill(agent.ask("pid", timeout=10), signal.SIGKILL)
        wait_for(lambda r=restarts: _joined(rt, "g", r))
    os.kill(agent.ask("pid", timeout=10), signal.SIGKILL)
    gave_up = wait_for(lambda: [e for e in rt.events.get_history(EventType.AGENT_LEFT, source="g")
                                if e.payload["reason"].startswith("gave up")])
    assert "2 restarts within 30.0 s" in gave_up[-1].payload["reason"]
    with pytest.raises(ActorDeadError):
        agent.ask("pid", timeout=10)
    assert rt.agent_info()[0]["status"] == "gave up"
    wait_for(lambda: "g" not in (rt.state.get("shared", "active_agents") or []))


def test_a_task_whose_agent_died_before_answering_is_sent_again(rt):
    rt.spawn(Fragile, "f1")
    result = rt.submit_task({"id": "retry-me", "type": "work", "payload": "die-once"}, retries=2)
    assert result["output"] == "die-once"
    rt.state.delete("shared", "died-once")
    with pytest.raises(ActorDeadError):
        rt.submit_task({"id": "no-retry", "type": "work", "payload": "die-once"}, retries=0)


def test_chaos_every_task_commits_exactly_once_while_agents_are_killed(rt):
    joined, left = [], []  # the bus's history is too short for a chaos run: listen
    rt.events.subscribe(EventType.AGENT_JOINED, lambda e: joined.append(e.payload))
    rt.events.subscribe(EventType.AGENT_LEFT, lambda e: left.append(e.payload))
    agents = [rt.spawn(Committer, f"c{i}", max_restarts=1000, restart_window=1.0) for i in range(4)]
    assert len(agents) == 4
    kills = []
    stop = threading.Event()

    def killer():
        rng = random.Random(7)
        killed = set()  # a process SIGKILLed may still read alive until it is reaped: kill it once
        while not stop.wait(0.1):
            alive = [r for r in rt.agent_info() if r["alive"] and r["pid"] not in killed]
            if alive:
                victim = rng.choice(alive)
                try:
                    os.kill(victim["pid"], signal.SIGKILL)
                    killed.add(victim["pid"])
                    kills.append(victim["name"])
                except ProcessLookupError:
                    pass

    chaos = threading.Thread(target=killer)
    chaos.start()
    try:
        results = rt.map("commit", list(range(500)), retries=50, timeout=30, return_exceptions=True)
    finally:
        stop.set()
        chaos.join(10)
    assert [r for r in results if isinstance(r, Exception)] == []
    assert results == [i * 2 for i in range(500)]
    versions = [rt.state.get_version("shared", f"result:{i}") for i in range(500)]
    assert all(v is not None and v.version == 1 and v.value == i * 2 for i, v in enumerate(versions))
    assert len(kills) >= 3
    wait_for(lambda: len([p for p in joined if p["restarts"] > 0]) == len(kills))
    for name in set(kills):
        assert max(p["restarts"] for p in joined if p["agent_id"] == name) == kills.count(name)
    assert len([p for p in left if p["reason"].startswith("crashed")]) == len(kills)


def test_a_service_survives_a_told_message_that_raises(rt):
    from pykka.messages import ProxyCall

    rt.state._ref.tell(ProxyCall(("update",), ("shared", "k", lambda v: 1 / 0, "x"), {}))
    assert rt.state.set("shared", "k", 1) is True  # the store kept serving


def test_a_lost_service_is_reported_by_name(rt):
    from runtime import AgentRef

    ghost = AgentRef("_nothing", None, rt.id)
    with pytest.raises(ActorDeadError, match="the runtime's service '_nothing' is not running"):
        ghost.ask("hi", timeout=5)


class SlowToComeBack(Agent):
    """Starts at once the first time; hangs in on_start once `flag` exists."""

    def __init__(self, flag):
        super().__init__()
        self.flag = flag

    def on_start(self):
        if os.path.exists(self.flag):
            time.sleep(20)  # its restart hangs here
        with open(self.flag, "w"):
            pass

    def on_receive(self, message):
        return os.getpid()


def test_an_agent_comes_back_while_another_agents_restart_hangs_in_on_start(rt, tmp_path):
    slow = rt.spawn(SlowToComeBack, "slow", args=(str(tmp_path / "started-once"),))
    quick = rt.spawn(Fragile, "quick")
    os.kill(slow.ask("pid", timeout=10), signal.SIGKILL)
    wait_for(lambda: [r for r in rt.agent_info() if r["name"] == "slow" and r["status"] == "restarting"])
    os.kill(quick.ask("pid", timeout=10), signal.SIGKILL)
    killed = time.monotonic()
    wait_for(lambda: _joined(rt, "quick", 1), timeout=3)
    assert quick.ask("pid", timeout=3) and time.monotonic() - killed < 3
    assert next(r for r in rt.agent_info() if r["name"] == "slow")["status"] == "restarting"
    started = time.monotonic()
    rt.shutdown(timeout=2)
    assert time.monotonic() - started < 6  # the hanging restart is ended at the deadline


class BadStopper(Agent):
    def __init__(self, how):
        super().__init__()
        self.how = how

    def on_stop(self):
        if self.how == "raise":
            raise RuntimeError("on_stop failed")
        os._exit(7)


@pytest.mark.parametrize("how", ["raise", "exit"])
@pytest.mark.parametrize("via", ["ref", "remove_agent"])
def test_a_requested_stop_is_never_followed_by_a_restart_whatever_on_stop_does(rt, how, via):
    agent = rt.spawn(BadStopper, "bad", args=(how,))
    if via == "ref":
        agent.stop(timeout=10)
    else:
        assert rt.remove_agent("bad") is True
    # Once the stop returned, the supervisor has decided: "stopped" is final.
    assert [r["status"] for r in rt.agent_info() if r["name"] == "bad"] == ["stopped"]
    left = rt.events.get_history(EventType.AGENT_LEFT, source="bad")
    assert left[-1].payload["reason"] == "stopped"
    assert left[-1].payload["error"]  # what on_stop did is noted
    assert "7" in left[-1].payload["error"] if how == "exit" else "on_stop failed" in left[-1].payload["error"]
    assert not _joined(rt, "bad", 1) and not agent.is_alive() and "bad" not in rt.agents


class Stopper(Agent):
    """Stops a peer through a ref in its own process, then reports what it sees."""

    def on_receive(self, message):
        peer = self.ctx.peer(message)
        peer.ask("x", timeout=10)  # connected: its address is cached here
        peer.stop(timeout=10)
        alive = peer.is_alive()
        try:
            peer.tell("after")
            told = "sent"
        except ActorDeadError:
            told = "dead"
        return alive, told


def test_a_requested_stop_from_another_agents_process_is_not_followed_by_a_restart(rt):
    rt.spawn(BadStopper, "bad", args=("exit",))
    stopper = rt.spawn(Stopper, "stopper")
    assert stopper.ask("bad", timeout=20) == (False, "dead")
    assert rt.events.get_history(EventType.AGENT_LEFT, source="bad")[-1].payload["reason"] == "stopped"


@pytest.mark.parametrize(("option", "value"), [("max_restarts", -1), ("restart_window", -0.5), ("max_restarts", 1.5)])
def test_spawn_refuses_a_negative_or_odd_restart_limit(rt, option, value):
    with pytest.raises(ValueError, match=option):
        rt.spawn(Agent, "limited", **{option: value})
    assert "limited" not in rt.agents
