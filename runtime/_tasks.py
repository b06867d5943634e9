"""Routing tasks to capable agents: `submit_task` and the batch `map`.

A task goes to the least loaded running agent with its capability. If the
agent dies before answering, the task is sent again (to the restarted agent
or another capable one) up to `retries` times; the task id stays the same,
so agents can make a re-run idempotent.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from pykka.messages import ProxyCall

from actors import ActorDeadError, EventType, NoCapableAgentError

if TYPE_CHECKING:
    from runtime._runtime import Runtime

__all__ = ["TaskRouter"]

# How long a retry waits for a capable agent to come back (e.g. restarting).
_RETRY_WAIT = 5.0


class TaskRouter:
    """Picks agents for tasks and counts what each has in flight."""

    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime
        self._inflight: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _pick(self, task_type: str, wait: float) -> str:
        deadline = time.monotonic() + wait
        while True:
            names, known = self._rt._capable(task_type)
            if names:
                with self._lock:
                    name = min(names, key=lambda n: self._inflight[n])
                    self._inflight[name] += 1
                return name
            if time.monotonic() >= deadline:
                raise NoCapableAgentError(task_type, known)
            time.sleep(0.01)

    def submit(self, task: dict[str, Any], *, retries: int = 1, timeout: float | None = None) -> Any:
        if not isinstance(task, dict) or "type" not in task:
            msg = f"a task is a dict with a 'type' key, got {task!r}"
            raise ValueError(msg)
        task = {"id": uuid.uuid4().hex, **task}
        self._rt.events.emit("runtime", EventType.TASK_CREATED, {"task_id": task["id"], "type": task["type"]})
        call = ProxyCall(("execute_task",), (task,), {})
        for attempt in range(retries + 1):
            name = self._pick(task["type"], _RETRY_WAIT if attempt else 0.0)
            try:
                return self._rt._peer(name).ask(call, timeout=timeout)
            except ActorDeadError:
                if attempt == retries:
                    raise
            finally:
                with self._lock:
                    self._inflight[name] -= 1
        raise AssertionError("unreachable")

    def map(
        self,
        task_type: str,
        payloads: Iterable[Any],
        *,
        timeout: float | None,
        retries: int,
        progress: bool,
        return_exceptions: bool,
    ) -> list[Any]:
        items = list(payloads)
        names, known = self._rt._capable(task_type)
        if not names:
            raise NoCapableAgentError(task_type, known)
        batch = uuid.uuid4().hex[:12]
        done = 0
        started = time.monotonic()
        done_lock = threading.Lock()

        def run(index: int) -> Any:
            nonlocal done
            task = {"id": f"{batch}-{index}", "type": task_type, "payload": items[index]}
            try:
                return self.submit(task, retries=retries, timeout=timeout)
            except Exception as exc:
                if return_exceptions:
                    return exc
                raise
            finally:
                with done_lock:
                    done += 1
                    if progress:
                        _show_progress(done, len(items), started)

        # Two in flight per agent: one running, one queued in its mailbox.
        with ThreadPoolExecutor(max_workers=max(1, 2 * len(names)), thread_name_prefix="map") as pool:
            results = list(pool.map(run, range(len(items))))
        if progress:
            sys.stderr.write("\n")
        return results


def _show_progress(done: int, total: int, started: float) -> None:
    elapsed = max(time.monotonic() - started, 1e-9)
    rate = done / elapsed
    eta = (total - done) / rate if rate else 0.0
    width = 30
    filled = int(width * done / total) if total else width
    bar = "#" * filled + "-" * (width - filled)
    sys.stderr.write(f"\r[{bar}] {done}/{total} {rate:,.1f}/s ETA {eta:,.1f}s")
    sys.stderr.flush()
