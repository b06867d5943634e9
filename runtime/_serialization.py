"""One pickling per message: plain pickle when it is right, else cloudpickle.

cloudpickle carries what plain pickle can't (classes and functions defined
in `__main__`, lambdas, closures), but its per-object hook does costly
module lookups, which makes it several times slower than the standard
pickler. So each message is first pickled by the standard (C) pickler,
whose only hook here is a cheap check that stops at any class or function
defined in `__main__` (it only exists in this process); lambdas and
closures make the standard pickler fail by itself. Either way the message
is then pickled by cloudpickle, which carries such things by value.
Everything else the standard pickler writes by reference, exactly as
cloudpickle would. The hook is not even called for plain data (str, bytes,
numbers, lists, dicts, ...), so large payloads cost no scan. Loading needs
only the standard `pickle.loads`.
"""

from __future__ import annotations

import io
import pickle
import threading
import traceback
import types
from typing import Any

import cloudpickle

from actors import MessageSerializationError, RemoteError

__all__ = ["dumps", "exception_payload", "loads"]

loads = pickle.loads


class _ByValue(Exception):
    """This object must travel by value: hand it to cloudpickle."""


class _StandardPickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        # Called for classes, functions and instances of user classes only.
        if isinstance(obj, (type, types.FunctionType)) and getattr(obj, "__module__", None) == "__main__":
            raise _ByValue
        return NotImplemented


class _Pickling(threading.local):
    """Both picklers, one pair per thread, reused: building a pickler costs
    more than pickling a small message."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        self.standard = _StandardPickler(self.buffer, protocol=pickle.HIGHEST_PROTOCOL)
        self.pickler = cloudpickle.Pickler(self.buffer, protocol=pickle.HIGHEST_PROTOCOL)


_pickling = _Pickling()


def dumps(obj: Any, what: str = "message") -> bytes:
    """Pickle `obj`, or raise `MessageSerializationError` naming what failed."""
    state = _pickling
    try:
        return _dump(state, state.standard, obj)
    except Exception:  # noqa: BLE001 - __main__, lambdas, closures: cloudpickle's job
        pass
    try:
        return _dump(state, state.pickler, obj)
    except Exception as exc:
        msg = f"{what} can't be pickled: {type(exc).__name__}: {exc}"
        raise MessageSerializationError(msg) from exc


def _dump(state: _Pickling, pickler: pickle.Pickler, obj: Any) -> bytes:
    try:
        pickler.dump(obj)
        return state.buffer.getvalue()
    finally:
        # The memo must not keep objects alive nor leak into the next message.
        pickler.clear_memo()
        state.buffer.seek(0)
        state.buffer.truncate()


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
