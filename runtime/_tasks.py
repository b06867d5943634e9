"""Routing tasks to capable agents: `submit_task`, and chunks for `map`.

A task goes to the least loaded running agent with its capability. If the
agent dies before answering, the task is sent again (to the restarted agent
or another capable one) up to `retries` times; the task id stays the same,
so agents can make a re-run idempotent.

Tasks travel in chunks (one task for `submit_task`, many for `map`, see
`_map`), and the router coordinates a chunk here, in the runtime's process,
around one exchange with the agent: the sync manager's `tasks_begin`
(TASK_CREATED, TASK_STARTED, status "in_progress", and the locks
`task:{id}` taken for the agent) before it, `tasks_end` (results, statuses,
TASK_COMPLETED or TASK_FAILED, the locks released) after it. Both are
in-process calls of an inline service: a chunk costs one round trip to the
agent, which only runs `do_work` (`Agent._run_chunk`). An agent whose class
overrides `execute_task` gets its tasks through `execute_task`, which
coordinates each itself.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, cast

from pykka.messages import ProxyCall

from actors import ActorDeadError, Agent, AskTimeout, Event, EventType, NoCapableAgentError, RunInProgressError
from actors._deferral import carry_deferred, defer_tells, run_deferred
from actors._types import new_id
from runtime._map import RETRY_WAIT, Batch
from runtime._runs import RunLog, check_run_id
from runtime._progress import Progress

if TYPE_CHECKING:
    from runtime._backends import Runtime

__all__ = ["Progress", "TaskRouter"]


Outcome = tuple[bool, Any]  # (True, result) or (False, the exception)


class TaskRouter:
    """Picks agents for tasks, counts what each has in flight, runs chunks."""

    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime
        self._inflight: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._own_execute: dict[str, bool] = {}  # agent name -> its class overrides execute_task
        # agent name -> tasks it runs at once (`Agent._task_concurrency`):
        # 1 for sync work, `max_concurrency` for async work.
        self._concurrency: dict[str, int] = {}
        self._refs: dict[str, Any] = {}  # agent name -> its ref
        self._runs: set[str] = set()  # the run ids of the maps running now (`_claim_run`)

    def note_class(self, name: str, agent_cls: type[Agent]) -> None:
        """Remember whether agent `name`'s class overrides `execute_task`."""
        self._own_execute[name] = getattr(agent_cls, "execute_task", None) is not Agent.execute_task
        concurrency = getattr(agent_cls, "_task_concurrency", None)
        self._concurrency[name] = concurrency() if concurrency is not None else 1

    def concurrency(self, name: str) -> int:
        """How many tasks agent `name` runs at once (1 unless its work is async)."""
        return self._concurrency.get(name, 1)

    def _pick(self, task_type: str, wait: float, avoid: str | None = None) -> str:
        """The least loaded running agent with `task_type` (counted in
        flight); waits up to `wait` s for one, and while `wait` is not 0,
        for one being restarted (at most `start_timeout` s more)."""
        now = time.monotonic()
        deadline = now + wait
        restart_deadline = deadline + self._rt.start_timeout if wait else deadline
        while True:
            names = self._rt._capable(task_type, checked=False)
            last = [avoid] if avoid in names and len(names) > 1 else []  # after a failure, another agent first
            for group in ([n for n in names if n not in last], last):
                while group:
                    with self._lock:
                        # Least loaded for its concurrency: an async agent that
                        # runs 10 tasks at once takes 10 times the tasks in flight.
                        concurrency = self._concurrency
                        name = min(group, key=lambda n: self._inflight[n] / concurrency.get(n, 1))
                        self._inflight[name] += 1
                    # Only the chosen agent's process is looked at (one poll
                    # per task): one that died just now is passed over.
                    if self._rt._alive(name):
                        return name
                    self._release(name)
                    group.remove(name)
            now = time.monotonic()
            if self._rt._closed or now >= restart_deadline or (  # shut down: nothing will come back
                    now >= deadline and not self._rt._coming_back(task_type)):
                raise NoCapableAgentError(task_type, self._rt._capabilities())
            time.sleep(0.01)

    def _release(self, name: str) -> None:
        with self._lock:
            self._inflight[name] -= 1

    def run_chunk(
        self, name: str, tasks: list[dict[str, Any]], timeout: float | None, *, created: bool,
        spent: list[float] | None = None,
    ) -> list[Outcome]:
        """Run `tasks` on agent `name`, coordinated; an outcome per task.

        Raises `ActorDeadError` if the agent died before answering (nothing
        of the chunk was recorded; its locks are given back), `LockTimeout`
        if a task's lock stayed taken, `AskTimeout` after `timeout` (the
        chunk is then recorded whenever the agent finishes it).
        `created`: emit TASK_CREATED for each task first. `spent`, if
        given, gets the seconds the coordination took here (the calls to the
        sync manager before and after the agent's, and the start's records
        and events deferred meanwhile), for `_map`'s sizing.
        """
        peer = self._refs.get(name)
        if peer is None:  # one ref per agent: it resolves the name once, and follows restarts
            peer = self._refs[name] = self._rt._peer(name)
        if self._own_execute.get(name, False):
            if created:
                self._emit_created(tasks)
            return cast("list[Outcome]", peer.ask(ProxyCall(("_run_chunk",), (tasks, True), {}), timeout=timeout))
        sync = self._rt.sync
        ids = [task["id"] for task in tasks]
        started = time.perf_counter()
        # The chunk goes to the agent before the store and the bus handle
        # its start (records and events, told by the sync manager): they
        # do that while the agent works (see `defer_tells`).
        deferred_here = defer_tells()
        try:
            sync.begin_tasks([(task["id"], task["type"]) for task in tasks], name, created=created)
            future = peer.ask(ProxyCall(("_run_chunk",), (tasks,), {}), block=False)
        finally:
            if deferred_here:
                run_deferred()
        began = time.perf_counter()
        try:
            outcomes: list[Outcome] = future.get(timeout=timeout)
        except ActorDeadError:
            self._abort(ids, name)
            raise
        except AskTimeout:
            threading.Thread(target=self._end_late, args=(future, ids, name), daemon=True).start()
            raise
        ending = time.perf_counter()
        # The end's records and events are queued in the store's and the
        # bus's mailboxes before this returns (so anyone who reads after
        # it reads them), and written while this thread's next chunk
        # travels (`carry_deferred`), or by the timer thread.
        deferred_here = defer_tells()
        try:
            self._end(ids, outcomes, name)
        finally:
            if deferred_here:
                carry_deferred()
        if spent is not None:
            spent.append(began - started + time.perf_counter() - ending)
        return outcomes

    def _end(self, ids: list[Any], outcomes: list[Outcome], name: str) -> None:
        self._rt.sync.end_tasks(
            [(task_id, ok, value if ok else f"{type(value).__name__}: {value}")
             for task_id, (ok, value) in zip(ids, outcomes)],
            name,
        )

    def _abort(self, ids: list[Any], name: str) -> None:
        try:
            self._rt.sync.abort_tasks(ids, name)
        except Exception:  # noqa: BLE001 - the runtime may be closing; its death releases them anyway
            pass

    def _end_late(self, future: Any, ids: list[Any], name: str) -> None:
        # A chunk whose asker gave up still runs on the agent, under its
        # locks: record it when it ends (or free the locks if it died).
        try:
            outcomes = future.get(timeout=None)
        except Exception:  # noqa: BLE001 - dead, or the runtime closed
            self._abort(ids, name)
            return
        try:
            self._end(ids, outcomes, name)
        except Exception:  # noqa: BLE001 - the runtime closed meanwhile
            pass

    def _emit_created(self, tasks: list[dict[str, Any]]) -> None:
        events = [Event(type=EventType.TASK_CREATED, source="runtime",
                        payload={"task_id": task["id"], "type": task["type"]}) for task in tasks]
        self._rt.events._cast("emit_many", events)

    def submit(self, task: dict[str, Any], *, retries: int = 1, timeout: float | None = None) -> Any:
        if not isinstance(task, dict) or "type" not in task:
            msg = f"a task is a dict with a 'type' key, got {task!r}"
            raise ValueError(msg)
        task = {"id": new_id(), **task}
        failed = None
        for attempt in range(retries + 1):
            if attempt:
                time.sleep(min(0.005 * 2**attempt, 0.2))  # let the supervisor catch up
            try:
                name = self._pick(task["type"], RETRY_WAIT if attempt else 0.0, avoid=failed)
            except NoCapableAgentError:
                if not attempt:
                    self._emit_created([task])
                raise
            try:
                ((ok, value),) = self.run_chunk(name, [task], timeout, created=not attempt)
            except ActorDeadError:
                failed = name
                if attempt == retries:
                    raise
                continue
            finally:
                self._release(name)
            if ok:
                return value
            raise value
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
        run_id: str | None = None,
    ) -> Iterator[Any]:
        """Results of one task per payload, lazily, with a bounded window.

        Payloads go to the agents in chunks (see `_map.Batch`): at most two
        chunks per capable agent are in flight (one running, one waiting in
        its mailbox; for an agent with async work, one more than the tasks
        it runs at once, its `max_concurrency`), and what is in flight or
        finished but not yet consumed stays within a window that grows
        only as results are consumed. So a pipeline larger than memory
        streams through.
        `ordered=False` yields results as they complete. With `run_id`,
        results are recorded and recorded ones not run again (`_runs`); a
        run_id that a map of this runtime is running raises
        `RunInProgressError` here, at once, and is free again once that
        map ended (returned, raised, or its generator was closed or dropped).
        """
        names = self._rt._capable(task_type)
        if not names:
            raise NoCapableAgentError(task_type, self._rt._capabilities())  # now, not at the first next()
        total = len(payloads) if hasattr(payloads, "__len__") else None  # type: ignore[arg-type]
        concurrency = [self.concurrency(name) for name in names]
        if run_id is None:
            return Batch(self, task_type, payloads, agents=concurrency, total=total, timeout=timeout,
                         retries=retries, return_exceptions=return_exceptions, ordered=ordered,
                         bar=Progress(total) if progress else None).start()
        release = self._claim_run(check_run_id(run_id))
        try:
            run = RunLog(self._rt.state, run_id, total)
            return Batch(self, task_type, payloads, agents=concurrency, total=total, timeout=timeout,
                         retries=retries, return_exceptions=return_exceptions, ordered=ordered,
                         bar=Progress(total) if progress else None, run=run, on_end=release).start()
        except BaseException:
            release()
            raise

    def _claim_run(self, run_id: str) -> Callable[[], None]:
        """Hold `run_id` for one map; what frees it (idempotent).

        `RunInProgressError` if a map of this runtime holds it: two maps
        under one id would run each task twice and race on its records.
        (Another runtime can't: one runtime at a time holds a state file.)
        """
        with self._lock:
            if run_id in self._runs:
                raise RunInProgressError(run_id)
            self._runs.add(run_id)
        freed = False

        def release() -> None:
            nonlocal freed
            with self._lock:
                if not freed:
                    freed = True
                    self._runs.discard(run_id)

        return release
