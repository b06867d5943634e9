"""The event bus: history, subscribers in their own process, coordination."""

from __future__ import annotations

import pytest

from actors import Agent, Event, EventType
from conftest import wait_for


class Listener(Agent):
    def on_start(self):
        self.seen = []
        self.ctx.events.subscribe(EventType.TASK_FAILED, self.on_event)

    def on_event(self, event):
        self.seen.append(event.payload["n"])

    def seen_events(self):
        return list(self.seen)


def test_emit_returns_the_event_and_history_is_oldest_first_and_filtered(rt):
    first = rt.events.emit("a", EventType.ERROR_OCCURRED, {"n": 1})
    rt.events.emit("b", EventType.ERROR_OCCURRED, {"n": 2})
    rt.events.emit("a", "error_occurred", {"n": 3})
    assert isinstance(first, Event) and first.type is EventType.ERROR_OCCURRED and first.source == "a"
    history = rt.events.get_history(EventType.ERROR_OCCURRED)
    assert [e.payload["n"] for e in history] == [1, 2, 3]
    assert [e.payload["n"] for e in rt.events.get_history(source="a", event_type="ERROR_OCCURRED")] == [1, 3]
    assert [e.payload["n"] for e in rt.events.get_history(EventType.ERROR_OCCURRED, limit=1)] == [3]


def test_an_unknown_event_type_names_the_choices(rt):
    with pytest.raises(ValueError, match="unknown event type 'party'"):
        rt.events.emit("a", "party", {})


def test_an_event_is_built_in_the_designs_field_order_or_by_keyword():
    event = Event("e1", EventType.TASK_CREATED, "planner", 12.5, {"n": 1}, {"trace": "x"})
    assert (event.id, event.type, event.source, event.timestamp) == ("e1", EventType.TASK_CREATED, "planner", 12.5)
    assert (event.payload, event.metadata) == ({"n": 1}, {"trace": "x"})
    by_keyword = Event(type="task_failed", source="worker")
    assert by_keyword.type is EventType.TASK_FAILED and by_keyword.id and by_keyword.payload == {}
    with pytest.raises(TypeError, match="Event needs a type"):
        Event(source="worker")


def test_history_keeps_at_most_max_history():
    from runtime import Runtime

    with Runtime(max_history=5) as small:
        for i in range(20):
            small.events.emit("x", EventType.ERROR_OCCURRED, {"n": i})
        assert [e.payload["n"] for e in small.events.get_history(EventType.ERROR_OCCURRED)] == list(range(15, 20))


def test_subscribers_in_the_runtime_process_get_events_and_a_failing_one_stops_nothing(rt):
    got = []
    rt.events.subscribe(EventType.TASK_FAILED, lambda e: 1 / 0)
    rt.events.subscribe(EventType.TASK_FAILED, lambda e: got.append(e.payload["n"]))
    rt.events.emit("x", EventType.TASK_FAILED, {"n": 1})
    rt.events.emit("x", EventType.TASK_FAILED, {"n": 2})
    wait_for(lambda: got == [1, 2])


def test_a_handler_subscribed_in_an_agent_runs_in_that_agent(rt):
    listener = rt.spawn(Listener, "listener")
    rt.events.emit("x", EventType.TASK_FAILED, {"n": 7})
    wait_for(lambda: listener.proxy().seen_events().get(timeout=10) == [7])


def test_unsubscribe_stops_deliveries(rt):
    got = []

    def handler(event):
        got.append(event.payload["n"])

    rt.events.subscribe(EventType.TASK_FAILED, handler)
    rt.events.emit("x", EventType.TASK_FAILED, {"n": 1})
    wait_for(lambda: got == [1])
    assert rt.events.unsubscribe(EventType.TASK_FAILED, handler) is True
    rt.events.emit("x", EventType.TASK_FAILED, {"n": 2})
    rt.events.emit("x", EventType.ERROR_OCCURRED, {"n": 3})  # a barrier of sorts
    assert got == [1]


def test_active_agents_follow_joins_and_leaves(rt):
    rt.add_agent("a", ["x"])
    rt.add_agent("b", ["x"])
    assert rt.state.get("shared", "active_agents") == ["a", "b"]
    rt.remove_agent("a")
    wait_for(lambda: rt.state.get("shared", "active_agents") == ["b"])
    joined = rt.events.get_history(EventType.AGENT_JOINED, source="b")
    assert joined[-1].payload["capabilities"] == ["x"]


def test_unsubscribing_a_handler_from_one_event_type_keeps_its_other_types(rt):
    got = []

    def handler(event):
        got.append(event.type)

    rt.events.subscribe(EventType.TASK_STARTED, handler)
    rt.events.subscribe(EventType.TASK_FAILED, handler)
    assert rt.events.unsubscribe(EventType.TASK_FAILED, handler) is True
    rt.events.emit("me", EventType.TASK_FAILED, {})
    rt.events.emit("me", EventType.TASK_STARTED, {})
    wait_for(lambda: got == [EventType.TASK_STARTED])


class Emitter(Agent):
    def emit_n(self, n):
        self.ctx.events.emit(self.agent_id, EventType.TASK_FAILED, {"n": n})


def test_a_subscriber_gets_events_in_the_order_the_bus_took_them_whoever_emitted(rt):
    listener = rt.spawn(Listener, "listener")
    emitter = rt.spawn(Emitter, "emitter")
    for n in range(120):  # each emitted after the previous was taken, from two processes in turn
        if n % 2:
            emitter.proxy().emit_n(n).get(timeout=30)
        else:
            rt.events.emit("runtime", EventType.TASK_FAILED, {"n": n})
    assert wait_for(lambda: len(listener.proxy().seen_events().get(timeout=30)) == 120)
    assert listener.proxy().seen_events().get(timeout=30) == list(range(120))
