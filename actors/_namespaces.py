"""The state store's namespaces and keys: names, reserved spaces, checks.

Leaf module (standard library only), so the store, its clients and the
runtime's bookkeeping (`runtime._runs`) name namespaces alike.
"""

from __future__ import annotations

import hashlib
from typing import Any

__all__ = ["FLAT", "LOCAL", "PLAIN", "QUIET", "RUNS", "SHARED", "SNAPSHOTS", "check_key", "checksum", "reserved"]

SHARED = "shared"
LOCAL = "runtime"  # the identity of whatever the runtime's own process writes
FLAT = None  # the namespace of `rt.store`; keys never meet a named namespace's
# Reserved namespaces, written only by the runtime's process (and, for
# snapshots, by each agent for its own name through `save_snapshot`).
# Their writes are quiet: no history rows, no STATE_CHANGED (they are
# bookkeeping, written after every message or every chunk).
SNAPSHOTS = "_snapshots"  # agent name -> pickled `snapshot()` (see `actors._snapshot`)
RUNS = "_runs"  # records of resumable batches (see `runtime._runs`)
QUIET = frozenset({SNAPSHOTS, RUNS})
PLAIN = frozenset({str, int, float, bool, bytes, type(None)})  # pickled alike by any pickler


def reserved() -> dict[str | None, frozenset[str] | None]:
    return {FLAT: None, SHARED: None, SNAPSHOTS: frozenset({LOCAL}), RUNS: frozenset({LOCAL})}


def check_key(key: Any) -> None:
    if not isinstance(key, str):
        msg = f"state keys must be str, got {type(key).__name__}: {key!r}"
        raise TypeError(msg)


def checksum(blob: bytes) -> str:
    """The checksum a `StateVersion` carries: of the value's pickle."""
    return hashlib.blake2b(blob, digest_size=16).hexdigest()
