"""Futures an asyncio event loop can await without blocking.

`NotifyingFuture` is the pykka future of every actor built on `ActorBase`:
a plain `pykka.ThreadingFuture` that can also run one callback (in the
thread that sets it) once its outcome is known. `wait_future` awaits any
future: a cross-process ask's own `_aget` (see `runtime.wire._aio`), a
`NotifyingFuture` through its callback and the loop's
`call_soon_threadsafe`, and any other future in a worker thread.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

import pykka

from actors._errors import AskTimeout

__all__ = ["NotifyingFuture", "wait_future"]


class NotifyingFuture(pykka.ThreadingFuture[Any]):
    """A threading future that can call back once its outcome is set.

    The setter pays one attribute read; only an awaited future has a callback.
    """

    _notify: Callable[[], None] | None = None

    def set(self, value: Any = None) -> None:
        super().set(value)
        if self._notify is not None:
            self._notify()

    def set_exception(self, exc_info: Any = None) -> None:
        super().set_exception(exc_info or sys.exc_info())
        if self._notify is not None:
            self._notify()

    def notify(self, callback: Callable[[], None]) -> None:
        """Run `callback()` once the outcome is known: now (in this thread)
        if it already is, else in the thread that sets it.

        Invariant: `_result` is read and `_notify` written under the
        future's condition, and `set` writes `_result` under it before it
        reads `_notify`, so the callback runs exactly once.
        """
        with self._condition:
            if self._result is None:
                self._notify = callback
                return
        callback()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def wait_future(future: Any, timeout: float | None = None) -> Any:
    """Await the outcome of `future` (any pykka future) without blocking the loop.

    `AskTimeout` after `timeout` s. Cancelling the awaiting task stops the
    wait; for a cross-process ask it also drops its reply when it comes.
    """
    aget = getattr(future, "_aget", None)
    if aget is not None:
        return await aget(timeout)
    loop = asyncio.get_running_loop()
    if isinstance(future, NotifyingFuture) and future._get_hook is None:
        waiter = loop.create_future()

        def woken() -> None:
            try:
                loop.call_soon_threadsafe(_wake, waiter)
            except RuntimeError:
                pass  # the loop was closed meanwhile: nobody waits

        future.notify(woken)
        if timeout is None:
            await waiter
        else:
            try:
                await asyncio.wait_for(waiter, timeout)
            except TimeoutError:
                msg = f"no answer within {timeout} s"
                raise AskTimeout(msg) from None
        return future.get(timeout=0)
    # Any other future: a worker thread waits for it, the loop doesn't.
    try:
        return await loop.run_in_executor(None, lambda: future.get(timeout=timeout))
    except pykka.Timeout as exc:
        if isinstance(exc, AskTimeout):
            raise
        msg = f"no answer within {timeout} s"
        raise AskTimeout(msg) from None
