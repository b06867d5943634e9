"""Routing tasks to capable agents: `submit_task` and the batch `map`.

A task goes to the least loaded running agent with its capability. If the
agent dies before answering, the task is sent again (to the restarted agent
or another capable one) up to `retries` times; the task id stays the same,
so agents can make a re-run idempotent.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from pykka.messages import ProxyCall

from actors import ActorDeadError, EventType, NoCapableAgentError
from runtime._progress import Progress

if TYPE_CHECKING:
    from runtime._backends import Runtime

__all__ = ["Progress", "TaskRouter"]

# How long a retry waits for a capable agent to come back (e.g. restarting).
_RETRY_WAIT = 5.0


class TaskRouter:
    """Picks agents for tasks and counts what each has in flight."""

    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime
        self._inflight: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _pick(self, task_type: str, wait: float, avoid: str | None = None) -> str:
        deadline = time.monotonic() + wait
        while True:
            names, known = self._rt._capable(task_type)
            if avoid in names and len(names) > 1:
                names.remove(avoid)  # after a failure, another agent first
            if names:
                with self._lock:
                    name = min(names, key=lambda n: self._inflight[n])
                    self._inflight[name] += 1
                return name
            if time.monotonic() >= deadline or self._rt._closed:  # shut down: nothing will come back
                raise NoCapableAgentError(task_type, known)
            time.sleep(0.01)

    def submit(self, task: dict[str, Any], *, retries: int = 1, timeout: float | None = None) -> Any:
        if not isinstance(task, dict) or "type" not in task:
            msg = f"a task is a dict with a 'type' key, got {task!r}"
            raise ValueError(msg)
        task = {"id": uuid.uuid4().hex, **task}
        self._rt.events.emit("runtime", EventType.TASK_CREATED, {"task_id": task["id"], "type": task["type"]})
        call = ProxyCall(("execute_task",), (task,), {})
        failed = None
        for attempt in range(retries + 1):
            if attempt:
                time.sleep(min(0.005 * 2**attempt, 0.2))  # let the supervisor catch up
            name = self._pick(task["type"], _RETRY_WAIT if attempt else 0.0, avoid=failed)
            try:
                return self._rt._peer(name).ask(call, timeout=timeout)
            except ActorDeadError:
                failed = name
                if attempt == retries:
                    raise
            finally:
                with self._lock:
                    self._inflight[name] -= 1
        raise AssertionError("unreachable")

    def imap(
        self,
        task_type: str,
        payloads: Iterable[Any],
        *,
        timeout: float | None = None,
        retries: int = 1,
        return_exceptions: bool = False,
        ordered: bool = True,
        progress: bool = False,
    ) -> Iterator[Any]:
        """Results of one task per payload, lazily, with a bounded window.

        Payloads are read from the iterable only as room frees up: at most
        two tasks per capable agent are in flight (one running, one waiting
        in its mailbox), and with `ordered` at most that many finished
        results wait for an earlier one. So a pipeline larger than memory
        streams through. `ordered=False` yields results as they complete.
        """
        names, known = self._rt._capable(task_type)
        if not names:
            raise NoCapableAgentError(task_type, known)  # now, not at the first next()
        total = len(payloads) if hasattr(payloads, "__len__") else None  # type: ignore[arg-type]
        window = max(1, 2 * len(names))
        return self._results(task_type, payloads, window, timeout, retries, return_exceptions, ordered,
                             Progress(total) if progress else None)  # drawn on a terminal only

    def _results(
        self, task_type: str, payloads: Iterable[Any], window: int, timeout: float | None, retries: int,
        return_exceptions: bool, ordered: bool, bar: Progress | None,
    ) -> Iterator[Any]:
        batch = uuid.uuid4().hex[:12]

        def run(index: int, payload: Any) -> Any:
            task = {"id": f"{batch}-{index}", "type": task_type, "payload": payload}
            try:
                return self.submit(task, retries=retries, timeout=timeout)
            except Exception as exc:
                if return_exceptions:
                    return exc
                raise

        source = enumerate(payloads)
        # Not a `with`: its exit waits for every task in flight, so a Ctrl-C
        # (KeyboardInterrupt while this waits) would wait for the longest.
        pool = ThreadPoolExecutor(max_workers=window, thread_name_prefix="map")
        interrupted = False
        running: dict[Future[Any], int] = {}
        finished: dict[int, Any] = {}
        next_out = 0
        exhausted = False
        try:
            while True:
                # Top up the window; ordered output also bounds the results kept waiting.
                while not exhausted and len(running) + len(finished) < window:
                    try:
                        index, payload = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    running[pool.submit(run, index, payload)] = index
                if not running and not finished:
                    return
                if running:
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        finished[running.pop(future)] = future.result()
                        if bar is not None:
                            bar.step()
                if ordered:
                    while next_out in finished:
                        yield finished.pop(next_out)
                        next_out += 1
                else:
                    for index in list(finished):
                        yield finished.pop(index)
        except KeyboardInterrupt:
            interrupted = True
            raise
        finally:
            # Nothing more is handed out. After a Ctrl-C, return at once: the
            # tasks in flight end with their agents, which the runtime's
            # shutdown (interrupted too, see `RuntimeBase.__exit__`) stops.
            pool.shutdown(wait=not interrupted, cancel_futures=True)
            if bar is not None:
                bar.close()
