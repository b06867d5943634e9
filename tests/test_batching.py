"""Tells sent close together share writes, and still arrive whole, in order and soon."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from actors import ActorDeadError, Agent
from conftest import pid_of, wait_for


class Recorder(Agent):
    def on_start(self):
        self.seen = []

    def on_receive(self, message):
        if message == "seen":
            return list(self.seen)
        if message == "count":
            return len(self.seen)
        self.seen.append(message)
        return None


class Forwarder(Agent):
    """Tells a burst to a peer from inside a handler, or asks the peer."""

    def on_receive(self, message):
        kind, peer, payload = message
        if kind == "burst":
            for i in range(payload):
                peer.tell(i)
            return "sent"
        return peer.ask(payload, timeout=10)


def ask_from_another_thread(ref, message):
    # An ask writes out what its own thread queued; one from another thread
    # shows what arrived without that help.
    answer = []
    thread = threading.Thread(target=lambda: answer.append(ref.ask(message, timeout=10)))
    thread.start()
    thread.join(15)
    return answer[0]


def test_tells_left_queued_by_a_quiet_sender_arrive_without_any_ask(rt):
    r = rt.spawn(Recorder, "r")
    for i in range(50):
        r.tell(i)
    # The sending thread now only sleeps: the flusher sends what it queued.
    wait_for(lambda: ask_from_another_thread(r, "count") == 50)
    assert ask_from_another_thread(r, "seen") == list(range(50))


def test_an_ask_to_one_agent_never_overtakes_tells_sent_before_it_to_another(rt):
    r = rt.spawn(Recorder, "r")
    forwarder = rt.spawn(Forwarder, "f")
    for i in range(200):
        r.tell(i)
    assert forwarder.ask(("ask", r, "count"), timeout=30) == 200


def test_an_agent_that_tells_a_burst_and_goes_idle_delivers_all_of_it(rt):
    r = rt.spawn(Recorder, "r")
    forwarder = rt.spawn(Forwarder, "f")
    assert forwarder.ask(("burst", r, 300), timeout=30) == "sent"
    wait_for(lambda: r.ask("count", timeout=10) == 300)
    assert r.ask("seen", timeout=10) == list(range(300))


def test_tells_to_an_agent_whose_process_died_end_in_actor_dead_error(rt):
    r = rt.spawn(Recorder, "r", restart="temporary")
    r.tell("before")
    assert r.ask("count", timeout=10) == 1
    os.kill(pid_of(rt, "r"), signal.SIGKILL)

    def tell_fails():
        try:
            for i in range(100):
                r.tell(i)
        except ActorDeadError:
            return True
        return False

    wait_for(tell_fails)
    with pytest.raises(ActorDeadError):
        r.tell("after")


def test_a_receiver_that_stopped_reading_does_not_hold_up_tells_to_others(rt):
    stuck = rt.spawn(Recorder, "stuck", restart="temporary")
    other = rt.spawn(Recorder, "other")
    stuck_pid = pid_of(rt, "stuck")
    os.kill(stuck_pid, signal.SIGSTOP)  # nothing in that process reads any more
    refused = []

    def stuff():
        # Far more than a socket holds: this thread ends up blocked in a write.
        try:
            for _ in range(5000):
                stuck.tell("x" * 1000)
        except ActorDeadError as exc:
            refused.append(exc)

    stuffer = threading.Thread(target=stuff)
    stuffer.start()
    try:
        for i in range(50):
            other.tell(i)
        wait_for(lambda: ask_from_another_thread(other, "count") == 50, timeout=30)
        assert stuffer.is_alive()  # still blocked: the stopped receiver took its fill
    finally:
        os.kill(stuck_pid, signal.SIGKILL)
        stuffer.join(30)
    assert not stuffer.is_alive()
    assert refused  # the blocked sender learnt that its receiver died
