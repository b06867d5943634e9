"""One pickling per message: cloudpickle in, pickle out.

cloudpickle carries what plain pickle can't (classes defined in `__main__`
or a test module, lambdas, closures); loading needs only the standard
`pickle.loads`, which is faster than any wrapper.
"""

from __future__ import annotations

import io
import pickle
import threading
import traceback
from typing import Any

import cloudpickle

from actors import MessageSerializationError, RemoteError

__all__ = ["dumps", "exception_payload", "loads"]

loads = pickle.loads


class _Pickling(threading.local):
    """One cloudpickle pickler per thread, reused: building one costs more
    than pickling a small message."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        self.pickler = cloudpickle.Pickler(self.buffer, protocol=pickle.HIGHEST_PROTOCOL)


_pickling = _Pickling()


def dumps(obj: Any, what: str = "message") -> bytes:
    """Pickle `obj`, or raise `MessageSerializationError` naming what failed."""
    state = _pickling
    buffer = state.buffer
    try:
        state.pickler.dump(obj)
        return buffer.getvalue()
    except Exception as exc:
        msg = f"{what} can't be pickled: {type(exc).__name__}: {exc}"
        raise MessageSerializationError(msg) from exc
    finally:
        # The memo must not keep objects alive nor leak into the next message.
        state.pickler.clear_memo()
        buffer.seek(0)
        buffer.truncate()


def exception_payload(exc: BaseException) -> BaseException:
    """The exception to send back to an asker: itself if it pickles, else `RemoteError`.

    Either way the remote traceback text travels with it, as a note.
    """
    text = "".join(traceback.format_exception(exc))
    try:
        if not any("remote traceback" in note for note in getattr(exc, "__notes__", ())):
            exc.add_note(f"remote traceback:\n{text}")
        pickle.loads(cloudpickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception:  # noqa: BLE001 - anything that won't round-trip
        return RemoteError(f"{type(exc).__module__}.{type(exc).__qualname__}", str(exc), text)
    return exc
