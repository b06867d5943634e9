"""SQLite persistence for the state store (standard library `sqlite3`).

The store actor owns the connection: one writer, no locking games. Writes
come in batches (`commit(rows)`), one transaction each, so concurrent
writers share one fsync (group commit). WAL mode; `synchronous` is NORMAL
by default, which survives the process being killed (the committed WAL is
in the OS page cache), and FULL on request, which also survives power loss.

The file (and its WAL and shm files) is readable by its owner only, and
one store at a time holds it (`_filelock`): a second runtime on the same
file gets `StateFileInUseError` instead of silently losing writes.
"""

from __future__ import annotations

import os
import pickle
import sqlite3
import stat
from typing import Any

from actors._filelock import StateFileLock
from actors._types import StateVersion

__all__ = ["FLAT_NS", "SqliteBackend"]

FLAT_NS = ""  # how the flat store's namespace (None) is written in the file

_SCHEMA = """
CREATE TABLE IF NOT EXISTS namespaces (ns TEXT PRIMARY KEY, writers BLOB);
CREATE TABLE IF NOT EXISTS kv (
    ns TEXT NOT NULL, key TEXT NOT NULL, value BLOB, version INTEGER NOT NULL,
    timestamp REAL NOT NULL, updated_by TEXT NOT NULL, checksum TEXT NOT NULL,
    PRIMARY KEY (ns, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tombstones (
    ns TEXT NOT NULL, key TEXT NOT NULL, version INTEGER NOT NULL, PRIMARY KEY (ns, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, ns TEXT NOT NULL, key TEXT NOT NULL, op TEXT NOT NULL,
    version INTEGER NOT NULL, value BLOB, updated_by TEXT NOT NULL, timestamp REAL NOT NULL
);
"""

# The keyed tables are WITHOUT ROWID (files made since): one b-tree each,
# where a rowid table plus its primary key's index made every write touch
# two, so a commit writes half the pages to the WAL. Files made before keep
# their tables; the statements below work on either.

_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


def _owner_only(path: str) -> None:
    """Make the state file (and any WAL and shm files) readable by its owner only.

    The file is created 0600 before SQLite opens it; SQLite gives its WAL
    and shm files the database's mode. Files left group- or world-readable
    by an older version are tightened, if they are ours.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        _tighten(fd)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm"):
        try:
            fd = os.open(path + suffix, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            _tighten(fd)
        finally:
            os.close(fd)


def _tighten(fd: int) -> None:
    st = os.fstat(fd)
    if st.st_mode & 0o077 and st.st_uid == os.getuid():
        os.fchmod(fd, stat.S_IMODE(st.st_mode) & 0o700)


class _NoLock:
    def release(self) -> None:
        pass


def _ns_out(ns: str | None) -> str:
    return FLAT_NS if ns is None else ns


def _ns_in(ns: str) -> str | None:
    return None if ns == FLAT_NS else ns


class SqliteBackend:
    """The file behind a durable store. Used only from the store actor's thread."""

    def __init__(self, path: str, *, synchronous: str = "NORMAL") -> None:
        level = synchronous.upper()
        if level not in _SYNCHRONOUS:
            msg = f"synchronous must be one of {', '.join(_SYNCHRONOUS)}, got {synchronous!r}"
            raise ValueError(msg)
        # Opened by whoever builds the store; used only by the store's thread.
        # The lock comes first: a second runtime touches nothing. SQLite's
        # private databases (":memory:", "") have no file to share or protect.
        private = path in ("", ":memory:")
        try:
            self._lock: _NoLock | StateFileLock = _NoLock() if private else StateFileLock(path)
        except OSError as exc:
            msg = f"can't use {path!r} as a state file: {exc}"
            raise ValueError(msg) from exc
        try:
            if not private:
                _owner_only(path)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={level}")
            self._db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            self._lock.release()
            msg = f"can't use {path!r} as a state file: {exc}"
            raise ValueError(msg) from exc
        self._commits = 0

    def load(self, max_history: int) -> tuple[
        dict[str | None, frozenset[str] | None],
        dict[tuple[str | None, str], StateVersion],
        dict[tuple[str | None, str], int],
        list[dict[str, Any]],
    ]:
        """Namespaces, values, tombstones and the last `max_history` history rows.

        A tombstone is the version at which a key absent now was deleted.
        """
        namespaces = {
            _ns_in(ns): (None if writers is None else frozenset(pickle.loads(writers)))
            for ns, writers in self._db.execute("SELECT ns, writers FROM namespaces")
        }
        data = {
            (_ns_in(ns), key): StateVersion(pickle.loads(value), version, timestamp, updated_by, checksum)
            for ns, key, value, version, timestamp, updated_by, checksum in self._db.execute(
                "SELECT ns, key, value, version, timestamp, updated_by, checksum FROM kv"
            )
        }
        tombstones = {
            (_ns_in(ns), key): version
            for ns, key, version in self._db.execute("SELECT ns, key, version FROM tombstones")
        }
        rows = self._db.execute(
            "SELECT ns, key, op, version, value, updated_by, timestamp FROM history ORDER BY seq DESC LIMIT ?",
            (max_history,),
        ).fetchall()
        history = [
            {
                "namespace": _ns_in(ns), "key": key, "op": op, "version": version,
                "value": None if value is None else pickle.loads(value),
                "updated_by": updated_by, "timestamp": timestamp,
            }
            for ns, key, op, version, value, updated_by, timestamp in reversed(rows)
        ]
        return namespaces, data, tombstones, history

    def commit(self, namespaces: list[tuple[str | None, Any]], rows: list[dict[str, Any]], max_history: int) -> None:
        """Write a batch in one transaction; raises (and writes nothing) on failure."""
        db = self._db
        self._commits += 1
        if not namespaces and len(rows) == 1 and rows[0].get("quiet") and rows[0]["op"] == "set" \
                and not rows[0].get("revived"):
            # One statement (a snapshot, say: the usual lone write): its own
            # transaction, without BEGIN and COMMIT round the statement.
            row = rows[0]
            db.execute(
                "INSERT OR REPLACE INTO kv VALUES (?, ?, ?, ?, ?, ?, ?)",
                (_ns_out(row["namespace"]), row["key"], row["blob"], row["version"], row["timestamp"],
                 row["updated_by"], row["checksum"]),
            )
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            for ns, writers in namespaces:
                db.execute(
                    "INSERT OR IGNORE INTO namespaces VALUES (?, ?)",
                    (_ns_out(ns), None if writers is None else pickle.dumps(sorted(writers))),
                )
            for row in rows:
                ns = _ns_out(row["namespace"])
                blob = row.get("blob")
                if row["op"] == "purge":  # gone without a trace: no tombstone, no history
                    db.execute("DELETE FROM kv WHERE ns = ? AND key = ?", (ns, row["key"]))
                    db.execute("DELETE FROM tombstones WHERE ns = ? AND key = ?", (ns, row["key"]))
                    continue
                if row["op"] == "delete":
                    db.execute("DELETE FROM kv WHERE ns = ? AND key = ?", (ns, row["key"]))
                    db.execute("INSERT OR REPLACE INTO tombstones VALUES (?, ?, ?)", (ns, row["key"], row["version"]))
                else:
                    db.execute(
                        "INSERT OR REPLACE INTO kv VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (ns, row["key"], blob, row["version"], row["timestamp"], row["updated_by"], row["checksum"]),
                    )
                    if row.get("revived"):  # a deleted key set again
                        db.execute("DELETE FROM tombstones WHERE ns = ? AND key = ?", (ns, row["key"]))
                if row.get("quiet"):  # reserved bookkeeping namespaces keep no history
                    continue
                db.execute(
                    "INSERT INTO history (ns, key, op, version, value, updated_by, timestamp) VALUES (?,?,?,?,?,?,?)",
                    (ns, row["key"], row["op"], row["version"], blob, row["updated_by"], row["timestamp"]),
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if self._commits % 256 == 0:  # keep the history table bounded
            db.execute(
                "DELETE FROM history WHERE seq <= (SELECT MAX(seq) FROM history) - ?", (max_history,)
            )

    def close(self) -> None:
        """Close the file, then let another runtime have it."""
        try:
            self._db.close()
        finally:
            self._lock.release()
