"""Pub-sub: a topic actor fans out to subscribers in any process."""

from __future__ import annotations

import os
import signal
import threading
import time

from actors import Agent, Message, MessagePattern
from conftest import wait_for


class Subscriber(Agent):
    def on_start(self):
        self.got = []
        self.busy = False
        self.overlaps = 0
        self.ctx.comm.pub_sub.subscribe("news", self.on_news)

    def on_news(self, message):
        # Runs in this agent's process, never at the same time as a handler.
        if self.busy:
            self.overlaps += 1
        self.busy = True
        self.got.append((message.sender, message.payload, message.topic, os.getpid()))
        time.sleep(0.001)
        self.busy = False

    def received(self):
        return list(self.got), self.overlaps, os.getpid()

    def publish(self, payload):
        return self.ctx.comm.pub_sub.publish(self.agent_id, "news", payload)


def test_publish_reaches_every_subscriber_in_its_own_process_in_order(rt):
    subs = [rt.spawn(Subscriber, f"s{i}") for i in range(3)]
    for i in range(20):
        assert rt.comm.pub_sub.publish("editor", "news", i) == 3
    for sub in subs:
        wait_for(lambda sub=sub: len(sub.proxy().received().get(timeout=10)[0]) == 20)
        got, overlaps, pid = sub.proxy().received().get(timeout=10)
        assert [p for _s, p, _t, _pid in got] == list(range(20))
        assert {pid_ for *_rest, pid_ in got} == {pid} and overlaps == 0
        assert got[0][0] == "editor" and got[0][2] == "news"


def test_agents_publish_to_each_other(rt):
    a = rt.spawn(Subscriber, "a")
    b = rt.spawn(Subscriber, "b")
    assert a.proxy().publish("hello").get(timeout=10) == 2
    wait_for(lambda: b.proxy().received().get(timeout=10)[0][:1] == [("a", "hello", "news", b.proxy().received().get(timeout=10)[2])])


def test_a_handler_in_the_runtime_process_runs_in_an_actor_of_its_own(rt):
    got = []
    main = threading.get_ident()
    sub_id = rt.comm.pub_sub.subscribe("alerts", lambda m: got.append((m.payload, threading.get_ident() != main)))
    assert isinstance(sub_id, str)
    assert rt.comm.pub_sub.publish("me", "alerts", "fire") == 1
    wait_for(lambda: got == [("fire", True)])
    assert rt.comm.pub_sub.unsubscribe("alerts", sub_id) is True
    assert rt.comm.pub_sub.publish("me", "alerts", "again") == 0


def test_a_raising_handler_does_not_stop_the_others(rt):
    got = []
    rt.comm.pub_sub.subscribe("t", lambda m: 1 / 0)
    rt.comm.pub_sub.subscribe("t", lambda m: got.append(m.payload))
    assert rt.comm.pub_sub.publish("me", "t", 1) == 2
    assert rt.comm.pub_sub.publish("me", "t", 2) == 2
    wait_for(lambda: got == [1, 2])


def test_subscriptions_of_a_dead_agent_are_dropped_and_remade_after_restart(rt):
    rt.spawn(Subscriber, "keeper")
    rt.spawn(Subscriber, "temp", restart="temporary")
    perm = rt.spawn(Subscriber, "perm")
    assert rt.comm.pub_sub.subscribers("news") == 3
    pids = {r["name"]: r["pid"] for r in rt.agent_info()}
    os.kill(pids["temp"], signal.SIGKILL)
    os.kill(pids["perm"], signal.SIGKILL)
    wait_for(lambda: any(r["name"] == "perm" and r["restarts"] == 1 and r["alive"] for r in rt.agent_info()))
    wait_for(lambda: rt.comm.pub_sub.subscribers("news") == 2)  # keeper, and perm subscribed again
    assert rt.comm.pub_sub.publish("me", "news", "after") == 2
    wait_for(lambda: [p for _s, p, *_ in perm.proxy().received().get(timeout=10)[0]] == ["after"])


def test_messages_are_marked_as_pub_sub():
    message = Message(sender="a", payload=1, topic="t", pattern=MessagePattern.PUBLISH_SUBSCRIBE)
    assert message.topic == "t"


def test_unsubscribing_a_handler_from_one_topic_keeps_its_other_topics(rt):
    got = []

    def handler(message):
        got.append(message.topic)

    pub_sub = rt.comm.pub_sub
    pub_sub.subscribe("a", handler)
    pub_sub.subscribe("b", handler)
    assert pub_sub.unsubscribe("b", handler) is True
    assert pub_sub.subscribers("b") == 0
    assert pub_sub.publish("me", "a", 1) == 1
    wait_for(lambda: got == ["a"])


def test_handlers_outside_agents_end_their_threads_when_unsubscribed(rt):
    before = threading.active_count()
    for _ in range(20):

        def handler(message):
            return None

        rt.comm.pub_sub.subscribe("t", handler)
        rt.comm.pub_sub.unsubscribe("t", handler)
    wait_for(lambda: threading.active_count() < before + 5)
