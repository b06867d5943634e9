"""The futures of asks: pykka futures whose value comes from a channel.

An `AskFuture` is what `ask(block=False)` and proxies return: `get()`
waits on the channel (or a local pykka future), the outcome is kept once
known, and an event loop can await it without blocking (`__await__`, see
`_aio`). `local_waiter` waits on an actor of this process with the
framework's errors.
"""

from __future__ import annotations

import asyncio
import queue
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pykka

from actors import ActorDeadError, AskTimeout
from actors._deferral import deferring, run_deferred
from runtime.wire._aio import await_ask, bind, unbind
from runtime.wire._batching import flush_thread
from runtime.wire._signals import slice_for_signals

__all__ = ["AskFuture", "local_waiter", "unwrap"]


def unwrap(outcome: tuple[bool, Any]) -> Any:
    """The value of an outcome `(ok, value)`, or raise its error (a pykka
    `ActorDeadError` as ours, which is also pykka's)."""
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

    # -- awaiting: asyncio's future protocol ---------------------------------
    #
    # An ask is an asyncio future (`asyncio.isfuture` is true: it has
    # `_asyncio_future_blocking`, `get_loop`, `done`, `result`, `exception`,
    # `cancel`, `cancelled`, `add_done_callback` and `remove_done_callback`),
    # so `gather`, `wait`, `wait_for` and `shield` take it as it is, with no
    # task to wrap it. Its state lives in a future of the loop (`_afut`),
    # made on first use (`_bind`): for a cross-process ask, its reply sets
    # it straight from the channel (`_aio.bind`); for any other, a task
    # awaits `_aget`. Its callbacks get the ask itself. Cancelling it (or
    # the task awaiting it) abandons the ask.

    _afut: Any = None  # the loop's future, once bound

    @property
    def _asyncio_future_blocking(self) -> bool | None:
        # None (not a future, for `asyncio.isfuture`) outside a running
        # loop, as long as it isn't bound: `loop.run_until_complete(ask)`
        # then wraps it in a task, which binds it on the loop it runs.
        if self._afut is None and asyncio._get_running_loop() is None:
            return None
        return self.__dict__.get("_blocking", False)  # type: ignore[no-any-return]

    @_asyncio_future_blocking.setter
    def _asyncio_future_blocking(self, value: bool) -> None:
        self.__dict__["_blocking"] = value

    def _bind(self) -> asyncio.Future[None]:
        afut: asyncio.Future[None] | None = self._afut
        if afut is None:
            loop = asyncio.get_running_loop()
            afut = self._afut = loop.create_future()
            if self._outcome is not None:
                afut.set_result(None)
            elif self._get_hook is None and type(self._source) is tuple:
                bind(loop, self, afut)
            else:
                self.__dict__["_driver"] = loop.create_task(self._drive(afut))
        return afut

    async def _drive(self, afut: asyncio.Future[None]) -> tuple[bool, Any]:
        # A future whose reply comes any other way: `_aget` waits for it
        # (in the context of the task that bound it, so a chained ask's
        # deadlock check sees that task's chain); `_known` reads the result.
        try:
            outcome = (True, await self._aget(None))
        except Exception as exc:  # noqa: BLE001 - the ask's error, raised by result()
            outcome = (False, exc)
        if not afut.done():
            afut.set_result(None)
        return outcome

    def _take_outcome(self, outcome: tuple[bool, Any]) -> None:
        """Keep the `(ok, value)` an awaited ask's channel delivered."""
        if self._outcome is None:
            try:
                self._outcome = (True, unwrap(outcome))
            except Exception as exc:  # noqa: BLE001 - the ask's error, as `get` raises it
                self._outcome = (False, exc)

    def _known(self) -> tuple[bool, Any]:
        # The outcome, once the loop's future is done (CancelledError if it
        # was cancelled, InvalidStateError before).
        if self._outcome is None:
            afut = self._afut
            if afut is None:
                raise asyncio.InvalidStateError("Result is not ready.")
            afut.result()
            driver = self.__dict__.get("_driver")
            if driver is not None:
                return driver.result()  # type: ignore[no-any-return]  # done before afut's callbacks run
        return self._outcome  # type: ignore[return-value]

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._bind().get_loop()

    def done(self) -> bool:
        if self._outcome is not None:
            return True
        try:
            return self._bind().done()
        except RuntimeError:  # no running loop: nothing can settle it here
            return False

    def cancelled(self) -> bool:
        return self._afut is not None and self._afut.cancelled()

    def result(self) -> Any:
        ok, value = self._known()
        if ok:
            return value
        raise value

    def exception(self) -> BaseException | None:
        ok, value = self._known()
        return None if ok else value

    def cancel(self, msg: Any = None) -> bool:
        if self._outcome is not None:
            return False
        try:
            afut = self._bind()
        except RuntimeError:  # no running loop
            return False
        if not afut.cancel(msg):
            return False
        if type(self._source) is tuple:
            unbind(self, abandon=True)
        driver = self.__dict__.get("_driver")
        if driver is not None:
            driver.cancel(msg)
        return True

    def add_done_callback(self, fn: Callable[[Any], Any], *, context: Any = None) -> None:
        self._bind().add_done_callback(_Relay(fn, self), context=context)

    def remove_done_callback(self, fn: Callable[[Any], Any]) -> int:
        afut = self._afut
        return 0 if afut is None else afut.remove_done_callback(_Relay(fn, self))

    def __await__(self) -> Any:
        # pykka's own __await__ blocks the loop in get(): never here.
        if self._outcome is None:
            if self._afut is None and (self._get_hook is not None or type(self._source) is not tuple):
                return (yield from self._aget(None).__await__())  # the task awaits it itself
            afut = self._bind()
            if not afut.done():
                try:
                    yield from afut  # the task waits on the loop's own future: asyncio's fast path
                except asyncio.CancelledError:
                    if self._outcome is None and type(self._source) is tuple:
                        unbind(self, abandon=True)  # the task was cancelled: so is the ask
                    raise
        return self.result()

    async def _aget(self, timeout: float | None) -> Any:
        """Await the outcome without blocking the loop (`AskTimeout` after
        `timeout` s); it is kept, as `get` keeps it. A timed-out wait keeps
        the ask too, for a later `get` or await."""
        if self._get_hook is not None:  # pykka's map/join/filter: a worker thread waits
            return await await_ask(_Hooked(self), timeout)
        if self._outcome is None:
            if self._source is None:  # a waiter of its own (a stop, a chained ask)
                return await await_ask(self, timeout)
            if type(self._source) is not tuple:
                self._take_outcome(await await_ask(self, timeout))
            elif timeout is None:
                return await self
            else:
                await self._wait_bound(timeout)
        ok, value = self._outcome  # type: ignore[misc]
        if ok:
            return value
        raise value

    async def _wait_bound(self, timeout: float) -> None:
        # A cross-process ask awaited with a timeout: the loop's future,
        # given up (not abandoned) when the timer fires first.
        afut = self._bind()
        if afut.done():
            return
        loop = afut.get_loop()
        expired: list[bool] = []

        def expire() -> None:
            expired.append(True)
            afut.cancel()

        timer = loop.call_later(timeout, expire)
        try:
            await afut
        except asyncio.CancelledError:
            if self._outcome is not None:
                return  # the reply came as the timer fired (or with the cancel)
            self._afut = None  # a later await binds again
            unbind(self, abandon=not expired)  # timed out: a later get may take it
            if expired:
                msg = f"{self._source[2]} did not answer within {timeout} s"
                raise AskTimeout(msg) from None
            raise
        finally:
            timer.cancel()

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


class _Relay:
    """A done callback of an ask's loop future, called with the ask itself
    (equal to another for the same callback: `remove_done_callback`)."""

    __slots__ = ("fn", "future")

    def __init__(self, fn: Callable[[Any], Any], future: AskFuture) -> None:
        self.fn, self.future = fn, future

    def __call__(self, _afut: Any) -> None:
        self.fn(self.future)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Relay) and other.fn == self.fn and other.future is self.future

    def __hash__(self) -> int:
        return hash(self.fn)


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
        if getattr(future, "_result", None) is not None:  # answered already (by a service, in this thread)
            return future.get(timeout=0)
        flush_thread()  # what this thread told goes out before it waits (a remote ask's send did so)
        if deferring():
            run_deferred(stop=False)  # nor does what it deferred wait for the answer
        deadline = None if timeout is None else time.monotonic() + timeout
        # A threading future tells a wait that ran out (`_result` still unset)
        # from a Timeout it holds as its outcome: only its wait is sliced.
        sliced = isinstance(future, pykka.ThreadingFuture) and future._get_hook is None
        while True:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            step = slice_for_signals(remaining) if sliced else remaining  # the main thread sees a Ctrl-C
            try:
                return future.get(timeout=step)
            except pykka.Timeout as exc:
                if step != remaining and future._result is None:  # type: ignore[attr-defined]
                    continue  # a slice ran out, not the wait
                if isinstance(exc, AskTimeout):
                    raise
                msg = f"{what} did not answer within {timeout} s"
                raise AskTimeout(msg) from None
            except pykka.ActorDeadError as exc:
                if isinstance(exc, ActorDeadError):
                    raise
                raise ActorDeadError(f"{what} is not running: {exc}") from None

    return wait
