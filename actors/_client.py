"""The client half of every service: method calls become asks to one actor.

A client holds only a ref (a pykka `ActorRef` in one process, or a
cross-process `AgentRef`), so it pickles into any agent and works there.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from pykka.messages import ProxyCall

from actors._errors import AskTimeout
from actors._types import new_id

__all__ = ["ManagerClient", "ServiceClient", "ask_parked"]

# Extra time a caller waits beyond the actor's own timeout, so that the
# actor's answer (grant, chunk or expiry) is the one that counts.
_GRACE = 5.0


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


class ManagerClient(ServiceClient):
    """Client of a manager actor that hands out one child actor per name
    (topics, streams, locks): children's refs are remembered in this
    process, so only the first use of a name asks the manager.

    The memory is bounded (least recently used names are forgotten first):
    a forgotten name just costs one more ask.
    """

    __slots__ = ("_children",)

    _LIMIT = 1024

    def __init__(self, ref: Any) -> None:
        super().__init__(ref)
        self._children: OrderedDict[tuple[Any, ...], Any] = OrderedDict()

    def __setstate__(self, ref: Any) -> None:
        super().__setstate__(ref)
        self._children = OrderedDict()

    def _child(self, method: str, *args: Any) -> Any:
        """The ref the manager's `method(*args)` answers, asked once."""
        key = (method, *args)
        ref = self._children.get(key)
        if ref is None:
            return self._remember(key, self._call(method, *args))
        self._children.move_to_end(key)
        return ref

    def _remember(self, key: tuple[Any, ...], ref: Any) -> Any:
        self._children[key] = ref
        if len(self._children) > self._LIMIT:
            self._children.popitem(last=False)
        return ref


def ask_parked(client: ServiceClient, method: str, *args: Any, timeout: float | None) -> Any:
    """Ask `method(*args, timeout, request_id)` of an actor that may park the
    request for up to `timeout` s (see `_parking`). None if even the grace
    beyond that passed: the request is then withdrawn, so it never leaks."""
    request_id = new_id()
    wait = None if timeout is None else timeout + _GRACE
    try:
        return client._call(method, *args, timeout, request_id, timeout=wait)
    except AskTimeout:
        client._cast("cancel", request_id)
        return None
