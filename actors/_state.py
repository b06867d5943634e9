"""The versioned, namespaced state store: one actor, many clients.

Every write goes through the store actor's mailbox, one at a time, so a
version check and the write it guards are atomic without any lock, and
`update(fn)` runs `fn` inside the actor as one step.
"""

from __future__ import annotations

import hashlib
import pickle
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from actors._base import ActorBase
from actors._client import ServiceClient
from actors._context import current_agent_id
from actors._errors import (
    MessageSerializationError,
    NamespacePermissionError,
    UnknownNamespaceError,
)
from actors._types import EventType, StateVersion

__all__ = ["FlatStateClient", "StateClient", "StateStore"]

SHARED = "shared"
FLAT = None  # the namespace of `rt.store`; keys never meet a named namespace's


def _check_key(key: Any) -> None:
    if not isinstance(key, str):
        msg = f"state keys must be str, got {type(key).__name__}: {key!r}"
        raise TypeError(msg)


class StateStore(ActorBase):
    """Actor holding every namespace's keys as `StateVersion`s.

    `dumps` turns a value into bytes for its checksum (and proves it can
    travel); `events` is an optional ref of the event bus, told of every
    write as STATE_CHANGED.
    """

    def __init__(
        self,
        *,
        dumps: Callable[[Any], bytes] = pickle.dumps,
        max_history: int = 1000,
        events: Any = None,
    ) -> None:
        super().__init__()
        self._dumps = dumps
        self._events = events
        # Keys are (namespace, key) tuples: no formatting, so no collisions.
        self._data: dict[tuple[str | None, str], StateVersion] = {}
        self._namespaces: dict[str | None, frozenset[str] | None] = {FLAT: None, SHARED: None}
        self._history: deque[dict[str, Any]] = deque(maxlen=max_history)

    def set_event_bus(self, events: Any) -> None:
        self._events = events

    # -- namespaces -------------------------------------------------------

    def create_namespace(self, ns: str, writers: list[str] | None = None) -> bool:
        """Create `ns`; False if it already existed (its writers are kept)."""
        _check_key(ns)
        if ns in self._namespaces:
            return False
        self._namespaces[ns] = None if writers is None else frozenset(writers)
        return True

    def _writable(self, ns: str | None, updater: str) -> None:
        if ns not in self._namespaces:
            raise UnknownNamespaceError(str(ns))
        writers = self._namespaces[ns]
        if writers is not None and updater not in writers:
            raise NamespacePermissionError(str(ns), updater)

    def _readable(self, ns: str | None) -> None:
        if ns not in self._namespaces:
            raise UnknownNamespaceError(str(ns))

    # -- reads ------------------------------------------------------------

    def get_version(self, ns: str | None, key: str) -> StateVersion | None:
        self._readable(ns)
        _check_key(key)
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
        self._writable(ns, updater)
        _check_key(key)
        current = self._data.get((ns, key))
        if expected_version is not None:
            have = 0 if current is None else current.version
            if have != expected_version:
                return False
        self._write(ns, key, value, updater, current)
        return True

    def compare_and_swap(self, ns: str | None, key: str, expected: Any, new: Any, updater: str) -> bool:
        self._writable(ns, updater)
        _check_key(key)
        current = self._data.get((ns, key))
        if (None if current is None else current.value) != expected:
            return False
        self._write(ns, key, new, updater, current)
        return True

    def update(self, ns: str | None, key: str, fn: Callable[[Any], Any], updater: str) -> Any:
        """Replace the value by `fn(old)`; if `fn` raises, nothing changes."""
        self._writable(ns, updater)
        _check_key(key)
        current = self._data.get((ns, key))
        new = fn(None if current is None else current.value)
        self._write(ns, key, new, updater, current)
        return new

    def delete(self, ns: str | None, key: str, updater: str) -> bool:
        self._writable(ns, updater)
        _check_key(key)
        current = self._data.pop((ns, key), None)
        if current is None:
            return False
        self._record(ns, key, "delete", current.version + 1, None, updater)
        return True

    def _write(self, ns: str | None, key: str, value: Any, updater: str, current: StateVersion | None) -> None:
        try:
            blob = self._dumps(value)
        except Exception as exc:
            msg = f"value for {ns}/{key} can't be pickled: {exc}"
            raise MessageSerializationError(msg) from exc
        version = 1 if current is None else current.version + 1
        self._data[(ns, key)] = StateVersion(
            value=value,
            version=version,
            timestamp=time.time(),
            updated_by=updater,
            checksum=hashlib.blake2b(blob, digest_size=16).hexdigest(),
        )
        self._record(ns, key, "set", version, value, updater)

    def _record(self, ns: str | None, key: str, op: str, version: int, value: Any, updater: str) -> None:
        row = {
            "namespace": ns,
            "key": key,
            "op": op,
            "version": version,
            "value": value,
            "updated_by": updater,
            "timestamp": time.time(),
        }
        self._history.append(row)
        if self._events is not None:
            from actors._events import emit_told  # noqa: PLC0415 - events imports state

            emit_told(
                self._events,
                "state",
                EventType.STATE_CHANGED,
                {"namespace": ns, "key": key, "version": version, "updater": updater, "op": op},
            )


class StateClient(ServiceClient):
    """`rt.state` / `self.ctx.state`: the namespaced store from any process."""

    def create_namespace(self, ns: str, *, writers: list[str] | None = None) -> bool:
        return self._call("create_namespace", ns, writers)

    def get(self, ns: str, key: str) -> Any:
        return self._call("get", ns, key)

    def get_version(self, ns: str, key: str) -> StateVersion | None:
        return self._call("get_version", ns, key)

    def set(
        self,
        ns: str,
        key: str,
        value: Any,
        updater: str | None = None,
        expected_version: int | None = None,
    ) -> bool:
        return self._call("set", ns, key, value, updater or current_agent_id(), expected_version)

    def compare_and_swap(
        self, ns: str, key: str, expected_value: Any, new_value: Any, updater: str | None = None
    ) -> bool:
        return self._call("compare_and_swap", ns, key, expected_value, new_value, updater or current_agent_id())

    def update(self, ns: str, key: str, fn: Callable[[Any], Any], updater: str | None = None) -> Any:
        return self._call("update", ns, key, fn, updater or current_agent_id())

    def delete(self, ns: str, key: str, updater: str | None = None) -> bool:
        return self._call("delete", ns, key, updater or current_agent_id())

    def list_keys(self, ns: str) -> list[str]:
        return self._call("list_keys", ns)

    def history(self, ns: str | None = None, key: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return self._call("history", ns, key, limit)


class FlatStateClient(ServiceClient):
    """`rt.store`: the same store without namespaces (its own key space)."""

    def get(self, key: str) -> Any:
        return self._call("get", FLAT, key)

    def get_version(self, key: str) -> StateVersion | None:
        return self._call("get_version", FLAT, key)

    def set(self, key: str, value: Any, updater: str | None = None, expected_version: int | None = None) -> bool:
        return self._call("set", FLAT, key, value, updater or current_agent_id(), expected_version)

    def compare_and_swap(self, key: str, expected_value: Any, new_value: Any, updater: str | None = None) -> bool:
        return self._call("compare_and_swap", FLAT, key, expected_value, new_value, updater or current_agent_id())

    def update(self, key: str, fn: Callable[[Any], Any], updater: str | None = None) -> Any:
        return self._call("update", FLAT, key, fn, updater or current_agent_id())

    def delete(self, key: str, updater: str | None = None) -> bool:
        return self._call("delete", FLAT, key, updater or current_agent_id())

    def list_keys(self) -> list[str]:
        return self._call("list_keys", FLAT)

    def history(self, key: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return self._call("history", FLAT, key, limit, flat=True)
