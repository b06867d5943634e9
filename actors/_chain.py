"""Chains of asks: which agents wait on the handler a thread is running.

An agent handles one message at a time, so while its handler waits for an
ask, the agent itself waits. Each ask made inside an agent's handler
carries the chain of agents waiting on that handler (outermost first,
ending with the asker; as Orleans does for its call chains), and the
handler of the ask runs with that chain plus its own agent id. An ask
whose target is already in the asker's chain would wait on itself: an
agent asking itself, A asking B while B's handler asks A, or any longer
cycle. The asker gets `DeadlockError` at once instead (the agents on the
cycle get it back as the error of their own asks, and keep running):

- a blocking ask (`runtime._ref.AgentRef.ask`) is refused before anything
  is sent;
- a non-blocking one (a future, a proxy call) is sent, since pykka's idiom
  of asking oneself without waiting must work, and its future refuses to
  wait inside the handler that asked (a future of the agent's own: inside
  any of its handlers) unless the reply is already there;
- pykka's own `self.actor_ref.ask(...)` waited for inside the agent's
  handler is refused by the future it returns (`OwnFuture`).

Who sets what: a host marks the thread that runs an agent's handlers
(`set_thread_agent`), so whatever that thread asks carries at least the
agent's own id; a message that came with a chain (`AskChain`, built by the
receiving node from the frame, never pickled) is handled under that chain
(`run_in_chain`). Asks from any other thread (the runtime's own, a thread
an agent started) carry nothing, cost nothing extra and are never refused.

An agent with `async def` handlers runs them as tasks on an event loop,
several at once, so the chain is per task there, not per thread: its
loop's thread is marked with `set_thread_tasks` (`current.chain` is then
`IN_TASKS`) and each handler's chain is the context variable `task_chain`
of its task (copied into the tasks it starts, as `gather` does), set by
the host (`handler_chain`). An async handler awaiting an ask blocks its
agent only if the agent runs one handler at a time (`max_concurrency`
1): only then is the agent itself in its handlers' chain. With more, its
handlers pass on the chain of their own ask (the agents waiting on them)
without adding the agent, which can answer an ask back in another slot
(a cycle through an agent whose every slot waits still ends at the ask's
timeout). A sync handler blocks the loop, so it runs with the agent in
its chain, as on a sync agent. An awaited ask is refused as a future
waited for is: `DeadlockError` when awaited in the handler whose chain
already holds its target (`runtime._ref._ChainFuture`). A task that a
handler starts inherits its chain (asyncio copies the context), also if
it outlives the handler: conservative, as above.
Services (state store, locks, event bus...) answer asks and never ask
agents, so they are never part of a cycle: asks to them carry no chain,
and a chain reaching one is ignored. Tells carry no chain: nobody waits on
them.

The check is conservative: a chain records that an ask was made, not that
its asker still waits. An ask whose future is never waited for, or whose
wait timed out, still counts as a wait edge while its target handles it,
so a handler that asks back along such a chain gets `DeadlockError`
although the first asker has moved on. Send what nobody waits for as a
tell (or a proxy's `.defer()`). It is also incomplete in one place: a
future kept by a handler and waited for in a later handler is checked
only when it is the agent's own; any other cycle through it still waits
for the ask's timeout. Only the local backend carries chains (the Ray
backend's asks don't).
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import Any

import pykka

from actors._errors import DeadlockError
from actors._future import NotifyingFuture

__all__ = [
    "IN_TASKS", "AskChain", "OwnFuture", "chain_now", "current", "deadlock", "handler_chain", "run_in_chain",
    "set_thread_agent", "set_thread_tasks", "task_chain",
]


class AskChain:
    """A message delivered by an ask made inside an agent's handler.

    `chain` is the asker's chain: the agents waiting on the asker's handler,
    outermost first, then the asker. Built in the receiving process only
    (the chain travels in the frame, beside the message).
    """

    __slots__ = ("chain", "message")

    def __init__(self, chain: tuple[str, ...], message: Any) -> None:
        self.chain = chain
        self.message = message

    def __repr__(self) -> str:
        return f"AskChain({self.chain!r}, {self.message!r})"


class _InTasks:
    """The type of `IN_TASKS`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "IN_TASKS"


#: `current.chain` in an agent's event-loop thread: the chain is its task's `task_chain`.
IN_TASKS: Any = _InTasks()


class _Current(threading.local):
    """Per thread: the chain of the agent's handler running in it, or None."""

    chain: tuple[str, ...] | None = None  # None: not an agent's handler thread; IN_TASKS: per task
    tasks_of: str = ""  # in an event-loop thread: whose handlers it runs


current = _Current()

#: Per task, in an agent's event-loop thread: the chain of the handler the
#: task runs (None: none, as in a thread that runs no agent's handlers).
task_chain: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar("task_chain", default=None)


def chain_now() -> tuple[str, ...] | None:
    """The chain of the handler running here: the thread's, or its task's."""
    chain = current.chain
    return task_chain.get() if chain is IN_TASKS else chain


def set_thread_tasks(agent_id: str) -> None:
    """The calling thread is `agent_id`'s event loop: the chain of what it
    runs is per task, `task_chain` (see the module docstring)."""
    current.chain = IN_TASKS
    current.tasks_of = agent_id


def _trimmed(agent_id: str, chain: tuple[str, ...]) -> tuple[str, ...]:
    # `agent_id` in `chain` already: see `run_in_chain`.
    if agent_id in chain:
        index = len(chain) - 1 - chain[::-1].index(agent_id)
        return chain[index + 1:]
    return chain


def handler_chain(agent_id: str, chain: tuple[str, ...] | None, *, blocks: bool) -> tuple[str, ...] | None:
    """The chain of `agent_id`'s handler of an ask from `chain` (None: a
    message without one), for `task_chain`. With `blocks` (a sync handler,
    or an async one of an agent that runs one at a time) the agent is in
    it; else it is only the chain of the agents waiting on the handler."""
    chain = _trimmed(agent_id, chain) if chain else ()
    if blocks:
        return (*chain, agent_id)
    return chain or None


def set_thread_agent(agent_id: str) -> None:
    """The calling thread runs `agent_id`'s handlers (and `on_start`, `on_stop`).

    A message without a chain (from the runtime's thread, or a tell) is
    handled with the chain of the agent alone, which is what this sets.
    """
    current.chain = (agent_id,)


def run_in_chain(agent_id: str, chain: tuple[str, ...], handle: Callable[[Any], Any], message: Any) -> Any:
    """`handle(message)` in this thread, as `agent_id`'s handler of an ask from `chain`.

    If `agent_id` is in `chain` already, the ask was made without blocking
    (a blocking one would have been refused) and is handled now, so the
    handler it came from has returned: the part of the chain up to it is
    stale and dropped. So an agent that keeps asking itself without waiting
    (pykka's self-proxy idiom) doesn't grow its chain.
    """
    chain = _trimmed(agent_id, chain)
    previous = current.chain
    current.chain = (*chain, agent_id)
    try:
        return handle(message)
    finally:
        current.chain = previous


def deadlock(chain: tuple[str, ...], target: str) -> DeadlockError:
    """The error for asking `target` from a handler whose chain is `chain`.

    In an event loop's thread, a chain that doesn't end with the loop's
    agent (an async handler of an agent that runs several) gets it added:
    it is the asker the error names.
    """
    asker = current.tasks_of
    if asker and chain[-1] != asker:
        chain = (*chain, asker)
    return DeadlockError((*chain, target))


class OwnFuture(NotifyingFuture):
    """The future of an ask to an agent made in the agent's own process.

    A host whose agents run one to a process makes these its pykka futures
    (`_create_future`), so pykka's own `self.actor_ref.ask(...)` (or a
    proxy's future) waited for inside the agent's handler raises
    `DeadlockError` instead of hanging: no reply of the agent's can come
    while its handler runs. A reply already there is taken, and a wait
    with `timeout=0` is a poll, never refused. Outside the agent's handlers
    it is a plain pykka future.
    """

    def __init__(self, agent_id: str) -> None:
        super().__init__()
        self._agent_id = agent_id

    def get(self, *, timeout: float | None = None) -> Any:
        chain = current.chain
        if chain is IN_TASKS:
            chain = task_chain.get()
        if chain is not None and chain[-1] == self._agent_id and timeout != 0 and self._get_hook is None:
            try:
                return super().get(timeout=0)
            except pykka.Timeout:
                raise deadlock(chain, self._agent_id) from None
        return super().get(timeout=timeout)
