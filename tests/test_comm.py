"""Request-reply and fire-and-forget between agents."""

from __future__ import annotations

import pytest

from actors import ActorDeadError, Agent, AskTimeout, Message, MessagePattern


class Service(Agent):
    def on_start(self):
        self.notes = []

    def handle_request(self, message):
        if message.pattern is MessagePattern.FIRE_AND_FORGET:
            self.notes.append((message.sender, message.payload))
            return None
        if message.payload == "slow":
            import time

            time.sleep(2)
        return {"from": message.sender, "got": message.payload, "id": message.id}

    def get_notes(self):
        return list(self.notes)

    def call(self, recipient, payload):
        return self.ctx.comm.request_reply.request(self.agent_id, recipient, payload, timeout=10)


def test_request_reply_is_answered_by_handle_request(rt):
    rt.spawn(Service, "svc")
    reply = rt.comm.request_reply.request("me", "svc", {"q": 1}, timeout=10)
    assert reply["from"] == "me" and reply["got"] == {"q": 1}


def test_agents_request_from_each_other(rt):
    rt.spawn(Service, "svc")
    caller = rt.spawn(Service, "caller")
    assert caller.proxy().call("svc", "hi").get(timeout=10)["from"] == "caller"


def test_fire_and_forget_is_a_tell(rt):
    svc = rt.spawn(Service, "svc")
    assert rt.comm.send("me", "svc", "note") is None
    assert svc.proxy().get_notes().get(timeout=10) == [("me", "note")]


class Inbox(Agent):
    def on_start(self):
        self.received = []

    def on_receive(self, message):
        self.received.append((message.pattern, message.sender, message.payload))

    def messages(self):
        return list(self.received)


def test_fire_and_forget_reaches_an_agents_own_on_receive(rt):
    inbox = rt.spawn(Inbox, "inbox")
    rt.comm.send("me", "inbox", {"n": 1})
    assert inbox.proxy().messages().get(timeout=10) == [(MessagePattern.FIRE_AND_FORGET, "me", {"n": 1})]


def test_request_timeouts_and_unknown_recipients_fail_clearly(rt):
    rt.spawn(Service, "svc")
    with pytest.raises(AskTimeout):
        rt.comm.request_reply.request("me", "svc", "slow", timeout=0.2)
    with pytest.raises(ActorDeadError, match=r"nobody.* not found"):  # pykka's words
        rt.comm.request_reply.request("me", "nobody", "hi", timeout=10)


def test_messages_carry_their_metadata():
    message = Message(sender="a", payload=1, topic="t", correlation_id="c")
    assert message.pattern is MessagePattern.REQUEST_REPLY and message.id and message.timestamp > 0
