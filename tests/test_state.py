"""The versioned, namespaced state store, from the runtime and from agents."""

from __future__ import annotations

import threading
import time

import pytest

from actors import (
    Agent,
    EventType,
    MessageSerializationError,
    NamespacePermissionError,
    StateVersion,
    UnknownNamespaceError,
)
from conftest import wait_for


class Incrementer(Agent):
    """Adds 1 to shared/<key> n times, by the method it is told to use."""

    def increment(self, key, n, how):
        state = self.ctx.state
        for _ in range(n):
            if how == "update":
                state.update("shared", key, lambda v: (v or 0) + 1)
            elif how == "cas":
                while True:
                    old = state.get("shared", key)
                    if state.compare_and_swap("shared", key, old, (old or 0) + 1):
                        break
            else:
                while True:
                    current = state.get_version("shared", key)
                    version = current.version if current else 0
                    value = current.value if current else 0
                    if state.set("shared", key, value + 1, expected_version=version):
                        break
        return n

    def write(self, ns, key, value, updater=None):
        return self.ctx.state.set(ns, key, value, updater=updater)

    def write_as(self, ns, key, value, claimed_id):
        # What a hostile agent might try: rewrite who its process says it is.
        from actors import current_agent_id
        from actors._context import set_current_agent_id

        set_current_agent_id(claimed_id)
        try:
            assert current_agent_id() == claimed_id
            return self.ctx.state.set(ns, key, value)
        finally:
            set_current_agent_id(self.ctx.agent_id)


def test_values_are_versioned_with_who_wrote_them(rt):
    assert rt.state.set("shared", "k", "a") is True
    assert rt.state.set("shared", "k", "b") is True
    version = rt.state.get_version("shared", "k")
    assert isinstance(version, StateVersion)
    assert (version.value, version.version, version.updated_by) == ("b", 2, "runtime")
    assert len(version.checksum) == 32
    assert rt.state.get("shared", "missing") is None


def test_expected_version_is_optimistic_locking(rt):
    assert rt.state.set("shared", "k", 1, expected_version=0) is True  # only if absent
    assert rt.state.set("shared", "k", 2, expected_version=0) is False
    assert rt.state.set("shared", "k", 3, expected_version=5) is False
    assert rt.state.get("shared", "k") == 1
    assert rt.state.set("shared", "k", 4, expected_version=1) is True
    assert rt.state.get_version("shared", "k").version == 2


def test_compare_and_swap_and_delete(rt):
    assert rt.state.compare_and_swap("shared", "k", None, "first") is True
    assert rt.state.compare_and_swap("shared", "k", "wrong", "x") is False
    assert rt.state.compare_and_swap("shared", "k", "first", "second") is True
    assert rt.state.delete("shared", "k") is True
    assert rt.state.delete("shared", "k") is False
    ops = [(row["op"], row["version"]) for row in rt.state.history("shared", "k")]
    assert ops == [("set", 1), ("set", 2), ("delete", 3)]


def test_versions_of_a_key_never_repeat_across_a_delete(rt):
    rt.state.set("shared", "k", "a")
    rt.state.set("shared", "k", "b")
    assert rt.state.delete("shared", "k") is True  # version 3
    assert rt.state.get("shared", "k") is None
    assert rt.state.get_version("shared", "k") is None
    assert "k" not in rt.state.list_keys("shared")
    assert rt.state.set("shared", "k", "stale", expected_version=2) is False  # no ABA
    assert rt.state.set("shared", "k", "c", expected_version=0) is True  # absent again
    assert rt.state.get_version("shared", "k").version == 4
    assert rt.state.delete("shared", "k") is True
    assert rt.state.update("shared", "k", lambda v: (v or 0) + 1) == 1
    assert rt.state.get_version("shared", "k").version == 6
    rt.store.set("k", 1)
    rt.store.delete("k")
    rt.store.set("k", 2)
    assert rt.store.get_version("k").version == 3


def test_update_runs_the_function_inside_the_store_and_a_raising_one_changes_nothing(rt):
    step = 5
    assert rt.state.update("shared", "n", lambda v: (v or 0) + step) == 5
    with pytest.raises(ZeroDivisionError):
        rt.state.update("shared", "n", lambda v: v / 0)
    assert rt.state.get_version("shared", "n").version == 1
    assert rt.state.get("shared", "n") == 5  # and the store still serves


def test_namespaces_are_separate_and_must_exist(rt):
    with pytest.raises(UnknownNamespaceError, match="'team'"):
        rt.state.set("team", "k", 1)
    assert rt.state.create_namespace("team") is True
    assert rt.state.create_namespace("team") is False
    rt.state.set("team", "k", "team value")
    rt.state.set("shared", "k", "shared value")
    rt.store.set("k", "flat value")
    assert rt.state.get("team", "k") == "team value"
    assert rt.state.get("shared", "k") == "shared value"
    assert rt.store.get("k") == "flat value"
    assert rt.state.list_keys("team") == ["k"]
    assert "k" in rt.state.list_keys("shared") and rt.store.list_keys() == ["k"]


def test_keys_that_format_alike_never_collide(rt):
    rt.state.create_namespace("a:b")
    rt.state.create_namespace("a")
    rt.state.set("a:b", "c", 1)
    rt.state.set("a", "b:c", 2)
    assert (rt.state.get("a:b", "c"), rt.state.get("a", "b:c")) == (1, 2)


def test_writers_restrict_a_namespace(rt):
    writer = rt.spawn(Incrementer, "writer")
    other = rt.spawn(Incrementer, "other")
    rt.state.create_namespace("private", writers=["writer"])
    assert writer.proxy().write("private", "k", 1).get(timeout=10) is True
    with pytest.raises(NamespacePermissionError, match="'other' may not write"):
        other.proxy().write("private", "k", 2).get(timeout=10)
    assert rt.state.get("private", "k") == 1


def test_a_namespace_checks_the_authenticated_sender_not_a_claimed_updater(rt):
    mallory = rt.spawn(Incrementer, "mallory")
    trusted = rt.spawn(Incrementer, "trusted")
    rt.state.create_namespace("vault", writers=["trusted"])
    with pytest.raises(NamespacePermissionError, match="'mallory' may not write"):
        mallory.proxy().write("vault", "k", "forged", "trusted").get(timeout=10)
    with pytest.raises(NamespacePermissionError, match="'mallory' may not write"):
        mallory.proxy().write_as("vault", "k", "forged", "trusted").get(timeout=10)
    assert rt.state.get("vault", "k") is None
    assert trusted.proxy().write("vault", "k", "real", "someone else").get(timeout=10) is True
    assert rt.state.get_version("vault", "k").updated_by == "trusted"


def test_writes_are_recorded_under_the_authenticated_sender(rt):
    mallory = rt.spawn(Incrementer, "mallory")
    assert mallory.proxy().write("shared", "signed", 1, "trusted").get(timeout=10) is True
    assert rt.state.get_version("shared", "signed").updated_by == "mallory"
    rt.state.set("shared", "by-runtime", 1, updater="trusted")
    assert rt.state.get_version("shared", "by-runtime").updated_by == "runtime"
    rt.state.create_namespace("ops", writers=["trusted"])
    with pytest.raises(NamespacePermissionError, match="'runtime' may not write"):
        rt.state.set("ops", "k", 1, updater="trusted")


def test_bad_input_fails_clearly_and_the_store_keeps_serving(rt):
    with pytest.raises(TypeError, match="keys must be str"):
        rt.state.set("shared", 42, "x")
    with pytest.raises(MessageSerializationError):
        rt.state.set("shared", "lock", threading.Lock())
    assert rt.state.get("shared", "lock") is None
    assert rt.state.set("shared", "ok", 1) is True


def test_every_write_emits_state_changed(rt):
    rt.state.set("shared", "watched", 1)
    rt.state.delete("shared", "watched")

    def changes():
        return [e.payload for e in rt.events.get_history(EventType.STATE_CHANGED) if e.payload["key"] == "watched"]

    wait_for(lambda: len(changes()) == 2)
    assert [(c["op"], c["version"], c["updater"]) for c in changes()] == [("set", 1, "runtime"), ("delete", 2, "runtime")]


def test_a_steady_stream_of_writes_is_announced_while_it_lasts_every_change_in_order(rt):
    # Changes go to the bus in batches of a few milliseconds: a stream of
    # writes sends its batches as it goes, the last one after it stops.
    def announced():  # the whole history: the first batch may hold more than get_history's default 100
        return [e.payload["version"] for e in rt.events.get_history(EventType.STATE_CHANGED, limit=1000)
                if e.payload["key"] == "stream"]

    started = time.monotonic()
    version = 0
    while not announced():
        assert time.monotonic() - started < 30, "nothing announced while writing"
        rt.state.set("shared", "stream", version)
        version += 1
    wait_for(lambda: len(announced()) == version)
    assert announced() == list(range(1, version + 1))


@pytest.mark.parametrize("how", ["update", "cas", "expected_version"])
def test_four_agent_processes_incrementing_at_once_lose_nothing(rt, how):
    agents = [rt.spawn(Incrementer, f"inc{i}") for i in range(4)]
    futures = [a.proxy().increment(f"count-{how}", 100, how) for a in agents]
    assert [f.get(timeout=120) for f in futures] == [100] * 4
    assert rt.state.get("shared", f"count-{how}") == 400


def test_the_updater_defaults_to_the_calling_agent(rt):
    writer = rt.spawn(Incrementer, "writer")
    writer.proxy().write("shared", "mine", 1).get(timeout=10)
    assert rt.state.get_version("shared", "mine").updated_by == "writer"


def test_purge_removes_keys_outright_with_their_tombstones(rt):
    store = rt.state._ref  # purge is the store's, for the task ledger: not on the client
    from pykka.messages import ProxyCall

    rt.state.set("shared", "kept", 1)
    rt.state.set("shared", "gone", 1)
    rt.state.set("shared", "gone", 2)
    rt.state.set("shared", "deleted", 1)
    rt.state.delete("shared", "deleted")
    purged = store.ask(ProxyCall(("purge",), ("shared", ["gone", "deleted", "never"], "runtime"), {}), timeout=10)
    assert purged == 2  # a value, and a tombstone
    assert rt.state.get("shared", "gone") is None and rt.state.get("shared", "kept") == 1
    assert [r["op"] for r in rt.state.history("shared", "gone")] == ["set", "set"]  # no history row
    rt.state.set("shared", "deleted", "again")
    assert rt.state.get_version("shared", "deleted").version == 1  # nothing remembered it
