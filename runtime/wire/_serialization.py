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
from collections import ChainMap
from typing import Any, cast

import cloudpickle
from pykka.messages import ProxyCall

from actors import MessageSerializationError, RemoteError

__all__ = ["dumps", "exception_payload", "loads", "unloadable"]

loads = pickle.loads


class _ByValue(Exception):
    """This object must travel by value: hand it to cloudpickle."""


def _proxy_call(call: ProxyCall) -> tuple[Any, ...]:
    # A method call, the most common message, as its class and fields:
    # cheaper than the named tuple's own reduction (`__getnewargs__`).
    return ProxyCall, (call.attr_path, call.args, call.kwargs)


class _StandardPickler(pickle.Pickler):
    dispatch_table = {ProxyCall: _proxy_call}

    def reducer_override(self, obj: Any) -> Any:
        # Called for classes, functions and instances of user classes only.
        if isinstance(obj, (type, types.FunctionType)) and getattr(obj, "__module__", None) == "__main__":
            raise _ByValue
        return NotImplemented


def _code_keeping_its_file(code: types.CodeType) -> Any:
    # cloudpickle writes "<dynamic-code>" as the file of every code object it
    # carries by value (for deterministic payloads), so a traceback from an
    # agent whose class came from `__main__` named no file and showed no
    # source. Keep the real file name: the agent runs on the same machine.
    rebuild, args = cloudpickle.cloudpickle._code_reduce(code)
    return rebuild, tuple(code.co_filename if arg == "<dynamic-code>" else arg for arg in args)


class _CloudPickler(cloudpickle.Pickler):  # type: ignore[misc]  # cloudpickle ships no types
    dispatch_table = ChainMap({types.CodeType: _code_keeping_its_file}, cloudpickle.Pickler.dispatch_table)


class _Pickling(threading.local):
    """Both picklers, one pair per thread, reused: building a pickler costs
    more than pickling a small message."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        self.standard = _StandardPickler(self.buffer, protocol=pickle.HIGHEST_PROTOCOL)
        self.pickler = _CloudPickler(self.buffer, protocol=pickle.HIGHEST_PROTOCOL)


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


def exception_payload(exc: BaseException) -> Any:
    """What to pickle for an asker in place of `exc` (on the error path only).

    If `exc` pickles, a stand-in that loads, in the asker's process, as
    `exc` itself, or as a `RemoteError` naming its class when that class
    can't be loaded there (defined in a module only the agent imported, say);
    else that `RemoteError` at once. Either way the remote traceback text
    travels with it (as a note on `exc`, as `remote_traceback` on the error).
    """
    text = "".join(traceback.format_exception(exc))
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not hide the error
        message = f"<{type(exc).__name__} whose str() failed>"
    fallback = RemoteError(f"{type(exc).__module__}.{type(exc).__qualname__}", message, text)
    try:
        if not any("remote traceback" in note for note in getattr(exc, "__notes__", ())):
            exc.add_note(f"remote traceback:\n{text}")
        pickled = dumps(exc, "exception")
        pickle.loads(pickled)
    except Exception:  # noqa: BLE001 - anything that won't round-trip
        return fallback
    return _Raised(pickled, fallback)


class _Raised:
    """Pickles as a call that loads the exception `pickled`, or `fallback` if it can't."""

    __slots__ = ("fallback", "pickled")

    def __init__(self, pickled: bytes, fallback: RemoteError) -> None:
        self.pickled = pickled
        self.fallback = fallback

    def __reduce__(self) -> tuple[Any, ...]:
        return (_load_exception, (self.pickled, self.fallback))


def _load_exception(pickled: bytes, fallback: RemoteError) -> BaseException:
    # Runs in the asker's process, while it loads the reply.
    try:
        return cast("BaseException", pickle.loads(pickled))
    except Exception as exc:  # noqa: BLE001 - its class (or something in it) is unknown here
        why = f"{fallback.message} (the exception can't be loaded in this process: {type(exc).__name__}: {exc})"
        return RemoteError(fallback.remote_type, why, fallback.remote_traceback)


def unloadable(body: bytes | memoryview, error: Exception, what: str = "reply") -> RemoteError:
    """The error for a `what` whose pickle `body` failed to load here with `error`.

    Only on that failure path: loads `body` again, slowly, to learn which
    class or function was missing (`remote_type`).
    """
    missing = _missing_global(body)
    name = missing or type(error).__name__
    message = f"the {what} can't be loaded in this process ({name} is unknown here: {type(error).__name__}: {error})"
    detail = "".join(traceback.format_exception(error))
    return RemoteError(name, message, f"(no remote traceback: loading the {what} failed here)\n{detail}")


class _FindingUnpickler(pickle.Unpickler):
    missing: str | None = None

    def find_class(self, module: str, name: str) -> Any:
        try:
            return super().find_class(module, name)
        except Exception:
            self.missing = f"{module}.{name}"
            raise


def _missing_global(body: bytes | memoryview) -> str | None:
    unpickler = _FindingUnpickler(io.BytesIO(body))
    try:
        unpickler.load()
    except Exception:  # noqa: BLE001 - expected: it failed before
        pass
    return unpickler.missing
