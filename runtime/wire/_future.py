"""The futures of asks: pykka futures whose value comes from a channel.

An `AskFuture` is what `ask(block=False)` and proxies return: `get()`
waits on the channel (or a local pykka future), the outcome is kept once
known, and an event loop can await it without blocking (`__await__`, see
`_aio`). `local_waiter` waits on an actor of this process with the
framework's errors.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Callable
from typing import Any

import pykka

from actors import ActorDeadError, AskTimeout
from runtime.wire._aio import await_ask
from runtime.wire._batching import flush_thread

__all__ = ["AskFuture", "local_waiter"]


def _outcome(outcome: tuple[bool, Any]) -> Any:
    ok, value = outcome
    if ok:
        return value
    if isinstance(value, pykka.ActorDeadError) and not isinstance(value, ActorDeadError):
        raise ActorDeadError(str(value)) from value
    raise value


class AskFuture(pykka.Future[Any]):
    """A pykka future whose value comes from `waiter(timeout)`.

    The outcome is kept once known, so `get()` may be called again (also
    after an `AskTimeout`: a late reply still counts). `on_drop` runs if
    the future is dropped before its outcome was known, so a reply nobody
    can wait for any more is not kept. Built without a waiter (as pykka's
    `map`/`join`/`filter` do) it is a plain future driven by its get hook.
    """

    def __init__(
        self,
        waiter: Callable[[float | None], Any] | None = None,
        on_drop: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self._waiter = waiter
        self._on_drop = on_drop
        self._outcome: tuple[bool, Any] | None = None

    #: Where an awaited future's reply comes from (`runtime.wire._aio`): the
    #: (channel, request id, what) of a cross-process ask, the pykka future
    #: of an ask to an actor of this process, or None (a worker thread waits).
    _source: Any = None

    def __await__(self) -> Any:
        # pykka's own __await__ blocks the loop in get(): never here.
        return self._aget(None).__await__()

    async def _aget(self, timeout: float | None) -> Any:
        """Await the outcome without blocking the loop (`AskTimeout` after
        `timeout` s); it is kept, as `get` keeps it."""
        if self._get_hook is not None:  # pykka's map/join/filter: a worker thread waits
            return await await_ask(_Hooked(self), timeout)
        if self._outcome is None:
            if self._source is None:  # a waiter of its own (a stop, a chained ask)
                return await await_ask(self, timeout)
            outcome = await await_ask(self, timeout)
            try:
                self._outcome = (True, _outcome(outcome))
            except Exception as exc:  # noqa: BLE001 - the ask's error, as `get` raises it
                self._outcome = (False, exc)
        ok, value = self._outcome
        if ok:
            return value
        raise value

    def __del__(self) -> None:
        if self._outcome is None and self._on_drop is not None:
            try:
                self._on_drop()
            except Exception:  # noqa: BLE001 - at interpreter exit, or the channel is gone
                pass

    def get(self, *, timeout: float | None = None) -> Any:
        if self._get_hook is not None:
            return super().get(timeout=timeout)
        if self._outcome is None:
            waiter = self._waiter
            if waiter is None:  # a plain future: wait for set() as pykka's do
                if not self._set_event().wait(timeout):
                    msg = f"{timeout} seconds"
                    raise pykka.Timeout(msg)
            else:
                try:
                    self._outcome = (True, waiter(timeout))
                except AskTimeout:
                    raise  # not an outcome: a later get() may still succeed
                except Exception as exc:  # noqa: BLE001
                    self._outcome = (False, exc)
        ok, value = self._outcome  # type: ignore[misc]
        if ok:
            return value
        raise value

    def _set_event(self) -> threading.Event:
        # Only plain futures (no waiter) wait for set(); asks never make one.
        event: threading.Event | None = self.__dict__.get("_event")
        if event is None:
            event = self.__dict__.setdefault("_event", threading.Event())
            if self._outcome is not None:
                event.set()
        return event

    @classmethod
    def failed(cls, exc: BaseException) -> AskFuture:
        future = cls()
        future._outcome = (False, exc)
        return future

    def set(self, value: Any = None) -> None:
        self._settle((True, value))

    def set_exception(self, exc_info: Any = None) -> None:
        exc = (exc_info or sys.exc_info())[1]
        self._settle((False, exc))

    def _settle(self, outcome: tuple[bool, Any]) -> None:
        # As pykka's: a future is set once, and never one a get hook drives.
        if self._outcome is not None or self._get_hook is not None or self._waiter is not None:
            raise queue.Full
        self._outcome = outcome
        self._set_event().set()

    def set_get_hook(self, func: Callable[[float | None], Any]) -> None:
        if self._outcome is not None:
            raise queue.Full  # as pykka's: the result is already there
        super().set_get_hook(func)


class _Hooked:
    """A future driven by a get hook, awaited through a worker thread."""

    _source = None

    def __init__(self, future: AskFuture) -> None:
        self._future = future

    def get(self, *, timeout: float | None = None) -> Any:
        return self._future.get(timeout=timeout)


def local_waiter(future: pykka.Future[Any], what: str) -> Callable[[float | None], Any]:
    """Wait on a pykka future of an actor in this process, with our errors."""

    def wait(timeout: float | None) -> Any:
        flush_thread()  # what this thread told goes out before it waits (a remote ask's send did so)
        try:
            return future.get(timeout=timeout)
        except pykka.Timeout as exc:
            if isinstance(exc, AskTimeout):
                raise
            msg = f"{what} did not answer within {timeout} s"
            raise AskTimeout(msg) from None
        except pykka.ActorDeadError as exc:
            if isinstance(exc, ActorDeadError):
                raise
            raise ActorDeadError(f"{what} is not running: {exc}") from None

    return wait
