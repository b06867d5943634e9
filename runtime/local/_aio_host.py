"""The process host of an agent with `async def` handlers.

The process's main thread stays the pykka actor loop: its mailbox reads
the sockets (`_reactor`), so backpressure, stops and crashes work as for
sync agents. It hands each message to the agent's event loop, which runs
in a thread of its own and runs *every* handler of the agent, sync or
async, so no two pieces of agent code ever run at once:

- a handler that returns a coroutine (an `async def` handler, or
  `execute_task` with an `async def do_work`) runs as a task; up to
  `max_concurrency` tasks are in flight, interleaving at their awaits;
- a sync handler runs right there, between tasks;
- messages start in mailbox order; one that finds every slot taken waits
  (and so do the ones after it).

Replies are deferred (`_defer_reply`) and set when the handler ends
(for an agent with `snapshot`, after its snapshot was saved). An
exception fails its own ask; from a tell it crashes the agent as a sync
handler's would (the error goes back through the mailbox and takes pykka's
failure path in the main thread). `on_start` and `on_stop` run on the loop
too, and the main thread waits for them: an `on_start` failure is raised
by `spawn`. A stop waits for the handlers in flight, then runs `on_stop`.

Deadlock checks (`actors._chain`): the chain is per task here. Each
message is handled in a context of its own (a copy of the loop's first
one) whose `task_chain` is the chain of its ask plus the agent (the
handler's chain, `handler_chain`), and its task runs in that context, so
what the handler asks, or starts tasks to ask, carries it. An async
handler of an agent with `max_concurrency` above 1 doesn't block the
agent while it waits: its task's chain leaves the agent out. `on_start`
and `on_stop` run with the agent's own chain, as on a sync agent.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

from pykka.messages import _ActorStop

from actors import ActorDeadError
from actors._chain import AskChain, handler_chain, set_thread_tasks, task_chain

if TYPE_CHECKING:
    from actors._base import ActorBase as _HostBase  # what the mixin comes before: the agent's actor
else:
    _HostBase = object

__all__ = ["AsyncHost"]

_BACKLOG = 64  # messages handed to the loop beyond those in flight before the mailbox holds the rest


class _Crash:
    """A told message's async handler raised: re-raised in the actor loop."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class _Loop:
    """The agent's event loop, its thread, and the messages handed to it.

    Invariants: `_pending` and `_running` are touched only in the loop's
    thread; `_outstanding` (handed over, not yet answered) under `_idle`.
    """

    def __init__(self, actor: Any) -> None:
        self.actor = actor
        self.limit: int = actor.max_concurrency
        self.agent_id: str = actor.ctx.agent_id
        self.loop = asyncio.new_event_loop()
        self._context: contextvars.Context | None = None  # the loop thread's own: each message's is a copy
        self._pending: deque[tuple[Any, Any]] = deque()
        self._running = 0
        self._room = threading.Semaphore(self.limit + _BACKLOG)
        self._idle = threading.Condition()
        self._outstanding = 0
        self._thread = threading.Thread(target=self._run, name="agent-loop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        set_thread_tasks(self.agent_id)  # what this thread asks carries the chain of its task
        self._context = contextvars.copy_context()
        self.loop.run_forever()

    # -- the actor loop's thread -------------------------------------------

    def call(self, fn: Any) -> Any:
        """Run `fn()` (a hook, maybe async) on the loop and wait for it."""

        async def hook() -> Any:
            task_chain.set((self.agent_id,))  # this task's: nothing else runs meanwhile
            result = fn()
            if inspect.isawaitable(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(hook(), self.loop).result()

    def submit(self, message: Any, reply: Any) -> None:
        self._room.acquire()  # beyond the backlog the mailbox holds the rest: senders wait
        with self._idle:
            self._outstanding += 1
        self.loop.call_soon_threadsafe(self._arrive, message, reply)

    def drain(self) -> None:
        """Wait until every message handed over has been answered."""
        with self._idle:
            while self._outstanding:
                self._idle.wait()

    def close(self) -> None:
        for task in asyncio.all_tasks(self.loop) if not self.loop.is_closed() else ():
            self.loop.call_soon_threadsafe(task.cancel)
        self.loop.call_soon_threadsafe(self.loop.stop)

    # -- the event loop's thread --------------------------------------------

    def _arrive(self, message: Any, reply: Any) -> None:
        self._pending.append((message, reply))
        self._pump()

    def _pump(self) -> None:
        pending = self._pending
        while pending and self._running < self.limit:
            message, reply = pending.popleft()
            # Its own context, whatever callback (another task's end) runs
            # this: the handler's chain, the agent in it while it runs sync.
            chain = None
            if type(message) is AskChain:
                chain, message = message.chain, message.message
            context = self._context.copy()  # type: ignore[union-attr]  # set before any message comes
            context.run(task_chain.set, handler_chain(self.agent_id, chain, blocks=True))
            try:
                result = context.run(self.actor._handle_on_loop, message)
            except Exception as exc:  # noqa: BLE001 - the ask's error, or a crash for a tell
                self._failed(reply, exc)
                continue
            if inspect.iscoroutine(result):
                if self.limit > 1:  # while it awaits, the agent takes other messages
                    context.run(task_chain.set, handler_chain(self.agent_id, chain, blocks=False))
                self._running += 1
                task = self.loop.create_task(result, context=context)
                task.add_done_callback(functools.partial(self._done, reply=reply))
            else:
                if reply is not None:
                    reply.set(result)
                self._finish()

    def _done(self, task: asyncio.Task[Any], reply: Any) -> None:
        self._running -= 1
        if task.cancelled():
            self._failed(reply, ActorDeadError(f"agent {self.actor.agent_id!r} stopped before answering"))
        elif (error := task.exception()) is not None:
            self._failed(reply, error)
        else:
            if self.actor._durable:  # a class attribute: the snapshot is saved before the reply
                try:
                    self.actor._save_snapshot()
                except Exception as exc:  # noqa: BLE001 - the ask fails (a tell crashes the agent)
                    self._failed(reply, exc)
                    self._pump()
                    return
            if reply is not None:
                reply.set(task.result())
            self._finish()
        self._pump()

    def _failed(self, reply: Any, exc: BaseException) -> None:
        if reply is not None:
            reply.set_exception((type(exc), exc, exc.__traceback__))
        elif not isinstance(exc, asyncio.CancelledError):
            self.actor.actor_ref.tell(_Crash(exc))  # pykka's failure path, in the actor loop
        self._finish()

    def _finish(self) -> None:
        self._room.release()
        with self._idle:
            self._outstanding -= 1
            if not self._outstanding:
                self._idle.notify_all()


class AsyncHost(_HostBase):
    """Mixin placed before `ProcessHost` for agents with `async def`
    handlers (see the module docstring)."""

    _aio_loop: _Loop

    def _actor_loop_setup(self) -> None:
        self._aio_loop = _Loop(self)
        super()._actor_loop_setup()

    def on_start(self) -> None:
        self._aio_loop.call(super().on_start)

    def on_stop(self) -> None:
        try:
            self._aio_loop.call(super().on_stop)
        finally:
            self._aio_loop.close()

    def _handle_receive(self, message: Any) -> Any:
        # The actor loop (main thread): hand the message to the event loop.
        if isinstance(message, _ActorStop):
            self._aio_loop.drain()  # a stop comes after the messages before it
            return super()._handle_receive(message)
        if type(message) is _Crash:
            raise message.exc
        self._aio_loop.submit(message, self._defer_reply())
        return None

    def _handle_on_loop(self, message: Any) -> Any:
        """Handle `message` in the event loop's thread: its result, or a
        coroutine the loop runs as a task."""
        return super()._handle_receive(message)
