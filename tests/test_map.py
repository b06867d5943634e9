"""`runtime._map`: how a map's chunks are sized, against a router whose
costs are known (no agents: the sizing alone)."""

from __future__ import annotations

import threading
import time

from runtime._map import TARGET_CHUNK_SECONDS, Batch


class TimedRouter:
    """A `TaskRouter` stand-in: each chunk costs `coordination` s (reported
    in `spent`, as the real router reports its calls to the sync manager)
    plus `per_task` s per task; it records each chunk's size."""

    def __init__(self, coordination: float, per_task: float) -> None:
        self.coordination = coordination
        self.per_task = per_task
        self.sizes: list[int] = []
        self._lock = threading.Lock()

    def _pick(self, task_type, wait, avoid=None):
        return "agent"

    def _release(self, name):
        pass

    def run_chunk(self, name, tasks, timeout, *, created, spent=None):
        with self._lock:
            self.sizes.append(len(tasks))
        time.sleep(self.coordination + self.per_task * len(tasks))  # the costs being modelled
        if spent is not None:
            spent.append(self.coordination)
        return [(True, task["payload"]) for task in tasks]


def _run(router: TimedRouter, n: int) -> list:
    batch = Batch(router, "t", range(n), agents=[1], total=n, timeout=None, retries=0, return_exceptions=False,
                  ordered=True, bar=None)
    return list(batch.start())


def test_chunks_grow_when_their_coordination_alone_outlasts_the_target():
    router = TimedRouter(coordination=1.6 * TARGET_CHUNK_SECONDS, per_task=0.0)
    assert _run(router, 200) == list(range(200))
    assert max(router.sizes) >= 16, router.sizes  # not one task per chunk for good
    assert len(router.sizes) < 40, router.sizes


def test_tasks_longer_than_the_target_still_go_one_at_a_time():
    router = TimedRouter(coordination=0.0, per_task=1.2 * TARGET_CHUNK_SECONDS)
    assert _run(router, 12) == list(range(12))
    assert set(router.sizes) == {1}
