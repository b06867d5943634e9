"""The versioned, namespaced state store: one actor, many clients.

Every write goes through the store actor's mailbox, one at a time, so a
version check and the write it guards are atomic without any lock, and
`update(fn)` runs `fn` inside the actor as one step.
"""

from __future__ import annotations

import pickle
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from actors._announce import Announcer
from actors._base import ActorBase, Sent
from actors._durable import FLAT_NS, SqliteBackend
from actors._snapshot import SnapshotBatch
from actors._namespaces import (
    FLAT,
    LOCAL,
    PLAIN as _PLAIN,
    QUIET as _QUIET,
    RUNS,
    SHARED,
    SNAPSHOTS,
    check_key,
    checksum,
    reserved as _reserved,
)
from actors._errors import (
    MessageSerializationError,
    NamespacePermissionError,
    UnknownNamespaceError,
)
from actors._types import StateVersion, make_version

__all__ = ["FLAT", "LOCAL", "RUNS", "SHARED", "SNAPSHOTS", "StateStore", "check_key", "checksum"]


class StateStore(Announcer, ActorBase):
    """Actor holding every namespace's keys as `StateVersion`s.

    `dumps` turns a value into bytes for its checksum and the durable file
    (and so proves it can travel; the runtime passes its own, which carries
    classes from `__main__` by value). Once `set_event_bus` gave it the bus,
    every write is announced as STATE_CHANGED. With `path` the store is durable (SQLite, see
    `_durable`): a write is answered only once its transaction committed,
    and writes that queue up while one commits share the next commit.

    A key's versions never repeat: a deleted key leaves a tombstone (its
    delete's version, kept in memory and in the file), and a key set again
    continues after it.
    """

    runs_inline = True
    wants_sender = True

    def __init__(
        self,
        *,
        dumps: Callable[[Any], bytes] = pickle.dumps,
        max_history: int = 1000,
        path: str | None = None,
        synchronous: str = "NORMAL",
        authenticated: bool = True,
    ) -> None:
        super().__init__()
        # Who wrote is the authenticated sender of the message being handled:
        # its host wraps messages from other processes in `Sent`, and the
        # rest come from this process, the runtime's. A host that can't
        # authenticate senders (Ray's) leaves `_sender` None, and the
        # caller's own `updater` stands (see `_who`).
        self._authenticated = authenticated
        self._sender: str | None = LOCAL if authenticated else None
        self._dumps = dumps
        self._init_announcer()
        self._max_history = max_history
        # Keys are (namespace, key) tuples: no formatting, so no collisions.
        self._data: dict[tuple[str | None, str], StateVersion] = {}
        # Tombstones: the version at which each deleted key was deleted, so a
        # key set again continues after it and versions never repeat (a
        # stale expected_version can't match again: no ABA). One small entry
        # per deleted key, dropped when the key is set again.
        self._tombstones: dict[tuple[str | None, str], int] = {}
        self._namespaces: dict[str | None, frozenset[str] | None] = _reserved()
        self._history: deque[dict[str, Any]] = deque(maxlen=max_history)
        # Durable mode. Invariant: everything in _pending_* is applied in
        # memory but not yet committed, and every reply in _waiting was
        # deferred until that commit.
        self._backend = None if path is None else SqliteBackend(path, synchronous=synchronous)
        self._pending_rows: list[dict[str, Any]] = []
        self._pending_ns: list[tuple[str | None, frozenset[str] | None]] = []
        self._waiting: list[tuple[Any, Any]] = []
        if self._backend is not None:
            try:
                self._load()
            except BaseException:
                self._backend.close()  # gives the file (and its lock) up
                raise

    def _load(self) -> None:
        assert self._backend is not None  # called only when there is a state file
        namespaces, self._data, self._tombstones, history = self._backend.load(self._max_history)
        self._namespaces = {**namespaces, **_reserved()}
        self._history = deque(history, maxlen=self._max_history)

    # -- group commit -----------------------------------------------------

    def _handle_receive(self, message: Any) -> Any:
        if self._authenticated:
            if type(message) is Sent:
                self._sender, message = message
            else:
                self._sender = LOCAL
        try:
            result = None
            if type(message) is bytes:  # a snapshot from its agent (`keep_snapshot`): the cheapest message
                self.keep_snapshot(message)
            elif type(message) is SnapshotBatch:  # several agents' snapshots (`runtime.wire._journal`)
                result = self._keep_snapshots(message)
            else:
                result = super()._handle_receive(message)
        except Exception:
            self._flush_if_idle()  # earlier writes still need their commit
            raise
        finally:
            if self._announce and self._backend is None:  # in memory: its changes' batch, once per message
                self._changes_due()
        if self._pending_rows or self._pending_ns:
            reply = self._defer_reply()  # answered once the batch is committed
            if reply is not None:
                self._waiting.append((reply, result))
        self._flush_if_idle()
        return result

    def _flush_if_idle(self) -> None:
        # Commit when nothing else is queued: writes arriving meanwhile join
        # this batch instead of paying for a commit each.
        if (self._pending_rows or self._pending_ns or self._waiting) and self.actor_inbox.empty():
            self._flush()

    def _flush(self) -> None:
        rows, namespaces, waiting = self._pending_rows, self._pending_ns, self._waiting
        self._pending_rows, self._pending_ns, self._waiting = [], [], []
        try:
            if self._backend is not None and (rows or namespaces):
                self._backend.commit(namespaces, rows, self._max_history)
        except Exception as exc:  # noqa: BLE001 - every writer of the batch learns it
            self._load()  # back to what the file holds: nothing half-written
            self._announce.clear()
            for reply, _result in waiting:
                reply.set_exception((type(exc), exc, exc.__traceback__))
            return
        for reply, result in waiting:
            reply.set(result)
        self._emit_changes()

    def on_stop(self) -> None:
        self._stop_announcing()
        self._flush()
        if self._backend is not None:
            self._backend.close()

    # -- namespaces -------------------------------------------------------

    def create_namespace(self, ns: str, writers: list[str] | None = None) -> bool:
        """Create `ns`; False if it already existed (its writers are kept)."""
        check_key(ns)
        if ns in self._namespaces:
            return False
        if ns == FLAT_NS:
            msg = "a namespace name can't be empty"
            raise ValueError(msg)
        self._namespaces[ns] = None if writers is None else frozenset(writers)
        if self._backend is not None:
            self._pending_ns.append((ns, self._namespaces[ns]))
        return True

    def _who(self, claimed: str) -> str:
        """Who writes: the authenticated sender; `claimed` only where senders
        can't be authenticated (never where they can: a name grants nothing)."""
        return claimed if self._sender is None else self._sender

    def _writable(self, ns: str | None, updater: str) -> str:
        """The writer's identity, once it may write `ns`; raises otherwise."""
        if ns not in self._namespaces:
            raise UnknownNamespaceError(str(ns))
        updater = self._who(updater)
        writers = self._namespaces[ns]
        if writers is not None and updater not in writers:
            raise NamespacePermissionError(str(ns), updater)
        return updater

    def _readable(self, ns: str | None) -> None:
        if ns not in self._namespaces:
            raise UnknownNamespaceError(str(ns))

    # -- reads ------------------------------------------------------------

    def get_version(self, ns: str | None, key: str) -> StateVersion | None:
        self._readable(ns)
        check_key(key)
        return self._data.get((ns, key))

    def get(self, ns: str | None, key: str) -> Any:
        current = self.get_version(ns, key)
        return None if current is None else current.value

    def list_keys(self, ns: str | None) -> list[str]:
        self._readable(ns)
        return sorted(key for (space, key) in self._data if space == ns)

    def history(
        self, ns: str | None = None, key: str | None = None, limit: int = 100, *, flat: bool = False
    ) -> list[dict[str, Any]]:
        """Writes and deletes, oldest first; the last `limit` that match.

        `ns=None` matches every namespace, unless `flat` asks for the flat
        store's own keys.
        """
        rows = [
            row
            for row in self._history
            if (row["namespace"] == ns if (ns is not None or flat) else True)
            and (key is None or row["key"] == key)
        ]
        return rows[-limit:] if limit else []

    # -- writes -----------------------------------------------------------

    def set(
        self,
        ns: str | None,
        key: str,
        value: Any,
        updater: str,
        expected_version: int | None = None,
    ) -> bool:
        """Write unless `expected_version` disagrees (0: only if absent)."""
        updater = self._writable(ns, updater)
        check_key(key)
        current = self._data.get((ns, key))
        if expected_version is not None:
            have = 0 if current is None else current.version
            if have != expected_version:
                return False
        self._write(ns, key, value, updater, current)
        return True

    def compare_and_swap(self, ns: str | None, key: str, expected: Any, new: Any, updater: str) -> bool:
        updater = self._writable(ns, updater)
        check_key(key)
        current = self._data.get((ns, key))
        if (None if current is None else current.value) != expected:
            return False
        self._write(ns, key, new, updater, current)
        return True

    def update(self, ns: str | None, key: str, fn: Callable[[Any], Any], updater: str) -> Any:
        """Replace the value by `fn(old)`; if `fn` raises, nothing changes."""
        updater = self._writable(ns, updater)
        check_key(key)
        current = self._data.get((ns, key))
        new = fn(None if current is None else current.value)
        self._write(ns, key, new, updater, current)
        return new

    def update_many(self, ns: str | None, updates: list[tuple[str, Callable[[Any], Any]]], updater: str) -> list[Any]:
        """`update` for several keys as one step: every `fn(old)` is computed
        (and pickled) before anything is written, so if one raises nothing
        changes. The new values, in order."""
        updater = self._writable(ns, updater)
        staged = []
        for key, fn in updates:
            check_key(key)
            current = self._data.get((ns, key))
            new = fn(None if current is None else current.value)
            staged.append((key, new, self._dump(ns, key, new)))
        for key, new, blob in staged:
            self._write(ns, key, new, updater, self._data.get((ns, key)), blob)
        return [new for _key, new, _blob in staged]

    def save_snapshot(self, name: str, blob: bytes) -> None:
        """Keep agent `name`'s pickled snapshot; only its own process may.

        Quiet (no history, no STATE_CHANGED); with a state file, answered
        once committed, so the agent replies to its asker only after that.
        """
        check_key(name)
        if not isinstance(blob, bytes):
            msg = f"a snapshot is the bytes of its pickle, got {type(blob).__name__}"
            raise TypeError(msg)
        writer = self._who(name)
        if writer != name:
            raise NamespacePermissionError(SNAPSHOTS, writer)
        self._write(SNAPSHOTS, name, blob, writer, self._data.get((SNAPSHOTS, name)))

    def keep_snapshot(self, blob: bytes) -> None:
        """`save_snapshot` under the authenticated sender's name (nobody can
        write another's); agents send it as a bare `bytes` message, the
        cheapest there is, told or asked (see `actors._snapshot`)."""
        name = self._sender
        if name is None or name == LOCAL:
            raise NamespacePermissionError(SNAPSHOTS, str(name))
        self.save_snapshot(name, blob)

    def _keep_snapshots(self, batch: SnapshotBatch) -> list[Exception | None]:
        # Each under its own sender's name; one refused leaves the others be.
        outcomes: list[Exception | None] = []
        for sender, blob in batch:
            self._sender = sender
            try:
                self.keep_snapshot(blob)
            except Exception as exc:  # noqa: BLE001 - its agent gets it
                outcomes.append(exc)
            else:
                outcomes.append(None)
        return outcomes

    def load_snapshot(self, name: str) -> bytes | None:
        """Agent `name`'s last saved snapshot (pickled), or None."""
        check_key(name)
        current = self._data.get((SNAPSHOTS, name))
        return None if current is None else current.value

    def write_many(
        self, ns: str | None, items: list[tuple[str, Any]], updater: str, purge: list[str] | tuple[str, ...] = ()
    ) -> int:
        """Set each (key, value) of `items` (no version checks), then purge
        the keys of `purge` (see `purge`), as one step; how many were set.

        Every value is pickled before anything is written, so a value that
        can't be leaves the store unchanged.
        """
        updater = self._writable(ns, updater)
        blobs = []
        for key, value in items:
            check_key(key)
            blobs.append(self._dump(ns, key, value))
        stamp = time.time()  # one instant for the batch
        data = self._data
        for (key, value), blob in zip(items, blobs):
            self._write(ns, key, value, updater, data.get((ns, key)), blob, stamp)
        for key in purge:
            self._purge(ns, key)
        return len(items)

    def purge(self, ns: str | None, keys: list[str], updater: str) -> int:
        """Remove `keys` outright, with their tombstones; how many were there.

        Unlike `delete`, nothing remembers a purged key's last version, so
        a key set again after a purge starts again at version 1. Only for
        records nobody version-checks (a task's records past the
        `task_records` window): it is how their memory is given back.
        Purges are not in `history` and announce no STATE_CHANGED.
        """
        self._writable(ns, updater)
        return sum(self._purge(ns, key) for key in keys)

    def _purge(self, ns: str | None, key: str) -> bool:
        found = self._data.pop((ns, key), None) is not None
        found = self._tombstones.pop((ns, key), None) is not None or found
        if found and self._backend is not None:
            self._pending_rows.append({"namespace": ns, "key": key, "op": "purge"})
        return found

    def delete(self, ns: str | None, key: str, updater: str) -> bool:
        updater = self._writable(ns, updater)
        check_key(key)
        current = self._data.pop((ns, key), None)
        if current is None:
            return False
        self._tombstones[(ns, key)] = current.version + 1
        self._record(ns, key, "delete", current.version + 1, None, updater, None, None)
        return True

    def _dump(self, ns: str | None, key: str, value: Any) -> bytes:
        if type(value) in _PLAIN:  # most records: the same bytes, without the general pickler's set-up
            return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
        try:
            return self._dumps(value)  # the checksum's input, and by value for the durable file
        except Exception as exc:
            msg = f"value for {ns}/{key} can't be pickled: {exc.__cause__ or exc}"
            raise MessageSerializationError(msg) from exc

    def _write(
        self, ns: str | None, key: str, value: Any, updater: str, current: StateVersion | None,
        blob: bytes | None = None, stamp: float | None = None,
    ) -> None:
        if blob is None:
            blob = self._dump(ns, key, value)
        tombstone = self._tombstones.pop((ns, key), None) if current is None and self._tombstones else None
        version = (current.version if current is not None else tombstone or 0) + 1
        digest = checksum(blob)
        if stamp is None:
            stamp = time.time()
        self._data[(ns, key)] = make_version(value, version, stamp, updater, digest)
        self._record(ns, key, "set", version, value, updater, blob, digest, stamp)
        if tombstone is not None and self._backend is not None:
            self._pending_rows[-1]["revived"] = True  # its tombstone leaves the file too

    def _record(
        self, ns: str | None, key: str, op: str, version: int, value: Any, updater: str,
        blob: bytes | None, checksum: str | None, stamp: float | None = None,
    ) -> None:
        if ns in _QUIET:  # bookkeeping: kept, but no history and no announcement
            if self._backend is not None:
                self._pending_rows.append({"namespace": ns, "key": key, "op": op, "version": version, "quiet": True,
                                           "updated_by": updater, "timestamp": stamp or time.time(),
                                           "blob": blob, "checksum": checksum})
            return
        row = {
            "namespace": ns,
            "key": key,
            "op": op,
            "version": version,
            "value": value,
            "updated_by": updater,
            "timestamp": stamp or time.time(),
        }
        self._history.append(row)
        if self._backend is not None:
            self._pending_rows.append({**row, "blob": blob, "checksum": checksum})
        if self._events is not None:  # announced as STATE_CHANGED (`_announce`)
            self._announce.append({"namespace": ns, "key": key, "version": version, "updater": updater, "op": op})
