"""The client half of every service: method calls become asks to one actor.

A client holds only a ref (a pykka `ActorRef` in one process, or a
cross-process `AgentRef`), so it pickles into any agent and works there.
"""

from __future__ import annotations

from typing import Any

from pykka.messages import ProxyCall

__all__ = ["ServiceClient"]


class ServiceClient:
    """Base for clients: `_call` asks the service actor, `_cast` tells it."""

    __slots__ = ("_ref",)

    def __init__(self, ref: Any) -> None:
        self._ref = ref

    def __getstate__(self) -> Any:
        return self._ref

    def __setstate__(self, ref: Any) -> None:
        self._ref = ref

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._ref!r}>"

    def _call(self, method: str, *args: Any, timeout: float | None = 60.0, **kwargs: Any) -> Any:
        return self._ref.ask(ProxyCall((method,), args, kwargs), timeout=timeout)

    def _cast(self, method: str, *args: Any, **kwargs: Any) -> None:
        self._ref.tell(ProxyCall((method,), args, kwargs))
