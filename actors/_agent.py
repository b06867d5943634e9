"""The agent base class users subclass, with the design's built-in behaviour."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from actors._base import ActorBase
from actors._chain import AskChain, run_in_chain
from actors._context import AgentContext
from actors._types import EventType, Message, MessagePattern

__all__ = ["Agent"]

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

        Emits TASK_STARTED, then TASK_COMPLETED with the result or
        TASK_FAILED with the error (which is raised again to the caller).
        """
        ctx = self.ctx
        task_id = task.get("id")
        events, state = ctx.events, ctx.state
        events.emit(self.agent_id, EventType.TASK_STARTED, {"task_id": task_id, "type": task.get("type")})
        state.set("shared", f"task:{task_id}:status", "in_progress")
        with ctx.sync.get_lock(f"task:{task_id}"):
            try:
                result = self.do_work(task)
            except Exception as exc:
                state.set("shared", f"task:{task_id}:status", "failed")
                events.emit(
                    self.agent_id,
                    EventType.TASK_FAILED,
                    {"task_id": task_id, "error": f"{type(exc).__name__}: {exc}"},
                )
                raise
            state.set("shared", f"task:{task_id}:result", result)
            state.set("shared", f"task:{task_id}:status", "completed")
        self._tasks_completed = getattr(self, "_tasks_completed", 0) + 1
        events.emit(self.agent_id, EventType.TASK_COMPLETED, {"task_id": task_id, "result": result})
        return result

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
