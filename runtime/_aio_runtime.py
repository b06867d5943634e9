"""`rt.aio`: the runtime's services as awaitable twins, plus tasks and batches.

The services' twins are `actors._aio`'s (every call an ask awaited without
blocking the loop). `submit_task` and `map` run the blocking task router
(`runtime._tasks`) in a worker thread and await it; `imap` is an async
iterator fed by a worker thread that pulls the router's results, at most
`_AHEAD` of them ahead of the consumer, and hands each to the loop with
`call_soon_threadsafe`. The event loop never waits on the router; an
`imap` that ends (or is closed) awaits its worker's end, so its run is
over when it returns.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncIterator
from typing import Any

from actors._aio import AioServices

__all__ = ["RuntimeAio"]

_AHEAD = 256  # results an `imap` worker may hold before the consumer takes them
_DONE = object()


class RuntimeAio(AioServices):
    """`rt.aio`: `state`, `store`, `sync`, `events`, `comm`, `peer(id)`,
    `submit_task`, `map` and `imap`, all awaitable."""

    def __init__(self, rt: Any) -> None:
        super().__init__(rt.state, rt.store, rt.sync, rt.events, rt.comm, rt._peer)
        self._rt = rt

    async def submit_task(self, task: dict[str, Any], **kwargs: Any) -> Any:
        """`rt.submit_task(task, ...)`, awaited."""
        return await asyncio.to_thread(self._rt.submit_task, task, **kwargs)

    async def map(self, task_type: str, payloads: Any, **kwargs: Any) -> list[Any]:
        """`rt.map(task_type, payloads, ...)`, awaited: results in input order."""
        return await asyncio.to_thread(self._rt.map, task_type, payloads, **kwargs)

    async def imap(self, task_type: str, payloads: Any, **kwargs: Any) -> AsyncIterator[Any]:
        """`rt.imap(...)` as an async iterator (same arguments and order)."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Queue[Any] = asyncio.Queue()
        room = threading.Semaphore(_AHEAD)
        stop = threading.Event()
        ended: concurrent.futures.Future[None] = concurrent.futures.Future()  # the worker closed its imap

        def pull() -> None:  # a worker thread
            results = self._rt.imap(task_type, payloads, **kwargs)
            try:
                for result in results:
                    room.acquire()
                    if stop.is_set():
                        return
                    loop.call_soon_threadsafe(ready.put_nowait, (True, result))
                loop.call_soon_threadsafe(ready.put_nowait, (True, _DONE))
            except BaseException as exc:  # noqa: BLE001 - raised again in the consumer
                try:
                    loop.call_soon_threadsafe(ready.put_nowait, (False, exc))
                except RuntimeError:
                    pass  # the loop is closed
            finally:
                try:
                    close = getattr(results, "close", None)
                    if close is not None:
                        close()
                finally:
                    ended.set_result(None)

        worker = threading.Thread(target=pull, name="aio-imap", daemon=True)
        worker.start()
        cancelled = False
        try:
            while True:
                ok, value = await ready.get()
                room.release()
                if not ok:
                    raise value
                if value is _DONE:
                    return
                yield value
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            stop.set()
            room.release()  # a worker waiting for room sees the stop
            # Ended once the worker has closed the blocking imap (its
            # chunks in flight done, a `run_id` free again); a cancelled
            # consumer doesn't wait for that.
            if not cancelled:
                await asyncio.shield(asyncio.wrap_future(ended))
