"""Records of resumable batches: `map(..., run_id=...)`, `runs()`, `drop_run()`.

A run's records live in the state store's reserved namespace `_runs`
(quiet: no history rows, no STATE_CHANGED), so they are durable exactly
as the store is (in memory: for the runtime's life; with `state_path`:
across crashes of the runtime's process):

- `meta:<run_id>`: {run_id, total, done, created, updated, high}, where
  `high` is one past the highest index recorded;
- `res:<run_id>:<block>`: {index: (digest, result)} for the `BLOCK`
  indices of that block that succeeded. Blocks keep the store's per-key
  overhead to one entry per `BLOCK` results; only successes are recorded,
  so a task that failed runs again when the run is resumed.

`digest` is a short hash of the payload's pickle: a resumed call whose
payload at a recorded index differs raises `ValueError` naming the run.

Writes: one `update_many` per finished chunk (its blocks and the meta
record together); with a state file the store answers it once committed,
and the chunk's results are yielded only after that. So a result the
caller saw is never computed again, and what a crash loses is what was in
flight: at most `2 * agents` chunks (`_map`), each at most `MAX_CHUNK`
tasks (and never more than the results consumed so far).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import Any

from actors._state import RUNS
from runtime.wire._serialization import dumps

__all__ = ["BLOCK", "RunLog", "drop_run", "list_runs"]

BLOCK = 256  # results per record key
_CACHED_BLOCKS = 16  # blocks kept for look-ups (workers read neighbouring blocks)


def _meta_key(run_id: str) -> str:
    return f"meta:{run_id}"


def _block_key(run_id: str, block: int) -> str:
    return f"res:{run_id}:{block}"


def _digest(payload: Any) -> bytes:
    return hashlib.blake2b(dumps(payload, "payload"), digest_size=8).digest()


def _merge(
    entries: dict[int, tuple[bytes, Any]], old: dict[int, tuple[bytes, Any]] | None
) -> dict[int, tuple[bytes, Any]]:
    # Runs inside the store (module-level: pickles by reference on Ray).
    return {**(old or {}), **entries}


def _count(added: int, high: int, stamp: float, old: dict[str, Any]) -> dict[str, Any]:
    return {**old, "done": old["done"] + added, "high": max(old["high"], high), "updated": stamp}


def _set_total(total: int, old: dict[str, Any]) -> dict[str, Any]:
    return {**old, "total": total if old["total"] is None else old["total"]}


def check_run_id(run_id: Any) -> str:
    if not isinstance(run_id, str) or not run_id:
        msg = f"run_id must be a non-empty str, got {run_id!r}"
        raise ValueError(msg)
    return run_id


class RunLog:
    """One run's records, as a `map` (or the CLI) reads and extends them.

    `state` is a `StateClient`. Thread-safe: the map's workers call
    `recorded` and `record` concurrently.
    """

    def __init__(self, state: Any, run_id: str, total: int | None) -> None:
        self.run_id = check_run_id(run_id)
        self._state = state
        self._lock = threading.Lock()
        self._blocks: OrderedDict[int, dict[int, tuple[bytes, Any]]] = OrderedDict()
        now = time.time()
        meta = state.get(RUNS, _meta_key(run_id))
        if meta is None:
            meta = {"run_id": run_id, "total": total, "done": 0, "created": now, "updated": now, "high": 0}
            state.set(RUNS, _meta_key(run_id), meta)
        elif total is not None and meta["total"] is not None and meta["total"] != total:
            msg = (f"run {run_id!r} was recorded with {meta['total']} payloads, not {total}: "
                   f"pass the same payloads, or drop_run({run_id!r}) to start it over")
            raise ValueError(msg)
        #: How many results were recorded when this call started (what a resume skips).
        self.recorded_before: int = meta["done"]

    def _block(self, block: int) -> dict[int, tuple[bytes, Any]]:
        with self._lock:
            found = self._blocks.get(block)
            if found is not None:
                self._blocks.move_to_end(block)
                return found
        found = self._state.get(RUNS, _block_key(self.run_id, block)) or {}
        with self._lock:
            self._blocks[block] = found
            if len(self._blocks) > _CACHED_BLOCKS:
                self._blocks.popitem(last=False)
        return found

    def recorded(self, chunk: list[tuple[int, Any]]) -> tuple[dict[int, Any], dict[int, bytes]]:
        """For `chunk` [(index, payload)]: the recorded results by index, and
        the digests of the others (to record them with). `ValueError` if a
        recorded index's payload differs."""
        found: dict[int, Any] = {}
        digests: dict[int, bytes] = {}
        for index, payload in chunk:
            digest = _digest(payload)
            entry = self._block(index // BLOCK).get(index)
            if entry is None:
                digests[index] = digest
            elif entry[0] != digest:
                msg = (f"run {self.run_id!r}: payload {index} differs from the one recorded; pass the same "
                       f"payloads in the same order, or drop_run({self.run_id!r}) to start it over")
                raise ValueError(msg)
            else:
                found[index] = entry[1]
        return found, digests

    def record(self, items: list[tuple[int, bytes, Any]]) -> None:
        """Record successful results [(index, digest, result)] in one store write."""
        if not items:
            return
        blocks: dict[int, dict[int, tuple[bytes, Any]]] = {}
        for index, digest, result in items:
            blocks.setdefault(index // BLOCK, {})[index] = (digest, result)
        updates: list[tuple[str, Callable[[Any], Any]]] = [
            (_block_key(self.run_id, b), partial(_merge, entries)) for b, entries in blocks.items()
        ]
        high = max(index for index, _d, _r in items) + 1
        updates.append((_meta_key(self.run_id), partial(_count, len(items), high, time.time())))
        self._state._call("update_many", RUNS, updates, "runtime")
        with self._lock:
            for block in blocks:
                self._blocks.pop(block, None)  # stale now; re-read if ever needed

    def finish(self, total: int) -> None:
        """The payloads ran out after `total`: note it if it wasn't known."""
        self._state._call("update_many", RUNS, [(_meta_key(self.run_id), partial(_set_total, total))], "runtime")


def list_runs(state: Any) -> list[dict[str, Any]]:
    """Every recorded run: {run_id, total, done, created, updated}, oldest first."""
    rows = []
    for key in state.list_keys(RUNS):
        if key.startswith("meta:"):
            meta = state.get(RUNS, key)
            if meta is not None:
                rows.append({k: meta[k] for k in ("run_id", "total", "done", "created", "updated")})
    return sorted(rows, key=lambda row: row["created"])


def drop_run(state: Any, run_id: str) -> bool:
    """Purge a run's records (no tombstones left); False if there were none."""
    meta = state.get(RUNS, _meta_key(check_run_id(run_id)))
    if meta is None:
        return False
    top = max(meta["high"], meta["total"] or 0)
    keys = [_block_key(run_id, b) for b in range(-(-top // BLOCK))]
    state._call("purge", RUNS, [_meta_key(run_id), *keys], "runtime")
    return True
