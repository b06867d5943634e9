"""One `map`/`imap` run: payloads in adaptive chunks over every capable agent.

Like `multiprocessing.Pool.map`, tasks travel in chunks, so a tiny task
costs a fraction of a round trip; unlike it, the chunk size is measured,
not guessed: each chunk's round trip, less what its coordination took
(`TaskRouter.run_chunk`'s `spent`), gives the time per task, and the next
chunk is sized to take about `TARGET_CHUNK_SECONDS` (a task of 1 ms goes
some dozens at a time, one of a second alone), or twice its coordination
where that takes longer (a loaded Ray cluster: else chunks whose
coordination alone outlasts the target would stay at one task, and the
run at a few round trips per task, for good). A chunk is at most twice
the last one, never more than the results consumed so far (a slow start
driven by the consumer, so a lazy consumer keeps a small window), and,
when the number of payloads is known, small enough that the tail is shared
out evenly (as `Pool.map`'s chunks of len / 4 workers).

Threads: two workers per capable agent in the runtime's process, each
taking a chunk, picking the least loaded capable agent and running the
chunk there through `TaskRouter.run_chunk` (so each agent has one chunk
running and one waiting in its mailbox); the consumer's thread (the caller
of `next`) only waits for results. All shared state is under one condition.

An agent whose work is async runs up to its `max_concurrency` tasks at
once (`Agent._task_concurrency`), and a task that only waits (an awaited
sleep, a request) measures as long as it waits, so its chunks are of one
task: such an agent gets one worker per task it runs at once, plus one
(at most `MAX_WORKERS_PER_AGENT`; beyond that, chunks are made at least
big enough to fill its concurrency). The router picks agents by their
tasks in flight per unit of concurrency. Sync agents keep their two.

Per task: results in input order (or as completed), `retries` re-sends
of a task whose agent died (the whole unfinished chunk goes back to the
queue, task by task; nothing of it was recorded, so no task is committed
twice), `return_exceptions`, and the progress bar counting tasks.

With a `RunLog` (`map(..., run_id=...)`, see `_runs`), a worker first
takes the recorded results of its chunk's indices (they go out like any
other result) and runs only the rest; the successes of a chunk are
recorded before its results are. Task ids are then `<run_id>:<index>`,
the same in every attempt, so an agent can make its side effects
idempotent by task id.
"""

from __future__ import annotations

import collections
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from actors import ActorDeadError, NoCapableAgentError
from runtime.wire._signals import slice_for_signals

if TYPE_CHECKING:
    from runtime._runs import RunLog
    from runtime._progress import Progress
    from runtime._tasks import TaskRouter

__all__ = ["MAX_CHUNK", "MAX_WORKERS_PER_AGENT", "RETRY_WAIT", "TARGET_CHUNK_SECONDS", "Batch"]

TARGET_CHUNK_SECONDS = 0.05  # about this long per chunk: overhead amortised, tail balanced, bar moving
MAX_CHUNK = 4096  # tasks per chunk at most (bounds a chunk's messages)
MAX_WORKERS_PER_AGENT = 65  # worker threads one async agent gets at most (each waits on one chunk)
# How long a retried task (a chunk, or `submit_task`'s) waits for a capable
# agent to come back; longer (up to the runtime's `start_timeout` more)
# while one is being restarted (`TaskRouter._pick`): a Ray actor's restart
# on a loaded cluster can take longer than this.
RETRY_WAIT = 5.0


class Batch:
    """The state of one run; `start()` gives its generator of outcomes.

    Invariants (under `_cond`): `_taken - _consumed` tasks are in flight,
    queued for retry or finished but not yet yielded, and a new chunk is
    taken only while it fits below `_window()`; a worker waiting for that
    has set `_starved`, and the consumer wakes the workers only then.
    """

    def __init__(
        self, router: TaskRouter, task_type: str, payloads: Iterable[Any], *, agents: list[int], total: int | None,
        timeout: float | None, retries: int, return_exceptions: bool, ordered: bool, bar: Progress | None,
        run: RunLog | None = None, on_end: Callable[[], None] | None = None,
    ) -> None:
        self._router = router
        self._type = task_type
        self._source = enumerate(payloads)
        # `agents`: the concurrency of each capable agent (1: sync work).
        # Workers (chunks in flight): two per sync agent, one per task an
        # async agent runs at once plus one; `_floor`: the smallest chunk
        # that still fills an agent given fewer workers than its concurrency.
        slots = [min(c + 1, MAX_WORKERS_PER_AGENT) if c > 1 else 2 for c in agents] or [2]
        self._slots = sum(slots)
        self._floor = max((math.ceil(c / (s - 1)) for c, s in zip(agents, slots) if c > 1), default=1)
        self._total = total
        self._timeout = timeout
        self._retries = retries
        self._return_exceptions = return_exceptions
        self._ordered = ordered
        self._bar = bar
        self._run = run
        self._on_end = on_end  # called once, when the run is over and no worker is left
        self._prefix = uuid.uuid4().hex[:12] if run is None else f"{run.run_id}:"
        self._fatal: BaseException | None = None  # raised at once (a run's payloads that don't match)
        self._cond = threading.Condition()
        self._exhausted = False
        self._source_error: BaseException | None = None
        self._retry: collections.deque[tuple[int, Any]] = collections.deque()
        self._attempts: dict[int, int] = {}  # index -> times its agent died under it
        self._finished: dict[int, tuple[bool, Any]] = {}  # index -> outcome, not yet yielded
        self._taken = 0  # payloads read from the source
        self._consumed = 0  # outcomes yielded
        self._size = 1.0  # the next chunk's size, from measurements
        self._per_task: float | None = None  # seconds per task (moving average of round trips)
        self._coordination: float | None = None  # seconds a chunk's coordination takes (moving average)
        self._stop = False
        self._starved = False  # a worker waits for room in the window
        self._workers: list[threading.Thread] = []

    # -- the consumer ------------------------------------------------------------

    def start(self) -> Iterator[Any]:
        """The generator of outcomes, primed: it is suspended inside its
        `try` (no worker started yet), so closing or dropping it, even
        before its first `next`, runs its `finally` and ends the run."""
        outcomes = self._results()
        next(outcomes)
        return outcomes

    def _results(self) -> Iterator[Any]:
        interrupted = False
        try:
            yield None  # the priming step (`start`)
            for _ in range(self._slots):
                worker = threading.Thread(target=self._work, name="map-worker", daemon=True)
                worker.start()
                self._workers.append(worker)
            while True:
                with self._cond:
                    while True:
                        if self._fatal is not None:
                            raise self._fatal
                        ready = self._ready_outcomes()
                        if ready:
                            break
                        if self._source_error is not None:
                            raise self._source_error
                        if self._exhausted and self._taken == self._consumed:
                            if self._run is not None:
                                self._run.finish(self._taken)
                            return
                        self._cond.wait(slice_for_signals(None))  # the main thread sees a Ctrl-C meanwhile
                for ok, value in ready:  # yielded outside the lock: the workers go on meanwhile
                    if not ok and not self._return_exceptions:
                        raise value
                    with self._cond:
                        self._consumed += 1
                        if self._starved and self._room_for_chunk():
                            self._starved = False
                            self._cond.notify_all()  # room for a whole chunk again (see `_take`)
                    yield value
        except KeyboardInterrupt:
            interrupted = True
            raise
        finally:
            with self._cond:
                self._stop = True
                self._cond.notify_all()
            if not interrupted:  # a Ctrl-C returns at once: the runtime's interrupted shutdown ends the chunks
                self._join_workers()  # each finishes (and records) the chunk it runs
            elif self._on_end is not None:
                threading.Thread(target=self._join_workers, name="map-end", daemon=True).start()
            if self._bar is not None:
                self._bar.close()

    def _join_workers(self) -> None:
        """Wait for every worker to end, then `on_end` (the run is over)."""
        try:
            for worker in self._workers:
                while worker.is_alive():
                    worker.join(slice_for_signals(None))  # in the main thread, a Ctrl-C is seen meanwhile
        finally:
            if self._on_end is not None:
                self._on_end()

    def _ready_outcomes(self) -> list[tuple[bool, Any]]:
        """Take the outcomes that can be yielded now: the next ones in input
        order (or every finished one, unordered). Under `_cond`."""
        finished = self._finished
        if not self._ordered:
            ready = list(finished.values())
            finished.clear()
            return ready
        ready = []
        index = self._consumed
        while (outcome := finished.pop(index, None)) is not None:
            ready.append(outcome)
            index += 1
        return ready

    # -- the workers ---------------------------------------------------------------

    def _window(self) -> int:
        return self._slots * self._chunk_size()

    def _chunk_size(self) -> int:
        size = max(min(self._size, max(1, self._consumed), MAX_CHUNK), self._floor)
        if self._total is not None:  # share the tail out evenly
            size = min(size, max(1, math.ceil((self._total - self._taken) / self._slots)))
        return max(1, int(size))

    def _room_for_chunk(self) -> bool:
        return self._window() - (self._taken - self._consumed) >= self._chunk_size()

    def _take(self) -> tuple[list[tuple[int, Any]], bool] | None:
        """The next chunk, and whether it holds retries; None when done."""
        with self._cond:
            while not self._stop:
                size = self._chunk_size()
                if self._retry:
                    return [self._retry.popleft() for _ in range(min(size, len(self._retry)))], True
                # A whole chunk's room, not a sliver: waking for each
                # consumed result made chunks of one or two.
                if not self._exhausted and self._room_for_chunk():
                    chunk = self._read(size)
                    if chunk:
                        return chunk, False
                    continue
                if self._exhausted:
                    return None  # a chunk that fails later is retried by the worker that ran it
                self._starved = True  # the consumer wakes us once a chunk fits
                self._cond.wait()
            return None

    def _read(self, count: int) -> list[tuple[int, Any]]:
        chunk = []
        try:
            for _ in range(count):
                chunk.append(next(self._source))
        except StopIteration:
            self._exhausted = True
        except BaseException as exc:  # noqa: BLE001 - the payloads' iterator failed: the consumer raises it
            self._exhausted = True
            self._source_error = exc
        self._taken += len(chunk)
        if self._exhausted:
            self._cond.notify_all()
        return chunk

    def _work(self) -> None:
        try:
            self._work_on()
        except BaseException as exc:  # a bug here must fail the batch, never leave its consumer waiting
            with self._cond:
                if self._fatal is None:
                    self._fatal = exc
                self._stop = True
                self._cond.notify_all()
            raise

    def _work_on(self) -> None:
        router = self._router
        while (taken := self._take()) is not None:
            chunk, retried = taken
            digests: dict[int, bytes] = {}
            if self._run is not None:
                chunk, digests = self._recorded(chunk)
                if not chunk:
                    continue
            tasks = [{"id": f"{self._prefix}{i}" if self._run else f"{self._prefix}-{i}",
                      "type": self._type, "payload": p} for i, p in chunk]
            if retried:
                time.sleep(min(0.005 * 2 ** max(self._attempts.get(i, 1) for i, _ in chunk), 0.2))
            try:
                # With retries, a moment with every capable agent restarting
                # is waited out, as a retry is (none at all was refused at start).
                name = router._pick(self._type, RETRY_WAIT if retried or self._retries else 0.0)
            except NoCapableAgentError as exc:
                self._finish(chunk, [(False, exc)] * len(chunk), None)
                continue
            timeout = None if self._timeout is None else self._timeout * len(chunk)
            spent: list[float] = []
            started = time.perf_counter()
            try:
                outcomes = router.run_chunk(name, tasks, timeout, created=not retried, spent=spent)
            except ActorDeadError as exc:
                self._requeue(chunk, exc)
                continue
            except Exception as exc:  # noqa: BLE001 - a timeout or a lock timeout: every task of the chunk
                outcomes = [(False, exc)] * len(chunk)
            finally:
                router._release(name)
            if self._run is not None:
                try:  # recorded before anyone sees them
                    self._run.record([(i, digests[i], v) for (i, _p), (ok, v) in zip(chunk, outcomes) if ok])
                except Exception as exc:  # noqa: BLE001 - the store failed: so does the chunk
                    outcomes = [(False, exc)] * len(chunk)
            self._finish(chunk, outcomes, time.perf_counter() - started, sum(spent))

    def _recorded(self, chunk: list[tuple[int, Any]]) -> tuple[list[tuple[int, Any]], dict[int, bytes]]:
        """Finish the tasks of `chunk` whose results were recorded; the
        rest, and their payloads' digests. Payloads that don't match the
        run's records stop the whole map."""
        try:
            found, digests = self._run.recorded(chunk)  # type: ignore[union-attr]
        except Exception as exc:  # noqa: BLE001 - a mismatch (ValueError), or the store failed
            with self._cond:
                self._fatal, self._stop = exc, True
                self._cond.notify_all()
            return [], {}
        if found:
            done = [(i, p) for i, p in chunk if i in found]
            self._finish(done, [(True, found[i]) for i, _p in done], None)
            with self._cond:  # recorded chunks cost no round trip: take bigger ones
                self._size = min(2.0 * max(self._size, len(done)), float(MAX_CHUNK))
        return [(i, p) for i, p in chunk if i not in found], digests

    def _finish(self, chunk: list[tuple[int, Any]], outcomes: list[tuple[bool, Any]], elapsed: float | None,
                coordination: float = 0.0) -> None:
        """Hand out `chunk`'s outcomes; with `elapsed` (its round trip, of
        which `coordination` s went to its records, events and locks), size
        the next chunk."""
        with self._cond:
            for (index, _payload), outcome in zip(chunk, outcomes):
                self._finished[index] = outcome
                self._attempts.pop(index, None)
            if elapsed is not None:
                per_task = max(elapsed - coordination, 0.0) / len(chunk)
                self._per_task = per_task if self._per_task is None else 0.7 * self._per_task + 0.3 * per_task
                self._coordination = coordination if self._coordination is None \
                    else 0.7 * self._coordination + 0.3 * coordination
                fit = max(TARGET_CHUNK_SECONDS, 2 * self._coordination) / max(self._per_task, 1e-7)
                self._size = max(1.0, min(2.0 * max(self._size, len(chunk)), fit))
            if self._bar is not None:
                self._bar.step(len(chunk))
            self._cond.notify_all()

    def _requeue(self, chunk: list[tuple[int, Any]], exc: ActorDeadError) -> None:
        """The agent died under `chunk`: each task goes again, or fails if out of retries."""
        lost = []
        with self._cond:
            for index, payload in chunk:
                attempts = self._attempts.get(index, 0) + 1
                if attempts > self._retries:
                    lost.append((index, payload))
                else:
                    self._attempts[index] = attempts
                    self._retry.append((index, payload))
            self._cond.notify_all()
        if lost:
            self._finish(lost, [(False, exc)] * len(lost), None)
