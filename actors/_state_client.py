"""The state store's clients: `rt.state`, `rt.store` and their `ctx` twins.

Each method is one ask of the store actor (see `_state`), so a client
pickles into any agent and behaves the same from any process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from actors._client import ServiceClient
from actors._context import current_agent_id
from actors._state import FLAT
from actors._types import StateVersion

__all__ = ["FlatStateClient", "StateClient"]


class StateClient(ServiceClient):
    """`rt.state` / `self.ctx.state`: the namespaced store from any process.

    Who writes (checked against a namespace's `writers`, and recorded as
    `updated_by`) is the authenticated sender: the agent whose process sent
    the request, or ``"runtime"`` from the runtime's own process. `updater`
    is kept for the design's signatures; it grants nothing (it counts only
    on a host that can't authenticate senders, which the README names).
    """

    def create_namespace(self, ns: str, *, writers: list[str] | None = None) -> bool:
        return cast("bool", self._call("create_namespace", ns, writers))

    def get(self, ns: str, key: str) -> Any:
        return self._call("get", ns, key)

    def get_version(self, ns: str, key: str) -> StateVersion | None:
        return cast("StateVersion | None", self._call("get_version", ns, key))

    def set(
        self,
        ns: str,
        key: str,
        value: Any,
        updater: str | None = None,
        expected_version: int | None = None,
    ) -> bool:
        return cast("bool", self._call("set", ns, key, value, updater or current_agent_id(), expected_version))

    def compare_and_swap(
        self, ns: str, key: str, expected_value: Any, new_value: Any, updater: str | None = None
    ) -> bool:
        return cast(
            "bool", self._call("compare_and_swap", ns, key, expected_value, new_value, updater or current_agent_id())
        )

    def update(self, ns: str, key: str, fn: Callable[[Any], Any], updater: str | None = None) -> Any:
        return self._call("update", ns, key, fn, updater or current_agent_id())

    def delete(self, ns: str, key: str, updater: str | None = None) -> bool:
        return cast("bool", self._call("delete", ns, key, updater or current_agent_id()))

    def list_keys(self, ns: str) -> list[str]:
        return cast("list[str]", self._call("list_keys", ns))

    def history(self, ns: str | None = None, key: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return cast("list[dict[str, Any]]", self._call("history", ns, key, limit))


class FlatStateClient(ServiceClient):
    """`rt.store`: the same store without namespaces (its own key space)."""

    def get(self, key: str) -> Any:
        return self._call("get", FLAT, key)

    def get_version(self, key: str) -> StateVersion | None:
        return cast("StateVersion | None", self._call("get_version", FLAT, key))

    def set(self, key: str, value: Any, updater: str | None = None, expected_version: int | None = None) -> bool:
        return cast("bool", self._call("set", FLAT, key, value, updater or current_agent_id(), expected_version))

    def compare_and_swap(self, key: str, expected_value: Any, new_value: Any, updater: str | None = None) -> bool:
        return cast(
            "bool", self._call("compare_and_swap", FLAT, key, expected_value, new_value, updater or current_agent_id())
        )

    def update(self, key: str, fn: Callable[[Any], Any], updater: str | None = None) -> Any:
        return self._call("update", FLAT, key, fn, updater or current_agent_id())

    def delete(self, key: str, updater: str | None = None) -> bool:
        return cast("bool", self._call("delete", FLAT, key, updater or current_agent_id()))

    def list_keys(self) -> list[str]:
        return cast("list[str]", self._call("list_keys", FLAT))

    def history(self, key: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return cast("list[dict[str, Any]]", self._call("history", FLAT, key, limit, flat=True))
