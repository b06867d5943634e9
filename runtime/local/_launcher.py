"""Starting agent processes through the runtime's zygote, and handles on them.

The zygote (see `_zygote`) forks each agent from a clean, warm process, so
a new agent costs a fork rather than an interpreter start, and never
inherits the runtime's threads, sockets or `__main__` module (classes from
`__main__` travel by value with cloudpickle instead). Agents are the
zygote's children: the zygote reports their exit status, and a pidfd gives
the runtime a sentinel that becomes readable the moment one dies. Each agent
leads its own process group, which the zygote kills when the agent dies.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from actors import ActorsError, AgentStartError
from runtime.wire._frames import readable_now
from runtime.wire._serialization import loads
from runtime.local._zygote import BOOT_CODE

__all__ = ["AgentProcess", "LauncherGoneError", "PreloadError", "Started", "Zygote", "preload_modules", "reap"]


class LauncherGoneError(ActorsError):
    """The runtime's zygote process is gone, so no agent can be started."""


class PreloadError(ActorsError, ImportError):
    """A module named in the runtime's `preload` failed to import."""

    _fields = ("module", "reason")

    def __init__(self, module: str, reason: str) -> None:
        super().__init__(f"preloading {module!r} for the agents failed: {reason}")
        self.module = module
        self.reason = reason


def preload_modules(preload: Sequence[str] | str) -> tuple[str, ...]:
    """The runtime's `preload` argument as a tuple of module names (one name
    alone may be given as a string); TypeError or ValueError naming a bad one."""
    names = (preload,) if isinstance(preload, str) else preload
    try:
        names = tuple(names)
    except TypeError:
        raise TypeError(f"preload must be a list of module names, got {preload!r}") from None
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"preload must be a list of module names, got {name!r} in it")
        if not all(part.isidentifier() for part in name.split(".")):
            raise ValueError(f"preload: {name!r} is not a module name (e.g. 'my_agents' or 'pkg.agents')")
    return names


class AgentProcess:
    """A handle on one agent process, as `multiprocessing.Process` offers.

    Several threads use one handle (the supervisor, a thread stopping the
    agent, the task router): the pidfd is closed only once no thread is
    waiting on it or signalling through it (`_hold`), or a waiter could be
    handed a reused descriptor number; and a known exit status is kept
    here, so a waiter never misses it after the zygote's copy is dropped.
    """

    def __init__(self, pid: int, zygote: Zygote) -> None:
        self.pid = pid
        self._zygote = zygote
        self._exitcode: int | None = None
        try:
            self.sentinel = os.pidfd_open(pid)
        except ProcessLookupError:  # already gone (and reaped by the zygote)
            self.sentinel = os.open(os.devnull, os.O_RDONLY)  # always readable
        self._closer = weakref.finalize(self, os.close, self.sentinel)
        self._fd_lock = threading.Lock()
        self._users = 0  # threads using the pidfd now
        self._closing = False  # close() was called: the last user closes it

    @property
    def exitcode(self) -> int | None:
        if self._exitcode is None:
            self._exitcode = self._zygote.exitcode(self.pid)
        return self._exitcode

    def _hold(self) -> int:
        """The pidfd, kept open until `_release()`; -1 (nothing to release) once closed."""
        with self._fd_lock:
            if self.sentinel >= 0:
                self._users += 1
            return self.sentinel

    def _release(self) -> None:
        with self._fd_lock:
            self._users -= 1
            if self._users == 0 and self._closing:
                self._close_now()

    def _close_now(self) -> None:  # under `_fd_lock`
        self.sentinel = -1
        self._closer()

    def is_alive(self) -> bool:
        if self.exitcode is not None:
            return False
        fd = self._hold()
        if fd < 0:
            return False
        try:  # the task router asks this of every agent per task: one poll
            return not readable_now(fd)
        finally:
            self._release()

    def join(self, timeout: float | None = None) -> None:
        """Wait until the process ended and its exit status is known."""
        if self.exitcode is not None:
            return  # known: its pidfd may be closed already
        deadline = None if timeout is None else time.monotonic() + timeout
        fd = self._hold()
        if fd >= 0:
            try:
                wait([fd], timeout)
            finally:
                self._release()
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0)
        self._zygote.wait_exit(self, remaining)

    def send_signal(self, signum: int) -> None:
        """Signal the process, unless it has ended (never another one that got its pid)."""
        if self.exitcode is not None:
            return
        fd = self._hold()
        if fd < 0:
            return
        try:
            signal.pidfd_send_signal(fd, signum)
        except OSError:  # it ended meanwhile
            pass
        finally:
            self._release()

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def close(self) -> None:
        """Close the pidfd, now or once the last thread using it is done.

        Once the exit status is known this handle keeps it, and the zygote's
        copy is dropped (a later process may get the same pid)."""
        with self._fd_lock:
            if not self._closing:
                self._closing = True
                if self._users == 0:
                    self._close_now()
        if self.exitcode is not None:
            self._zygote.forget(self.pid)


class Zygote:
    """The runtime's side of its zygote: fork requests and exit reports."""

    def __init__(self, preload: Sequence[str] = ()) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._sock = ours
        self._proc = subprocess.Popen(
            [sys.executable, "-c", BOOT_CODE, str(theirs.fileno()), json.dumps(sys.path), json.dumps(list(preload)),
             str(os.getpid())],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        self._lock = threading.Lock()  # one fork request at a time
        self._cond = threading.Condition()
        self._pids: list[int] = []
        self._exits: dict[int, int] = {}
        self._ready: tuple[Any, ...] | None = None  # ("ready",) or ("preload_failed", module, reason)
        self._gone = False
        threading.Thread(target=self._read, name="zygote-reader", daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                data = self._sock.recv(1 << 16)
            except OSError:
                data = b""
            with self._cond:
                if not data:
                    self._gone = True
                    self._cond.notify_all()
                    return
                kind, *rest = pickle.loads(data)
                if kind in ("ready", "preload_failed"):
                    self._ready = (kind, *rest)
                elif kind == "pid":
                    self._pids.append(rest[0])
                else:
                    self._exits[rest[0]] = rest[1]
                self._cond.notify_all()

    def wait_ready(self, timeout: float) -> None:
        """Wait until the zygote has imported its modules; PreloadError naming
        the one that failed, LauncherGoneError if it died or took too long."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._ready or self._gone, timeout):
                raise LauncherGoneError(f"the agent launcher (zygote) was not ready within {timeout} s")
            if self._ready is None:
                raise LauncherGoneError("the agent launcher (zygote) exited while starting")
            if self._ready[0] == "preload_failed":
                raise PreloadError(*self._ready[1:])

    def fork(self, control_fd: int) -> int:
        """Have the zygote fork an agent holding `control_fd`; return its pid."""
        with self._lock:
            try:
                socket.send_fds(self._sock, [pickle.dumps(sys.path)], [control_fd])
            except OSError as exc:
                raise LauncherGoneError(f"the agent launcher (zygote) is gone: {exc}") from None
            with self._cond:
                if not self._cond.wait_for(lambda: self._pids or self._gone, 30):
                    raise LauncherGoneError("the agent launcher (zygote) did not answer in 30 s")
                if not self._pids:
                    raise LauncherGoneError("the agent launcher (zygote) exited")
                return self._pids.pop(0)

    def exitcode(self, pid: int) -> int | None:
        with self._cond:
            return self._exits.get(pid)

    def forget(self, pid: int) -> None:
        """Drop the exit status of `pid` (its handle keeps a copy)."""
        with self._cond:
            self._exits.pop(pid, None)
            self._cond.notify_all()  # a waiter finds it in the handle now

    def wait_exit(self, process: AgentProcess, timeout: float | None) -> None:
        """Wait until `process`'s exit status is known (here or in its handle)."""
        with self._cond:
            self._cond.wait_for(lambda: process.exitcode is not None or self._gone, timeout)

    def close(self) -> None:
        """End the zygote (its agents must have been stopped before)."""
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(10)


@dataclass
class Started:
    """A running agent process: its handle, control pipe and node address."""

    process: AgentProcess
    control: Connection
    address: str


def start_agent_process(
    zygote: Zygote, boot: bytes, name: str, timeout: float, on_fork: Callable[[int], None] | None = None,
    starting: set[AgentProcess] | None = None,
) -> Started:
    """Start one agent process and wait until its `on_start` has run.

    `on_fork(pid)` runs once the process exists, before it reads its boot
    spec: so the runtime knows which agent a pid is before any agent code runs.

    Raises what `__init__` or `on_start` raised, or `AgentStartError` if the
    process died or stayed silent for `timeout` seconds; in every failure
    the process is reaped before this returns. The process is in `starting`
    while this waits (so a shutdown can end a start that hangs).
    """
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    control = Connection(ours.detach())
    try:
        pid = zygote.fork(theirs.fileno())
    except BaseException:
        control.close()
        raise
    finally:
        theirs.close()
    process = AgentProcess(pid, zygote)
    if on_fork is not None:
        on_fork(pid)
    if starting is not None:
        starting.add(process)
    try:
        return _wait_started(process, control, boot, name, timeout)
    finally:
        if starting is not None:
            starting.discard(process)


def _wait_started(process: AgentProcess, control: Connection, boot: bytes, name: str, timeout: float) -> Started:
    outcome: tuple[str, Any] | None = None
    try:
        control.send_bytes(boot)
    except OSError:  # it died before reading its boot spec
        outcome = ("died", None)
    deadline = time.monotonic() + timeout
    while outcome is None:
        remaining = deadline - time.monotonic()
        ready = wait([control, process.sentinel], max(remaining, 0))
        if control in ready:
            try:
                outcome = loads(control.recv_bytes())
            except (EOFError, OSError):
                outcome = ("died", None)
        elif process.sentinel in ready:
            outcome = ("died", None)
        elif remaining <= 0:
            outcome = ("timeout", None)
    kind, value = outcome
    if kind == "ready":
        return Started(process, control, value)
    if kind == "timeout":
        process.kill()  # still in on_start: nothing to wait for (it would take reap's full grace)
    reap(process)
    control.close()
    process.close()
    if kind == "error":
        raise value
    if kind == "timeout":
        msg = f"agent {name!r} did not finish on_start within {timeout} s"
    else:
        msg = f"agent {name!r} exited with code {process.exitcode} before on_start finished"
    raise AgentStartError(msg)


def reap(process: AgentProcess, timeout: float = 5.0, grace: float = 5.0) -> None:
    """Wait for `process` to end; kill it if it doesn't within `timeout`
    (then wait up to `grace` for its exit status)."""
    process.join(timeout)
    if process.exitcode is None:
        process.kill()
        process.join(grace)
