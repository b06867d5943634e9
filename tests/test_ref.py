"""AgentRef: pykka's ref interface, across processes."""

from __future__ import annotations

import os
import signal
import threading
import time

import pykka
import pytest

from actors import ActorDeadError, Agent, AskTimeout, EventType
from conftest import pid_of, wait_for


class Counter(Agent):
    def on_start(self):
        self.count = 0
        self.seen = []

    def on_receive(self, message):
        if message == "count":
            return self.count
        if message == "seen":
            return list(self.seen)
        if isinstance(message, tuple) and message[0] == "sleep":
            time.sleep(message[1])
            return "slept"
        if message == "die":
            os._exit(1)
        self.count += 1
        self.seen.append(message)
        return None

    def add(self, n):
        self.count += n
        return self.count


class Relay(Agent):
    """Holds a ref it was given and talks to it directly."""

    def on_receive(self, message):
        kind, ref, payload = message
        if kind == "ask":
            return ref.ask(payload, timeout=10)
        ref.tell(payload)
        return "told"


class Echo(Agent):
    def on_receive(self, message):
        return message


class StopAndLook(Agent):
    """Stops a peer through a ref in its own process, then reports what it sees."""

    def on_receive(self, message):
        peer = self.ctx.peer(message)
        assert peer.ask("x", timeout=10) == "x"
        for i in range(3):
            peer.tell(i)
        assert peer.stop(timeout=10) is True
        alive = peer.is_alive()
        try:
            for _ in range(3):
                peer.tell("after")
            told = "sent"
        except ActorDeadError:
            told = "dead"
        return alive, told


def test_ask_returns_the_reply(rt):
    c = rt.spawn(Counter, "c")
    c.tell("x")
    assert c.ask("count", timeout=10) == 1


def test_tells_from_one_sender_arrive_in_order(rt):
    c = rt.spawn(Counter, "c")
    for i in range(5000):  # many batches of queued tells
        c.tell(i)
    assert c.ask("seen", timeout=30) == list(range(5000))


def test_ask_without_blocking_returns_a_pykka_future(rt):
    c = rt.spawn(Counter, "c")
    futures = [c.ask(("sleep", 0.01), block=False) for _ in range(3)]
    assert all(isinstance(f, pykka.Future) for f in futures)
    assert [f.get(timeout=10) for f in reversed(futures)] == ["slept"] * 3
    assert futures[0].get() == "slept"  # the value stays available
    assert c.ask("count", block=False).map(lambda n: n + 100).get(timeout=10) == 100


def test_a_future_can_be_waited_for_in_another_thread(rt):
    c = rt.spawn(Counter, "c")
    future = c.ask(("sleep", 0.05), block=False)
    results = []
    thread = threading.Thread(target=lambda: results.append(future.get(timeout=10)))
    thread.start()
    assert c.ask("count", timeout=10) == 0
    thread.join(10)
    assert results == ["slept"]


def test_proxy_calls_methods_and_reads_attributes(rt):
    c = rt.spawn(Counter, "c")
    proxy = c.proxy()
    assert proxy.add(5).get(timeout=10) == 5
    proxy.add.defer(2)
    assert proxy.count.get(timeout=10) == 7
    proxy.count = 1
    assert c.ask("count", timeout=10) == 1
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        proxy.nope  # noqa: B018


def test_ask_times_out_with_ask_timeout_which_is_a_pykka_timeout(rt):
    c = rt.spawn(Counter, "c")
    with pytest.raises(AskTimeout) as info:
        c.ask(("sleep", 2), timeout=0.1)
    assert isinstance(info.value, pykka.Timeout)
    assert c.ask("count", timeout=10) == 0  # the late reply didn't confuse anything


def test_a_reply_that_comes_after_a_timeout_is_there_for_the_next_get(rt):
    c = rt.spawn(Counter, "c")
    future = c.ask(("sleep", 1), block=False)
    with pytest.raises(AskTimeout):
        future.get(timeout=0.05)
    assert c.ask("count", timeout=10) == 0  # another ask on the same connection meanwhile
    assert future.get(timeout=30) == "slept"


def test_an_ask_pending_when_the_process_dies_fails_at_once(rt):
    c = rt.spawn(Counter, "c", restart="temporary")
    pending = c.ask(("sleep", 30), block=False)
    time.sleep(0.2)
    os.kill(pid_of(rt, "c"), signal.SIGKILL)
    started = time.monotonic()
    with pytest.raises(ActorDeadError) as info:
        pending.get(timeout=60)
    assert time.monotonic() - started < 10  # at once, not at the timeout
    assert isinstance(info.value, pykka.ActorDeadError)


def test_an_agent_that_exits_while_answering_fails_the_ask(rt):
    c = rt.spawn(Counter, "c", restart="temporary")
    with pytest.raises(ActorDeadError):
        c.ask("die", timeout=30)


def test_stop_runs_on_stop_and_later_use_raises_actor_dead(rt):
    c = rt.spawn(Counter, "c")
    assert c.is_alive()
    assert c.stop(timeout=10) is True
    wait_for(lambda: not c.is_alive())
    assert c.stop(timeout=10) is False
    with pytest.raises(ActorDeadError):
        c.ask("count", timeout=10)
    with pytest.raises(ActorDeadError):
        c.tell("x")


def test_a_ref_sent_to_another_agent_works_there(rt):
    c = rt.spawn(Counter, "c")
    relay = rt.spawn(Relay, "relay")
    assert relay.ask(("tell", c, "from relay"), timeout=10) == "told"
    assert relay.ask(("ask", c, "seen"), timeout=10) == ["from relay"]


def test_refs_come_back_in_replies_and_compare_equal(rt):
    c = rt.spawn(Counter, "c")
    echo = rt.spawn(Echo, "echo")
    back = echo.ask(c, timeout=10)
    assert back == c and back is not c
    assert back.ask("count", timeout=10) == 0


def test_asks_from_many_threads_get_their_own_replies(rt):
    echo = rt.spawn(Echo, "echo")
    errors = []

    def worker(k):
        for i in range(50):
            if echo.ask((k, i), timeout=30) != (k, i):
                errors.append((k, i))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []


def test_an_unknown_name_fails_at_once(rt):
    ghost = rt.get_agent("ghost")
    with pytest.raises(ActorDeadError, match=r"ghost \(urn:uuid:.*\) not found"):
        ghost.ask("hi", timeout=30)
    assert ghost.is_alive() is False


def test_once_stop_returned_the_agent_is_dead_and_its_name_is_free(rt):
    for _ in range(10):
        echo = rt.spawn(Echo, "again")
        for i in range(3):
            echo.tell(i)  # tells in a burst leave queued channels behind
        assert echo.ask("x", timeout=10) == "x"
        assert echo.stop(timeout=10) is True
        assert not echo.is_alive()
        with pytest.raises(ActorDeadError):
            for _ in range(3):  # a queued tell to a peer known dead raises too
                echo.tell("after")
    events = [e for e in rt.events.get_history(limit=1000)
              if e.source == "again" and e.type in (EventType.AGENT_JOINED, EventType.AGENT_LEFT)]
    assert [e.type for e in events] == [EventType.AGENT_JOINED, EventType.AGENT_LEFT] * 10


def test_once_stop_returned_in_another_agents_process_the_name_is_free(rt):
    rt.spawn(Echo, "target")
    stopper = rt.spawn(StopAndLook, "stopper")
    for _ in range(5):
        assert stopper.ask("target", timeout=20) == (False, "dead")
        rt.spawn(Echo, "target")  # free at once


class StopsItselfSlowly(Agent):
    """Stops itself when told; its on_stop then waits for the test's go."""

    def on_receive(self, message):
        if message == "stop yourself":
            self.stop()

    def on_stop(self):
        self.ctx.store.set("on_stop_began", True)
        wait_for(lambda: self.ctx.store.get("go"), timeout=30)


def test_an_agent_that_stops_itself_reads_dead_everywhere_before_its_on_stop_ends(rt):
    # As pykka's: the actor is unregistered before on_stop runs.
    ref = rt.spawn(StopsItselfSlowly, "slow_stop", restart="permanent")
    ref.tell("stop yourself")
    wait_for(lambda: rt.store.get("on_stop_began"))
    assert not ref.is_alive()
    assert not rt.get_agent("slow_stop").is_alive()
    with pytest.raises(ActorDeadError):
        rt.get_agent("slow_stop").tell("late")
    rt.store.set("go", True)
    wait_for(lambda: "slow_stop" not in rt.agents)  # stopped, never restarted


class ForgetsAnother(Agent):
    def on_receive(self, message):
        from runtime.wire._frames import LEAVING
        from runtime.wire._node import node_for

        node = node_for(self.ctx.peer(message)._runtime_id)
        address = node.lookup(message)
        node.request(node.registry_address, LEAVING, message, address.encode(), 10)
        return node.lookup(message) == address


def test_only_the_agents_own_process_can_take_its_name_off_the_registry(rt):
    rt.spawn(Echo, "victim")
    assert rt.spawn(ForgetsAnother, "forger").ask("victim", timeout=20) is True
    assert rt.get_agent("victim").is_alive()
