# Ported from Pykka 4.5.0's tests/conftest.py, tests/types.py and
# tests/log_handler.py (https://github.com/jodal/pykka).
# Pykka is copyright 2010-2026 Stein Magnus Jodal and contributors,
# licensed under the Apache License, Version 2.0: see tests/pykka/LICENSE
# and tests/pykka/NOTICE (what was changed: plumbing only).
"""Plumbing for pykka's own tests, run against agents in processes.

pykka's fixtures start actors in threads of the test's process and share
`threading.Event`s and futures with them. Here an actor is an `Agent`
spawned by a `Runtime` into a process of its own, so what the test shares
with it is backed by files (`FileEvent`, `FileFuture`), and what it logs
is carried back to the test's log handler through a file as well.
"""

from __future__ import annotations

import collections
import logging
import os
import pickle
import threading
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import cloudpickle
import pykka
import pytest

from actors import Agent
from runtime import AgentRef, Runtime
from runtime.wire._channel import AskFuture

__all__ = [
    "Events",
    "FileEvent",
    "FileFuture",
    "LogLevel",
    "PortRuntime",
    "PykkaTestLogHandler",
    "early_failing_actor_class",
    "events",
    "failing_on_failure_actor_class",
    "future",
    "futures",
    "late_failing_actor_class",
    "log_handler",
    "mocker",
    "_stop_all",
    "runtime",
]


class FileEvent:
    """A `threading.Event` that works across processes: set means the file exists."""

    def __init__(self, path: str) -> None:
        self.path = path

    def set(self) -> None:
        with open(self.path, "w"):
            pass

    def clear(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def is_set(self) -> bool:
        return os.path.exists(self.path)

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True


class FileFuture:
    """A future an actor in another process sets and the test gets."""

    def __init__(self, path: str) -> None:
        self.path = path

    def set(self, value: Any = None) -> None:
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(cloudpickle.dumps(value))
        os.replace(tmp, self.path)

    def get(self, *, timeout: float | None = None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not os.path.exists(self.path):
            if deadline is not None and time.monotonic() >= deadline:
                raise pykka.Timeout(f"{timeout} seconds")
            time.sleep(0.005)
        with open(self.path, "rb") as f:
            return pickle.load(f)


@dataclass
class Events:
    on_start_was_called: FileEvent
    on_stop_was_called: FileEvent
    on_failure_was_called: FileEvent
    greetings_was_received: FileEvent
    actor_registered_before_on_start_was_called: FileEvent


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


class _LogBridge(logging.Handler):
    """Installed in an agent's process: appends each record to a file."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def emit(self, record: logging.LogRecord) -> None:
        exc = None
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            try:
                cloudpickle.dumps(exc)
            except Exception:
                exc = RuntimeError(str(exc))
        line = cloudpickle.dumps((record.name, record.levelname, record.getMessage(), exc))
        with open(self.path, "ab") as f:
            f.write(len(line).to_bytes(4, "big") + line)


class PykkaTestLogHandler(logging.Handler):
    """pykka's test log handler, fed with the records of the agents' processes."""

    def __init__(self, path: str) -> None:
        self.lock = threading.RLock()  # type: ignore[assignment]
        self.path = path
        self._read = 0
        with self.lock:
            self.events: dict[str, threading.Event] = collections.defaultdict(threading.Event)
            self.messages: dict[LogLevel, list[logging.LogRecord]] = {}
            self.reset()
        logging.Handler.__init__(self)

    def emit(self, record: logging.LogRecord) -> None:
        with self.lock:
            level = LogLevel(record.levelname.lower())
            self.messages[level].append(record)
            self.events[level].set()

    def _pull(self, keep: bool = True) -> None:
        """Read the records the agents wrote since the last pull; `emit` them if `keep`."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self._read)
                data = f.read()
        except FileNotFoundError:
            return
        pos = 0
        while pos + 4 <= len(data):
            size = int.from_bytes(data[pos:pos + 4], "big")
            if pos + 4 + size > len(data):
                break
            name, levelname, message, exc = pickle.loads(data[pos + 4:pos + 4 + size])
            pos += 4 + size
            if not keep:
                continue
            record = logging.LogRecord(name, getattr(logging, levelname), "", 0, message, None,
                                       (type(exc), exc, exc.__traceback__) if exc is not None else None)
            self.emit(record)
        self._read += pos

    def reset(self) -> None:
        with self.lock:
            self._pull(keep=False)  # what was logged so far is dropped
            for level in LogLevel:
                self.events[level].clear()
                self.messages[level] = []

    def wait_for_message(self, level: LogLevel, num_messages: int = 1, timeout: float = 5) -> None:
        """Wait until at least `num_messages` log messages have been emitted
        to the given log level."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                self._pull()
                if len(self.messages[level]) >= num_messages:
                    return
            time.sleep(0.01)
        msg = f"Timeout: Waited {timeout:d}s for log message"
        raise Exception(msg)


def _bridged(cls: type, log_path: str, on_start_failed: FileEvent) -> type:
    """`cls` with a hook that sends its process's log records to `log_path`,
    and sets `on_start_failed` if its `on_start` raises."""

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        root = logging.getLogger()
        root.addHandler(_LogBridge(log_path))
        # As pykka's log_handler fixture does: every record reaches the handler.
        root.setLevel(logging.NOTSET)
        cls.__init__(self, *args, **kwargs)

    def on_start(self: Any) -> None:
        try:
            cls.on_start(self)
        except Exception:
            on_start_failed.set()
            raise

    return type(cls.__name__, (cls,), {"__init__": __init__, "on_start": on_start,
                                       "__qualname__": cls.__qualname__, "__module__": cls.__module__})


class _ActorStopped:
    """pykka's `ActorRef.actor_stopped` (a `threading.Event` in the actor) for
    an actor in another process: set once the ref's `is_alive()` is False."""

    def __init__(self, ref: AgentRef) -> None:
        self._ref = ref

    def is_set(self) -> bool:
        return not self._ref.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True


class _StartFailedRef(AgentRef):
    """What pykka's `start()` returns when `on_start` raised: a ref to the
    actor, which has stopped. (`Runtime.spawn` raises on_start's exception
    instead, as the contract says; pykka logs it and returns the ref.)"""

    @property
    def actor_stopped(self) -> _ActorStopped:
        return _ActorStopped(self)


class PortRuntime:
    """What pykka's `runtime` fixture gives, for agents in processes."""

    name = "process"
    actor_class = Agent
    future_class = AskFuture
    sleep_func = staticmethod(time.sleep)

    def __init__(self, tmp_path: Any) -> None:
        self._rt: Runtime | None = None  # started by the first spawn: future tests need none
        self.tmp_path = tmp_path
        self.log_path = str(tmp_path / "agents.log")

    @property
    def rt(self) -> Runtime:
        if self._rt is None:
            self._rt = Runtime()
        return self._rt

    def close(self) -> None:
        if self._rt is not None:
            self._rt.shutdown()

    def event_class(self) -> FileEvent:
        return FileEvent(str(self.tmp_path / f"event-{uuid.uuid4().hex}"))

    def file_future(self) -> FileFuture:
        return FileFuture(str(self.tmp_path / f"future-{uuid.uuid4().hex}"))

    def start(self, cls: type, *args: Any, **kwargs: Any) -> Any:
        """pykka's `cls.start(*args, **kwargs)`: spawned, never restarted (as pykka's).

        As pykka's, it raises what `__init__` raised, but not what `on_start`
        raised (pykka logs that, stops the actor, and returns its ref).
        """
        name = f"{cls.__name__.lower()}-{uuid.uuid4().hex[:8]}"
        on_start_failed = FileEvent(str(self.tmp_path / f"on-start-failed-{name}"))
        try:
            return self.rt.spawn(_bridged(cls, self.log_path, on_start_failed), name, restart="temporary",
                                 args=args, kwargs=kwargs)
        except Exception:
            if not on_start_failed.is_set():
                raise
            return _StartFailedRef(name, None, self.rt.id, cls.__name__)


@pytest.fixture
def runtime(tmp_path: Any) -> Any:
    port = PortRuntime(tmp_path)
    try:
        yield port
    finally:
        port.close()


@pytest.fixture
def log_handler(runtime: PortRuntime) -> Any:
    handler = PykkaTestLogHandler(runtime.log_path)
    yield handler
    handler.close()


@pytest.fixture
def events(runtime: PortRuntime) -> Events:
    return Events(
        on_start_was_called=runtime.event_class(),
        on_stop_was_called=runtime.event_class(),
        on_failure_was_called=runtime.event_class(),
        greetings_was_received=runtime.event_class(),
        actor_registered_before_on_start_was_called=runtime.event_class(),
    )


@pytest.fixture
def early_failing_actor_class(runtime: PortRuntime) -> type[Agent]:
    class EarlyFailingActor(runtime.actor_class):  # type: ignore[name-defined]
        def __init__(self, events: Events) -> None:
            super().__init__()
            self.events = events

        def on_start(self) -> None:
            try:
                raise RuntimeError("on_start failure")
            finally:
                self.events.on_start_was_called.set()

    return EarlyFailingActor


@pytest.fixture
def late_failing_actor_class(runtime: PortRuntime) -> type[Agent]:
    class LateFailingActor(runtime.actor_class):  # type: ignore[name-defined]
        def __init__(self, events: Events) -> None:
            super().__init__()
            self.events = events

        def on_start(self) -> None:
            self.stop()

        def on_stop(self) -> None:
            try:
                raise RuntimeError("on_stop failure")
            finally:
                self.events.on_stop_was_called.set()

    return LateFailingActor


@pytest.fixture
def failing_on_failure_actor_class(runtime: PortRuntime) -> type[Agent]:
    class FailingOnFailureActor(runtime.actor_class):  # type: ignore[name-defined]
        def __init__(self, events: Events) -> None:
            super().__init__()
            self.events = events

        def on_receive(self, message: Any) -> Any:
            if message.get("command") == "raise exception":
                raise Exception("on_receive failure")
            return super().on_receive(message)

        def on_failure(self, *args: Any) -> None:
            try:
                raise RuntimeError("on_failure failure")
            finally:
                self.events.on_failure_was_called.set()

    return FailingOnFailureActor


@pytest.fixture
def future(runtime: PortRuntime) -> Any:
    return runtime.future_class()


@pytest.fixture
def futures(runtime: PortRuntime) -> list[Any]:
    return [runtime.future_class() for _ in range(3)]


class _Mocker:
    """What pykka's tests use of pytest-mock's `mocker`, on `unittest.mock`."""

    from unittest.mock import MagicMock, Mock, NonCallableMock

    def __init__(self) -> None:
        self._patches: list[Any] = []
        outer = self

        class _Patch:
            @staticmethod
            def object(target: Any, attribute: str, **kwargs: Any) -> Any:
                from unittest import mock

                patcher = mock.patch.object(target, attribute, **kwargs)
                outer._patches.append(patcher)
                return patcher.start()

        self.patch = _Patch()

    def stopall(self) -> None:
        for patcher in reversed(self._patches):
            patcher.stop()


@pytest.fixture
def mocker() -> Any:
    """pytest-mock's fixture (not installed here), as far as pykka's tests use it."""
    m = _Mocker()
    yield m
    m.stopall()


@pytest.fixture
def _stop_all(runtime: PortRuntime) -> Any:
    """pykka's `ActorRegistry.stop_all()` after the test: the runtime fixture's shutdown."""
    yield
