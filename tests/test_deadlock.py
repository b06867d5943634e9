"""Asks that would wait on themselves raise DeadlockError at once (actors._chain)."""

from __future__ import annotations

import asyncio
import pickle
import time

import pytest

from actors import ActorsError, Agent, DeadlockError
from actors._chain import AskChain, current, run_in_chain
from conftest import pid_of, wait_for

# Asks inside agents wait this long at most; a deadlock must be refused
# well before (on code without the check, the tests below time out).
WAIT = 20
QUICK = 10


class Hopper(Agent):
    """Asks along a route of agents: `("ask", ["b", "c"])` asks b to ask c.

    Each hop is asked the way the message says (plain ask, proxy call or
    future), and each agent notes the DeadlockErrors that passed through it.
    """

    def on_start(self):
        self.deadlocks = []
        self.refs = {}
        self.later_ran = 0

    def _ref(self, name):
        # Kept, so a proxy introspects its agent once (then calls are futures).
        if name not in self.refs:
            self.refs[name] = self.ctx.peer(name)
        return self.refs[name]

    def hop(self, how, route):
        if not route:
            return self.agent_id
        target, rest = route[0], route[1:]
        try:
            if how == "ask":
                reply = self._ref(target).ask((how, rest), timeout=WAIT)
            elif how == "future":
                reply = self._ref(target).ask((how, rest), block=False).get(timeout=WAIT)
            else:
                reply = self._ref(target).proxy().hop(how, rest).get(timeout=WAIT)
        except DeadlockError as exc:
            self.deadlocks.append(exc.asker)
            raise
        return [self.agent_id, reply]

    def on_receive(self, message):
        if message == "deadlocks":
            return list(self.deadlocks)
        if message == "ping":
            return "pong"
        if message == "later_ran":
            return self.later_ran
        how, route = message
        return self.hop(how, route)

    def warm(self, name):
        """Introspect `name`'s proxy here, outside any cycle."""
        self._ref(name).proxy()
        return True

    # -- asking oneself without waiting -----------------------------------

    def later(self):
        self.later_ran += 1

    def self_proxy_without_waiting(self):
        # pykka's idiom, through pykka's own ref and through our AgentRef.
        self.actor_ref.proxy().later()
        self.ctx.peer(self.agent_id).proxy().later()
        return "queued"

    def self_ask_kept(self):
        self.kept = self.ctx.peer(self.agent_id).ask("ping", block=False)
        return "kept"

    def wait_kept(self):
        return self.kept.get(timeout=WAIT)

    def pykka_self_asks(self):
        # Through pykka's own ref, as plain pykka code would ask itself.
        refused = []
        for ask in (lambda: self.actor_ref.ask("ping", timeout=WAIT),
                    lambda: self.actor_ref.proxy().later().get(timeout=WAIT)):
            try:
                ask()
            except DeadlockError as exc:
                refused.append(str(exc))
        return refused

    def self_ask_waited_here(self):
        future = self.ctx.peer(self.agent_id).ask("ping", block=False)
        try:
            future.get(timeout=WAIT)
        except DeadlockError as exc:
            return str(exc)
        return "no deadlock"


class Caller(Agent):
    """Answers request-reply actions; "call" asks `payload["to"]` in turn."""

    def handle_request(self, message):
        action = message.payload.get("action")
        if action == "call":
            # Services answer inside a chain as ever: they are never part of one.
            self.ctx.state.set("shared", f"called:{self.agent_id}", True)
            with self.ctx.sync.get_lock(f"lock:{self.agent_id}"):
                return self.request_peer(message.payload["payload"]["to"], "get_status", timeout=WAIT)
        return super().handle_request(message)


def _raises_deadlock_at_once(ask):
    started = time.monotonic()
    with pytest.raises(DeadlockError) as info:
        ask()
    assert time.monotonic() - started < QUICK
    return info.value


def _no_exception_at_once(ask):
    started = time.monotonic()
    result = ask()
    assert time.monotonic() - started < QUICK
    return result


def test_deadlock_error_is_an_actors_error_that_names_the_cycle_and_travels():
    exc = DeadlockError(("runtime-side", "a", "b", "a"))
    assert isinstance(exc, ActorsError)
    assert str(exc) == "agent 'b' asking 'a' would deadlock: a -> b -> a"
    assert (exc.asker, exc.target) == ("b", "a")
    copy = pickle.loads(pickle.dumps(exc))
    assert copy.chain == exc.chain and str(copy) == str(exc)


def test_an_agent_asking_itself_raises_deadlock_error_at_once(rt):
    a = rt.spawn(Hopper, "a")
    exc = _raises_deadlock_at_once(lambda: a.ask(("ask", ["a"]), timeout=30))
    assert exc.chain == ("a", "a")
    assert str(exc) == "agent 'a' asking 'a' would deadlock: a -> a"
    assert a.ask("deadlocks", timeout=10) == ["a"]


def test_a_asking_b_while_b_asks_a_raises_in_b_and_a_gets_it_back(rt):
    a, b = rt.spawn(Hopper, "a"), rt.spawn(Hopper, "b")
    exc = _raises_deadlock_at_once(lambda: a.ask(("ask", ["b", "a"]), timeout=30))
    assert exc.chain == ("a", "b", "a")
    assert str(exc) == "agent 'b' asking 'a' would deadlock: a -> b -> a"
    # b's ask closed the cycle and raised there; a's ask failed with it as
    # b's handler raised it.
    assert b.ask("deadlocks", timeout=10) == ["b"]
    assert a.ask("deadlocks", timeout=10) == ["b"]


def test_a_cycle_of_three_raises_in_the_agent_that_closes_it(rt):
    refs = {name: rt.spawn(Hopper, name) for name in "abc"}
    exc = _raises_deadlock_at_once(lambda: refs["a"].ask(("ask", ["b", "c", "a"]), timeout=30))
    assert exc.chain == ("a", "b", "c", "a")
    assert exc.asker == "c"
    assert "a -> b -> c -> a" in str(exc)


def test_a_cycle_that_starts_down_the_chain_names_only_the_cycle(rt):
    for name in "abc":
        rt.spawn(Hopper, name)
    exc = _raises_deadlock_at_once(lambda: rt.agents["a"].ask(("ask", ["b", "c", "b"]), timeout=30))
    assert exc.chain == ("a", "b", "c", "b")
    assert str(exc) == "agent 'c' asking 'b' would deadlock: b -> c -> b"


def test_a_chain_without_a_cycle_is_answered(rt):
    for name in "abc":
        rt.spawn(Hopper, name)
    a = rt.agents["a"]
    assert a.ask(("ask", ["b", "c"]), timeout=30) == ["a", ["b", "c"]]
    # The same agent twice in a route is no cycle once its ask was answered.
    assert a.ask(("ask", ["b"]), timeout=30) == ["a", "b"]
    assert rt.agents["b"].ask(("ask", ["a", "c"]), timeout=30) == ["b", ["a", "c"]]


def test_a_proxy_call_that_closes_a_cycle_raises_deadlock_error(rt):
    a = rt.spawn(Hopper, "a")
    rt.spawn(Hopper, "b")
    exc = _raises_deadlock_at_once(lambda: a.ask(("proxy", ["b", "a"]), timeout=30))
    assert exc.chain == ("a", "b", "a")


def test_a_proxy_future_waited_for_in_the_handler_of_the_cycle_raises_deadlock_error(rt):
    a, b = rt.spawn(Hopper, "a"), rt.spawn(Hopper, "b")
    assert b.proxy().warm("a").get(timeout=10)  # b's proxy of a needs no introspection in the cycle
    exc = _raises_deadlock_at_once(lambda: a.ask(("proxy", ["b", "a"]), timeout=30))
    assert exc.chain == ("a", "b", "a")
    assert b.ask("deadlocks", timeout=10) == ["b"]


def test_a_future_waited_for_in_the_handler_of_the_cycle_raises_deadlock_error(rt):
    for name in "abc":
        rt.spawn(Hopper, name)
    exc = _raises_deadlock_at_once(lambda: rt.agents["a"].ask(("future", ["b", "c", "a"]), timeout=30))
    assert exc.chain == ("a", "b", "c", "a")


def test_request_peer_back_to_the_waiting_agent_raises_deadlock_error(rt):
    a = rt.spawn(Caller, "a")
    rt.spawn(Caller, "b"), rt.spawn(Caller, "c")
    assert a.proxy().request_peer("b", "call", {"to": "c"}).get(timeout=30)["agent_id"] == "c"
    exc = _raises_deadlock_at_once(lambda: a.proxy().request_peer("b", "call", {"to": "a"}).get(timeout=30))
    assert exc.chain == ("a", "b", "a")
    assert rt.state.get("shared", "called:b") is True
    assert rt.comm.request_reply.request("runtime", "b", {"action": "get_status"})["agent_id"] == "b"


def test_asking_oneself_without_waiting_still_works(rt):
    a = rt.spawn(Hopper, "a")
    assert a.proxy().self_proxy_without_waiting().get(timeout=10) == "queued"
    wait_for(lambda: a.ask("later_ran", timeout=10) == 2)


def test_an_agent_asking_itself_through_pykkas_own_ref_raises_deadlock_error(rt):
    a = rt.spawn(Hopper, "a")
    refused = _no_exception_at_once(lambda: a.proxy().pykka_self_asks().get(timeout=60))
    assert refused == ["agent 'a' asking 'a' would deadlock: a -> a"] * 2
    wait_for(lambda: a.ask("later_ran", timeout=10) == 1)  # the refused wait's message still ran, later


def test_a_future_of_ones_own_is_refused_in_the_handler_that_asked_and_answered_in_a_later_one(rt):
    a = rt.spawn(Hopper, "a")
    assert a.proxy().self_ask_waited_here().get(timeout=30) == "agent 'a' asking 'a' would deadlock: a -> a"
    assert a.proxy().self_ask_kept().get(timeout=10) == "kept"
    assert a.proxy().wait_kept().get(timeout=30) == "pong"  # asked before: answered in between


class AsksItselfOnStart(Agent):
    def on_start(self):
        self.ctx.peer(self.agent_id).ask("hello", timeout=WAIT)


def test_an_agent_asking_itself_in_on_start_fails_its_spawn_with_deadlock_error(rt):
    exc = _raises_deadlock_at_once(lambda: rt.spawn(AsksItselfOnStart, "s", restart="temporary"))
    assert exc.chain == ("s", "s")


def test_agents_keep_running_after_a_deadlock_error(rt):
    a, b = rt.spawn(Hopper, "a"), rt.spawn(Hopper, "b")
    pids = pid_of(rt, "a"), pid_of(rt, "b")
    for how in ("ask", "future", "proxy"):
        with pytest.raises(DeadlockError):
            a.ask((how, ["b", "a"]), timeout=30)
    assert a.ask("ping", timeout=10) == b.ask("ping", timeout=10) == "pong"
    assert (pid_of(rt, "a"), pid_of(rt, "b")) == pids
    assert a.ask(("ask", ["b"]), timeout=30) == ["a", "b"]


def test_handling_a_message_from_a_stale_chain_drops_what_came_before_the_agent():
    seen = []

    def handler(message):
        seen.append(current.chain)
        return message

    assert run_in_chain("a", ("x", "a", "b"), handler, "m") == "m"
    assert run_in_chain("c", ("x", "a", "b"), handler, "m") == "m"
    assert seen == [("b", "a"), ("x", "a", "b", "c")]
    assert current.chain is None  # put back after the handler
    assert repr(AskChain(("a",), 1)) == "AskChain(('a',), 1)"


# -- async agents: the chain is per task --------------------------------------


class AsyncHopper(Agent):
    """Hopper's async twin: awaits each hop (one handler at a time, the default)."""

    async def on_receive(self, message):
        if message == "ping":
            return "pong"
        how, route = message
        if not route:
            return self.agent_id
        target, rest = route[0], route[1:]
        if how == "gather":  # the ask from a task the handler started
            (reply,) = await asyncio.gather(self.ctx.aio.peer(target).ask((how, rest), timeout=WAIT))
        else:
            reply = await self.ctx.aio.peer(target).ask((how, rest), timeout=WAIT)
        return [self.agent_id, reply]


class ConcurrentAsyncHopper(AsyncHopper):
    max_concurrency = 4


def test_an_async_agent_awaiting_b_while_b_asks_it_back_raises_deadlock_error(rt):
    a, b = rt.spawn(AsyncHopper, "a"), rt.spawn(Hopper, "b")
    exc = _raises_deadlock_at_once(lambda: a.ask(("ask", ["b", "a"]), timeout=30))
    assert exc.chain == ("a", "b", "a")
    assert b.ask("deadlocks", timeout=10) == ["b"]
    assert a.ask("ping", timeout=10) == "pong"  # and it keeps serving


def test_async_agents_awaiting_each_other_raise_deadlock_error(rt):
    for name in "abc":
        rt.spawn(AsyncHopper, name)
    exc = _raises_deadlock_at_once(lambda: rt.agents["a"].ask(("ask", ["b", "c", "a"]), timeout=30))
    assert exc.chain == ("a", "b", "c", "a")
    exc = _raises_deadlock_at_once(lambda: rt.agents["a"].ask(("gather", ["b", "a"]), timeout=30))
    assert exc.chain == ("a", "b", "a")
    assert rt.agents["a"].ask(("ask", ["b", "c"]), timeout=30) == ["a", ["b", "c"]]


def test_an_async_agent_awaiting_itself_raises_deadlock_error(rt):
    a = rt.spawn(AsyncHopper, "a")
    exc = _raises_deadlock_at_once(lambda: a.ask(("ask", ["a"]), timeout=30))
    assert exc.chain == ("a", "a")


def test_an_async_agent_with_free_slots_answers_an_ask_back(rt):
    a = rt.spawn(ConcurrentAsyncHopper, "a")
    rt.spawn(Hopper, "b")
    assert _no_exception_at_once(lambda: a.ask(("ask", ["b", "a"]), timeout=30)) == ["a", ["b", "a"]]
    assert _no_exception_at_once(lambda: a.ask(("ask", ["a"]), timeout=30)) == ["a", "a"]


def test_an_async_agent_with_free_slots_passes_on_the_chain_of_its_askers(rt):
    rt.spawn(Hopper, "x"), rt.spawn(ConcurrentAsyncHopper, "a")
    exc = _raises_deadlock_at_once(lambda: rt.agents["x"].ask(("ask", ["a", "x"]), timeout=30))
    assert exc.chain == ("x", "a", "x")


class AsyncAsksItselfOnStart(Agent):
    async def on_start(self):
        await self.ctx.aio.peer(self.agent_id).ask("hello", timeout=WAIT)


def test_an_async_on_start_awaiting_its_own_agent_fails_its_spawn_with_deadlock_error(rt):
    exc = _raises_deadlock_at_once(lambda: rt.spawn(AsyncAsksItselfOnStart, "s", restart="temporary"))
    assert exc.chain == ("s", "s")
