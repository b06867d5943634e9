"""The agent base class users subclass, with the design's built-in behaviour."""

from __future__ import annotations

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
    """

    capabilities: ClassVar[list[str]] = []
    stop_on_failure = True  # a crash: the process exits and the supervisor acts
    ctx: AgentContext = None  # type: ignore[assignment]  # set by the host

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

    def _run_chunk(self, tasks: list[dict[str, Any]], own: bool = False) -> list[tuple[bool, Any]]:
        """Run a chunk of tasks in order: (True, result) or (False, error) each.

        Sent by the runtime's task router (`map`, `submit_task`), which
        coordinates the chunk itself (records, events and locks, in one
        message before and one after; see `runtime._tasks`): here only
        `do_work` runs. With `own` (this class overrides `execute_task`),
        `execute_task` runs for each task instead, coordinating it itself.
        An error that could not travel back as itself comes as `RemoteError`.
        """
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
