"""The supervisor: notices agent processes dying and applies restart policy.

It waits on every agent process's sentinel at once (no polling), so a
death is seen within milliseconds, and handles each exit in a thread of its
own, so agents come back independently of each other. Per Erlang/OTP: `permanent` agents are
always restarted, `transient` ones only after an abnormal exit, `temporary`
ones never; more than `max_restarts` restarts within `restart_window`
seconds and the supervisor gives up on the agent.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, cast

from runtime.local._host import EXIT_FAILED
from runtime.local._launcher import Started

__all__ = ["AgentRecord", "Restarter", "SupervisedRecord", "Supervisor", "decide", "exit_reason", "stop_notes"]

logger = logging.getLogger("runtime")

RESTART_POLICIES = ("permanent", "transient", "temporary")


@dataclass
class SupervisedRecord:
    """What a runtime knows of one agent across its restarts, on any backend.

    Each backend adds where the current incarnation runs.
    """

    name: str
    boot: bytes  # the pickled agent class, arguments and context: once for every restart
    capabilities: list[str]
    restart: str
    max_restarts: int
    restart_window: float
    _: KW_ONLY
    kind: str = "agent"
    ref: Any = None  # the runtime's ref to it (it follows the name)
    restarts: int = 0
    status: str = "running"  # running | stopping | stopped | exited | restarting | gave up
    restart_times: deque[float] = field(default_factory=deque)
    # Set once the supervisor has handled the current process's exit
    # (AGENT_LEFT published, policy applied); cleared at each restart.
    exit_handled: threading.Event = field(default_factory=threading.Event)


@dataclass
class AgentRecord(SupervisedRecord):
    """An agent in a process forked by this machine's zygote."""

    started: Started
    # Callbacks waiting for the current process's exit to be settled (see
    # `Runtime._await_gone`), and the address of the last incarnation whose
    # exit was settled; both guarded by the runtime's lock.
    gone_waiters: list[Callable[[str | None], None]] = field(default_factory=list)
    settled: str | None = None
    left: str | None = None  # the AGENT_LEFT reason of the last exit
    # Its snapshots are told (a store in memory, a class with `snapshot`):
    # each exit first reads its process's connections to their end.
    drain: bool = False


def decide(record: Any, abnormal: bool) -> str:
    """After an exit: "stop", "restart", or the reason for giving up.

    `record` has `restart`, `max_restarts`, `restart_window` and the deque
    `restart_times`; a restart is counted in it here.
    """
    if not abnormal or record.restart == "temporary":
        return "stop"  # transient and permanent alike: a requested stop is final
    now = time.monotonic()
    record.restart_times.append(now)
    while record.restart_times and now - record.restart_times[0] > record.restart_window:
        record.restart_times.popleft()
    if len(record.restart_times) > record.max_restarts:
        return f"gave up after {record.max_restarts} restarts within {record.restart_window} s"
    return "restart"


def exit_reason(exitcode: int | None) -> str:
    if exitcode is None:
        return "unknown exit"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    if exitcode == EXIT_FAILED:
        return f"exit code {EXIT_FAILED} (a told message raised)"
    return f"exit code {exitcode}"


class Restarter:
    """Applies the restart policy after an exit; both backends use it.

    Restarts of different agents run at once, each in the thread that
    handles its agent's exit: one agent's slow `on_start` holds up nobody
    else. Invariant: once `stop_restarting()` has returned, no restart is
    under way and none will start (shutdown relies on it).
    """

    def __init__(
        self, on_restarted: Callable[[Any], None], on_gave_up: Callable[[Any, str], None]
    ) -> None:
        self._on_restarted = on_restarted
        self._on_gave_up = on_gave_up
        self._cond = threading.Condition()  # guards _stopped and _restarting
        self._restarting: set[int] = set()  # ids of the records being restarted right now
        self._stopped = False

    def stop_restarting(self, timeout: float | None = None) -> bool:
        """No restart from now on; wait up to `timeout` for those under way.

        True once none is under way; False if some still are at the timeout
        (the caller may end their processes, then call this again).
        """
        with self._cond:
            self._stopped = True
            return self._cond.wait_for(lambda: not self._restarting, timeout)

    def after_exit(
        self,
        record: SupervisedRecord,
        abnormal: bool,
        restart: Callable[[Any], None],
        watch: Callable[[Any], None] | None = None,
        decided: Callable[[Any], None] | None = None,
    ) -> None:
        """Stop, give up on, or restart `record` (whose exit is announced).

        `decided(record)` runs once the outcome is known (the status is
        "stopped", "gave up" or "restarting"), before any restart begins.
        `restart(record)` starts its next incarnation; then AGENT_JOINED is
        announced and `watch(record)` runs, with the record "running" again.
        """
        decision = decide(record, abnormal)
        if decision == "restart":
            with self._cond:
                if self._stopped:
                    decision = "stop"
                else:
                    self._restarting.add(id(record))
                    record.status = "restarting"
        if decision != "restart":
            record.status = "stopped" if decision == "stop" else "gave up"
            if decision != "stop":
                self._on_gave_up(record, decision)
            if decided is not None:
                decided(record)
            return
        try:
            if decided is not None:
                decided(record)
            # Back off exponentially from 2 ms while restarts come close together.
            time.sleep(min(0.002 * 2 ** (len(record.restart_times) - 1), 1.0))
            try:
                restart(record)
            except Exception as exc:  # noqa: BLE001 - on_start failing again (or ended by shutdown)
                if self._stopped:  # a shutdown ended it: its AGENT_LEFT is out already
                    record.status = "stopped"
                    return
                record.status = "gave up"
                self._on_gave_up(record, f"gave up: restart failed: {type(exc).__name__}: {exc}")
                return
            record.restarts += 1
            record.status = "running"
            record.exit_handled.clear()
            # AGENT_JOINED before the new process is watched: its exit, however
            # soon, is handled (and announced) after this.
            self._on_restarted(record)
            if watch is not None:
                watch(record)
        finally:
            with self._cond:
                self._restarting.discard(id(record))
                self._cond.notify_all()


class Supervisor:
    """Watches agent processes from one thread of the runtime's process.

    The watcher thread only notices deaths: each exit is handled in a thread
    of its own (announcement, policy, restart), so a restart that hangs in
    `on_start` delays no other agent's. `on_exit(record, reason, error)` is
    called there for every death; `decided(record)` once the policy's
    outcome is known, before any restart; `restart(record)` starts a new
    process for it.
    """

    def __init__(
        self,
        on_exit: Callable[[AgentRecord, str, str | None], None],
        restart: Callable[[AgentRecord], Started],
        on_restarted: Callable[[AgentRecord], None],
        on_gave_up: Callable[[AgentRecord, str], None],
        decided: Callable[[AgentRecord], None] | None = None,
    ) -> None:
        self._on_exit = on_exit
        self._restart = restart
        self._decided = decided
        self._restarter = Restarter(on_restarted, on_gave_up)
        self._records: dict[int, AgentRecord] = {}  # sentinel -> record
        self._handlers: set[threading.Thread] = set()  # exits being handled
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)
        self._thread.start()

    def watch(self, record: AgentRecord) -> None:
        with self._lock:
            self._records[record.started.process.sentinel] = record
        os.write(self._wake_w, b"x")

    def stop_restarting(self, timeout: float | None = None) -> bool:
        """No restart from now on; True once none is under way (see `Restarter`)."""
        return self._restarter.stop_restarting(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Stop watching, once the exits already seen are handled (up to `timeout`)."""
        deadline = time.monotonic() + timeout
        self._closed = True
        os.write(self._wake_w, b"x")
        self._thread.join(timeout)
        with self._lock:
            handlers = list(self._handlers)
        for handler in handlers:
            handler.join(max(deadline - time.monotonic(), 0))
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _run(self) -> None:
        # On close, exits already reaped are still handled (AGENT_LEFT sent).
        while True:
            closing = self._closed  # read before waiting: one last full pass
            with self._lock:
                sentinels = list(self._records)
            ready = cast("list[int]", wait([self._wake_r, *sentinels], 0 if closing else None))  # descriptors in, out
            if self._wake_r in ready:
                os.read(self._wake_r, 4096)
            for sentinel in ready:
                if sentinel == self._wake_r:
                    continue
                with self._lock:
                    record = self._records.pop(sentinel, None)
                    if record is not None:
                        handler = threading.Thread(
                            target=self._handle, args=(record,), name=f"supervisor-{record.name}", daemon=True
                        )
                        self._handlers.add(handler)
                if record is not None:
                    handler.start()
            if closing:
                return

    def _handle(self, record: AgentRecord) -> None:
        try:
            self._handle_exit(record)
        except Exception:
            logger.exception("supervisor failed handling %s", record.name)
        finally:
            if record.status != "running":
                record.exit_handled.set()
            with self._lock:
                self._handlers.discard(threading.current_thread())

    def _handle_exit(self, record: AgentRecord) -> None:
        process = record.started.process
        process.join(5)
        notes = stop_notes(record.started.control)
        record.started.control.close()
        exitcode = process.exitcode
        # A stop request (from the runtime or any ref's stop(), noted by the
        # agent before its on_stop ran) is final whatever exit follows, like
        # OTP's terminate_child; so is exit code 0 (it exited by itself).
        # Anything else is a crash.
        requested = record.status in ("stopping", "stopped") or bool(notes) or exitcode == 0
        error = None
        if requested and exitcode != 0:
            error = notes.get("on_stop_failed") or exit_reason(exitcode)
        reason = "stopped" if requested else f"crashed: {exit_reason(exitcode)}"
        self._on_exit(record, reason, error)
        self._restarter.after_exit(record, not requested, self._next_incarnation, self.watch, self._decided)

    def _next_incarnation(self, record: AgentRecord) -> None:
        record.started = self._restart(record)


def stop_notes(control: Connection) -> dict[str, str]:
    """What a dead agent wrote on its control pipe after start-up (see
    `_host.STOP_REQUESTED`): {"stopping": ""} once a stop was asked of it,
    plus {"on_stop_failed": text} if its `on_stop` raised. Never blocks."""
    notes: dict[str, str] = {}
    try:
        while control.poll(0):
            kind, _, text = control.recv_bytes().decode(errors="replace").partition(":")
            notes[kind] = text
    except (EOFError, OSError):
        pass
    return notes
