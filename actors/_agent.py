"""The agent base class users subclass, with the design's built-in behaviour."""

from __future__ import annotations

import asyncio
import inspect
import logging
import pickle
import traceback
from typing import Any, ClassVar

from actors._base import ActorBase
from actors._chain import AskChain, run_in_chain
from actors._context import AgentContext
from actors._errors import RemoteError
from actors._types import Message, MessagePattern

__all__ = ["Agent"]


def _travelling(exc: Exception) -> Exception:
    """`exc` if it pickles, else a `RemoteError` with its text (the error
    path only: it goes back inside a chunk's reply, with the results)."""
    text = "".join(traceback.format_exception(exc))
    try:
        exc.add_note(f"remote traceback:\n{text}")
        pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001 - anything that won't round-trip
        try:
            message = str(exc)
        except Exception:  # noqa: BLE001 - a broken __str__ must not hide the error
            message = f"<{type(exc).__name__} whose str() failed>"
        return RemoteError(f"{type(exc).__module__}.{type(exc).__qualname__}", message, text)
    return exc

logger = logging.getLogger("actors")


def _function(attribute: Any) -> Any:
    """The function behind a class attribute (static and class methods unwrapped)."""
    return attribute.__func__ if isinstance(attribute, (staticmethod, classmethod)) else attribute


class Agent(ActorBase):
    """An actor with capabilities, a context of shared services and tasks.

    Lifecycle, when spawned by a runtime:

    - `__init__` runs in the agent's own process (the arguments of `spawn`
      travel there with cloudpickle); `self.ctx` is already set.
    - `on_start` runs in that process before any message is handled; `spawn`
      returns once it has, and raises what it raised.
    - Handlers (`on_receive`, proxied methods, `handle_request`) run one at a
      time in the agent's actor thread.
    - `on_stop` runs there when the agent is stopped; `on_failure` when a
      told message raised.

    Durable state: a class that defines `snapshot(self) -> Any` and
    `restore(self, snapshot)` has its snapshot saved to the state store
    after each message that changed it, before the reply is sent, and
    restored (before `on_start`) whenever an agent of the same name starts
    again (`actors._snapshot`).
    """

    capabilities: ClassVar[list[str]] = []
    stop_on_failure = True  # a crash: the process exits and the supervisor acts
    ctx: AgentContext = None  # type: ignore[assignment]  # set by the host

    #: How many `async def` handlers may be in flight at once, interleaving
    #: at their awaits (sync handlers still run one at a time, between them);
    #: with an `async def do_work`, also how many tasks of a `map` run on
    #: the agent at once (`runtime._map`). Above 1, an awaited ask doesn't
    #: block the agent, so it may be asked back meanwhile (`actors._chain`).
    max_concurrency: ClassVar[int] = 1

    #: Set once per class (never looked up per message): whether any hook,
    #: handler or public method is `async def` (the host then runs an event
    #: loop: `runtime.local._aio_host`), and whether `do_work` is.
    _async_handlers: ClassVar[bool] = False
    _async_work: ClassVar[bool] = False
    #: Set once per class: whether it defines `snapshot(self)` (durable
    #: state: its host saves snapshots and restores them, `actors._snapshot`).
    _durable: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        limit = cls.max_concurrency
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            msg = f"{cls.__qualname__}.max_concurrency must be an int >= 1, got {limit!r}"
            raise ValueError(msg)
        cls._async_work = inspect.iscoroutinefunction(cls.do_work)
        cls._durable = callable(inspect.getattr_static(cls, "snapshot", None))
        if cls._durable and not callable(inspect.getattr_static(cls, "restore", None)):
            msg = f"{cls.__qualname__} defines snapshot() but not restore(snapshot): define both for durable state"
            raise TypeError(msg)
        # From the class's own attributes (read as stored: no descriptor, such
        # as a property or a mock standing in for one, runs) and its bases'
        # flags: cheap, since every agent process makes a hosted subclass.
        # A sync override of an async parent's method leaves it True: such an
        # agent gets an event loop it doesn't need, and behaves the same.
        cls._async_handlers = any(getattr(base, "_async_handlers", False) for base in cls.__bases__) or any(
            inspect.iscoroutinefunction(_function(value))
            for name, value in vars(cls).items()
            if not name.startswith("_") or name in ("on_start", "on_stop")
        )

    @property
    def agent_id(self) -> str:
        return self.ctx.agent_id if self.ctx is not None else self.actor_urn

    # -- the design's coordinated agent -----------------------------------

    def do_work(self, task: dict[str, Any]) -> Any:
        """The body of a task; override it. The design's default result."""
        return {"status": "completed", "output": "Result"}

    def execute_task(self, task: dict[str, Any]) -> Any:
        """Run `task` under lock `task:{id}`, recording progress in shared state.

        Emits TASK_STARTED and sets `shared/task:{id}:status` to
        "in_progress", then takes the lock (`LockTimeout` after 30 s); then
        `do_work(task)`; then records `:result`, status "completed" and
        `:completed`, emits TASK_COMPLETED and releases the lock, or, if
        `do_work` raised, sets status "failed", emits TASK_FAILED with the
        error, releases the lock and raises the error again to the caller.

        Two messages to the runtime's process in all: the start (parked
        until the lock is granted) and the end (see `SyncManager.tasks_begin`).
        """
        if self._async_work:
            return self._execute_task_async(task)  # a coroutine: the host awaits it
        task_id = task.get("id")
        sync = self.ctx.sync
        sync.begin_tasks([(task_id, task.get("type"))], self.agent_id)
        try:
            result = self.do_work(task)
        except Exception as exc:
            sync.end_tasks([(task_id, False, f"{type(exc).__name__}: {exc}")], self.agent_id)
            raise
        sync.end_tasks([(task_id, True, result)], self.agent_id)
        self._tasks_completed = getattr(self, "_tasks_completed", 0) + 1
        return result

    async def _execute_task_async(self, task: dict[str, Any]) -> Any:
        # `execute_task` for an `async def do_work`: the same two messages,
        # awaited, so the agent's other handlers run meanwhile.
        task_id = task.get("id")
        sync = self.ctx.aio.sync
        await sync.begin_tasks([(task_id, task.get("type"))], self.agent_id)
        try:
            result = await self.do_work(task)
        except Exception as exc:
            await sync.end_tasks([(task_id, False, f"{type(exc).__name__}: {exc}")], self.agent_id)
            raise
        await sync.end_tasks([(task_id, True, result)], self.agent_id)
        self._tasks_completed = getattr(self, "_tasks_completed", 0) + 1
        return result

    @classmethod
    def _task_concurrency(cls) -> int:
        """How many tasks of a batch may run on one agent of this class at
        once: `max_concurrency` when its tasks are coroutines (an `async def
        do_work`, or an `async def execute_task` override), else 1. Read
        once per class by the task router (`runtime._tasks`)."""
        overridden = cls.execute_task is not Agent.execute_task
        if cls._async_work or (overridden and inspect.iscoroutinefunction(cls.execute_task)):
            return cls.max_concurrency
        return 1

    async def _run_chunk_async(self, tasks: list[dict[str, Any]], own: bool) -> list[tuple[bool, Any]]:
        # `_run_chunk` when the work is a coroutine: results in order, and
        # up to `max_concurrency` tasks in flight at once on this agent,
        # over all the chunks it holds (the router sends it several: see
        # `runtime._map`), so the limit holds per agent, not per chunk.
        run = self.execute_task if own else self.do_work
        room = self.__dict__.get("_task_room")
        if room is None:  # made on the agent's event loop, the thread that runs this
            room = self._task_room = asyncio.Semaphore(self.max_concurrency)

        async def one(task: dict[str, Any]) -> tuple[bool, Any]:
            async with room:
                try:
                    outcome = run(task)
                    if inspect.isawaitable(outcome):
                        outcome = await outcome
                    return True, outcome
                except Exception as exc:  # noqa: BLE001 - as in `_run_chunk`
                    return False, _travelling(exc)

        results = list(await asyncio.gather(*(one(task) for task in tasks)))
        if not own:
            self._tasks_completed = getattr(self, "_tasks_completed", 0) + sum(ok for ok, _ in results)
        return results

    def _run_chunk(self, tasks: list[dict[str, Any]], own: bool = False) -> list[tuple[bool, Any]]:
        """Run a chunk of tasks in order: (True, result) or (False, error) each.

        Sent by the runtime's task router (`map`, `submit_task`), which
        coordinates the chunk itself (records, events and locks, in one
        message before and one after; see `runtime._tasks`): here only
        `do_work` runs. With `own` (this class overrides `execute_task`),
        `execute_task` runs for each task instead, coordinating it itself.
        An error that could not travel back as itself comes as `RemoteError`.
        """
        if self._async_handlers and (self._async_work or (own and inspect.iscoroutinefunction(self.execute_task))):
            return self._run_chunk_async(tasks, own)  # type: ignore[return-value]  # the host awaits it
        run = self.execute_task if own else self.do_work
        results: list[tuple[bool, Any]] = []
        for task in tasks:
            try:
                results.append((True, run(task)))
            except Exception as exc:  # noqa: BLE001 - the router decides: raise, retry or return it
                results.append((False, _travelling(exc)))
        if not own:
            self._tasks_completed = getattr(self, "_tasks_completed", 0) + sum(ok for ok, _ in results)
        return results

    def get_status(self) -> dict[str, Any]:
        return {
            "agent_id": self.agent_id,
            "capabilities": list(self.capabilities),
            "active": True,
            "tasks_completed": getattr(self, "_tasks_completed", 0),
        }

    def handle_request(self, message: Message) -> Any:
        """Answer a request-reply `Message`: actions execute_task, get_status."""
        payload = message.payload if isinstance(message.payload, dict) else {}
        action = payload.get("action")
        if action == "execute_task":
            return self.execute_task(payload.get("task") or payload.get("payload") or {})
        if action == "get_status":
            return self.get_status()
        return {"error": "Unknown action"}

    def request_peer(self, peer_id: str, action: str, payload: Any = None, timeout: float = 30.0) -> Any:
        """Ask another agent, by id, to perform `action` (request-reply)."""
        body = {"action": action, "payload": payload}
        if action == "execute_task":
            body["task"] = payload
        return self.ctx.comm.request_reply.request(self.agent_id, peer_id, body, timeout=timeout)

    def on_receive(self, message: Any) -> Any:
        """Plain tells and asks, and the `Message`s of `comm.send`.

        Runs in the agent's process, one message at a time. By default a
        fire-and-forget `Message` goes on to `handle_request` (so its actions
        work either way); anything else is logged as unexpected, as in pykka.
        """
        if isinstance(message, Message):
            return self.handle_request(message)
        return super().on_receive(message)

    def _handle_in_chain(self, message: AskChain) -> Any:
        # This agent waits while it handles the ask: its own asks meanwhile
        # carry the chain plus its id (see `actors._chain`).
        return run_in_chain(self.agent_id, message.chain, self._handle_receive, message.message)

    def _handle_receive(self, message: Any) -> Any:
        if isinstance(message, Message):
            # A fire-and-forget message is a plain tell, so it reaches
            # `on_receive`; one that expects an answer is a request.
            if message.pattern is MessagePattern.FIRE_AND_FORGET:
                return self.on_receive(message)
            return self.handle_request(message)
        return super()._handle_receive(message)
