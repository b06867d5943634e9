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
import queue
import sys
import threading
from collections.abc import Callable
from typing import Any

import pykka
from pykka._threading import ThreadingFutureResult

from actors._errors import AskTimeout

__all__ = ["NotifyingFuture", "wait_future"]


class NotifyingFuture(pykka.ThreadingFuture[Any]):
    """A threading future that can call back once its outcome is set.

    The setter pays one attribute read; only an awaited future has a callback.

    Lighter than pykka's own (one is made per ask; most asks to a service
    of this process are answered before anybody waits): a C lock guards
    the outcome instead of a `threading.Condition`, and only a thread that
    has to wait makes the lock it waits on (`_gate`, held until the
    outcome or a get hook is set, then passed from waiter to waiter).

    Invariant: `_result`, `_get_hook`, `_gate` and `_notify` are written
    under `_guard`; `_gate`, once made, is released once the outcome (or
    hook) is set, and each waiter that takes it releases it again.
    """

    _notify: Callable[[], None] | None = None
    _gate: threading.Lock | None = None  # made by the first thread that has to wait
    _hook_lock: threading.RLock | None = None  # made with the get hook: it runs once

    def __init__(self) -> None:
        pykka.Future.__init__(self)
        self._guard = threading.Lock()
        self._result: Any = None

    def get(self, *, timeout: float | None = None) -> Any:
        if self._result is None and self._get_hook is None:
            self._wait(timeout)
        if self._get_hook is not None:
            assert self._hook_lock is not None  # set with the hook, under `_guard`
            with self._hook_lock:  # the hook runs once, whoever gets first
                return pykka.Future.get(self, timeout=timeout)
        outcome = self._result
        if outcome.exc_info is not None:  # as pykka's threading future raises it
            exc_type, exc_value, exc_traceback = outcome.exc_info
            if exc_value is None:
                exc_value = exc_type()
            if exc_value.__traceback__ is not exc_traceback:
                raise exc_value.with_traceback(exc_traceback)
            raise exc_value
        return outcome.value

    def _wait(self, timeout: float | None) -> None:
        with self._guard:
            if self._result is not None or self._get_hook is not None:
                return
            gate = self._gate
            if gate is None:
                gate = self._gate = threading.Lock()
                gate.acquire()
        if timeout is None:
            gate.acquire()
        elif not gate.acquire(timeout=timeout) if timeout > 0 else not gate.acquire(blocking=False):
            if self._result is None and self._get_hook is None:
                msg = f"{timeout} seconds"
                raise pykka.Timeout(msg)
            return
        gate.release()  # the next waiter's turn

    def _settle(self, outcome: Any = None, hook: Any = None) -> None:
        with self._guard:
            if self._result is not None or self._get_hook is not None:
                raise queue.Full
            if hook is None:
                self._result = outcome
            else:
                self._hook_lock = threading.RLock()
                pykka.Future.set_get_hook(self, hook)
            gate, notify = self._gate, self._notify
        if gate is not None:
            gate.release()
        if notify is not None:
            notify()

    def set(self, value: Any = None) -> None:
        self._settle(ThreadingFutureResult(value=value))

    def set_exception(self, exc_info: Any = None) -> None:
        assert exc_info is None or len(exc_info) == 3  # as pykka's
        self._settle(ThreadingFutureResult(exc_info=exc_info or sys.exc_info()))

    def set_get_hook(self, func: Any) -> None:
        self._settle(hook=func)

    def notify(self, callback: Callable[[], None]) -> None:
        """Run `callback()` once the outcome is known: now (in this thread)
        if it already is, else in the thread that sets it (exactly once)."""
        with self._guard:
            if self._result is None and self._get_hook is None:
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
