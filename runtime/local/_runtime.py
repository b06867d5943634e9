"""`Runtime()` on this machine: launches agents into processes, hosts the services.

The runtime's process holds the registry node, the supervisor and the
service actors (state store, event bus, sync manager and its primitives),
each a pykka actor with its own mailbox reachable from every agent process.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import resource
import signal
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

import pykka

from actors import (
    Agent,
    AgentContext,
    EventType,
)
from actors._services import service_clients, start_services
from actors._task_ledger import check_task_records
from runtime.local._host import BootSpec
from runtime.local._inline import inline_hosted
from runtime.local._logs import LogCollector, forwarded_level
from runtime.local._launcher import AgentProcess, Started, Zygote, preload_modules, reap, start_agent_process
from runtime._monitor import info_row
from runtime.wire._node import Node
from runtime.wire._reactor import MAILBOX_SIZE, check_mailbox_size
from runtime._backends import Runtime
from runtime._ref import AgentRef, peer_ref
from runtime.local._rundir import RunDir, remove_stale_rundirs
from runtime.wire._serialization import dumps
from runtime.local._supervisor import AgentRecord, Supervisor
from runtime._tasks import TaskRouter
from runtime.wire._frames import STATS

__all__ = ["LocalRuntime"]

logger = logging.getLogger("runtime")

_DRAIN_TIMEOUT = 10.0  # how long an exit waits for its process's connections to reach their end


def _raise_open_files_limit(wanted: int = 16384) -> None:
    # Each agent costs the runtime a few descriptors (pidfd, control pipe,
    # connections); a low soft limit would cap teams at a few hundred.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass


class LocalRuntime(Runtime):
    """A team of agents, each in its own OS process on this machine, and
    their services; made by `Runtime()` (backend "local").

    Use it as a context manager, or call `shutdown()`: either way every
    agent's `on_stop` runs and no agent process is left behind.

    `preload` names modules (your agents' modules, and what they import) to
    import once in the zygote that forks every agent: each agent then shares
    their memory instead of holding a copy, and starts without importing
    them. A module that fails to import raises `PreloadError` here.

    `task_records` is how many tasks' `shared/task:{id}:*` records the
    state store keeps (the most recent ones; older ones are dropped, so
    a batch of millions of tasks leaves memory flat); None keeps all.
    """

    def __init__(
        self,
        *,
        state_path: str | None = None,
        max_history: int = 1000,
        backend: str = "local",
        start_timeout: float = 60.0,
        state_synchronous: str = "NORMAL",
        preload: Sequence[str] | str = (),
        task_records: int | None = 10_000,
    ) -> None:
        if backend != "local":
            msg = f"unknown backend {backend!r}; use 'local' or 'ray'"
            raise ValueError(msg)
        preload = preload_modules(preload)
        _raise_open_files_limit()
        self._init_bookkeeping(start_timeout)
        # A store in memory takes snapshots told (one round trip less each):
        # each exit's connections are then read to their end before a
        # restart restores (`_on_exit`). A state file's store answers them
        # once committed.
        self._snapshots_told = state_path is None
        self._authkey = os.urandom(32)
        self._rundir_lock = RunDir()  # mode 0700, locked while this process lives
        self._rundir = self._rundir_lock.path
        remove_stale_rundirs(keep=self._rundir)  # those of runtimes that were killed
        self._node = Node(self.id, self._authkey, self._rundir)
        self._logs = LogCollector(self._rundir)  # agents' log records, emitted here
        self._services: list[pykka.ActorRef[Any]] = []
        # Started first: it imports its modules while the services start.
        self._zygote = Zygote(preload)
        try:
            refs = start_services(self._start_service, retire=self._retire_service, dumps=dumps,
                                  max_history=max_history, state_path=state_path, synchronous=state_synchronous,
                                  task_records=check_task_records(task_records))
            if preload:
                self._zygote.wait_ready(start_timeout)
        except BaseException:  # e.g. a bad state_path or preload: leave nothing behind
            self._stop_services(5.0)
            self._zygote.close()
            self._logs.close()
            self._rundir_lock.remove()
            raise
        self._peer = functools.partial(peer_ref, self.id)
        self.state, self.store, self.events, self.sync, self.comm = service_clients(refs, self._peer)
        self._tasks = TaskRouter(self)
        self._starting: set[AgentProcess] = set()  # restarts waiting for on_start (shutdown may end them)
        self._supervisor = Supervisor(self._on_exit, self._restart, self._on_restarted, self._on_gave_up,
                                      self._settled)
        self._node.info = self.agent_info
        self._node.gone = self._await_gone
        atexit.register(self.shutdown)

    # -- services ----------------------------------------------------------

    def _start_service(self, cls: type[pykka.Actor], name: str, *args: Any, **kwargs: Any) -> AgentRef:
        """Start a service actor in this process, reachable from every agent."""
        ref = inline_hosted(cls).start(*args, **kwargs)
        self._services.append(ref)
        self._node.host(name, ref)
        return AgentRef(name, self._node.address, self.id)

    def _retire_service(self, name: str) -> None:
        ref = self._node.local.get(name)
        self._node.unhost(name)
        if ref is not None and ref in self._services:
            self._services.remove(ref)

    # -- agents ------------------------------------------------------------

    def _launch(
        self,
        agent_cls: type[Agent],
        name: str,
        caps: list[str],
        restart: str,
        max_restarts: int,
        restart_window: float,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        kind: str,
        *,
        mailbox_size: int = MAILBOX_SIZE,
    ) -> AgentRef:
        ctx = AgentContext(
            agent_id=name,
            state=self.state,
            store=self.store,
            sync=self.sync,
            events=self.events,
            comm=self.comm,
            capabilities=caps,
            _peer=self._peer,
        )
        spec = BootSpec(
            name, agent_cls, args, kwargs, ctx, self.id, self._authkey, self._rundir, self._node.address,
            mailbox_size=check_mailbox_size(mailbox_size), log_address=self._logs.address,
            log_level=forwarded_level(name), snapshots_told=self._snapshots_told,
        )
        boot = dumps(spec, f"agent {name!r} (its class or arguments)")
        with self._lock:
            if name in self._records and self._records[name].status not in ("stopped", "gave up"):
                msg = f"an agent named {name!r} is already running"
                raise ValueError(msg)
            self._records[name] = None  # reserve the name
        try:
            started = start_agent_process(self._zygote, boot, name, self.start_timeout, self._identify(name))
        except BaseException:
            with self._lock:
                self._records.pop(name, None)
            self._forget_identity(name)
            raise
        record = AgentRecord(name, boot, caps, restart, max_restarts, restart_window, started, kind=kind,
                             ref=AgentRef(name, started.address, self.id, agent_cls.__name__),
                             drain=self._snapshots_told and getattr(agent_cls, "_durable", False))
        with self._lock:
            self._records[name] = record
        self._node.names[name] = started.address
        self._supervisor.watch(record)
        self.events.emit(
            name, EventType.AGENT_JOINED, {"agent_id": name, "capabilities": caps, "restarts": 0, "kind": kind}
        )
        return cast("AgentRef", record.ref)

    def _identify(self, name: str) -> Callable[[int], None]:
        """What records that a new process is `name` (who its messages come from)."""
        identities = self._node.identities
        return lambda pid: identities.__setitem__(pid, name)

    def _forget_identity(self, name: str) -> None:
        # A process that failed to start is reaped: its pid means nothing now.
        identities = self._node.identities
        for pid, who in list(identities.items()):  # a copy: other threads register new processes meanwhile
            if who != name:
                continue
            identities.pop(pid, None)

    def _restart(self, record: AgentRecord) -> Started:
        try:
            started = start_agent_process(
                self._zygote, record.boot, record.name, self.start_timeout, self._identify(record.name), self._starting
            )
        except BaseException:
            self._forget_identity(record.name)
            raise
        self._node.names[record.name] = started.address  # reachable before it counts as running
        return started

    def _on_exit(self, record: AgentRecord, reason: str, error: str | None = None) -> None:
        """In the supervisor's thread for this exit: for a durable agent,
        everything its process sent is read first (its last snapshot told
        is in the store before anything of a next incarnation asks for it,
        `actors._snapshot`); then unregister, then AGENT_LEFT."""
        if record.drain and not self._node.wait_drained(record.started.process.pid, _DRAIN_TIMEOUT):
            logger.warning("agent %s exited but a connection of its process stayed open for %s s "
                           "(a child process of it holds it?); its last snapshot may be missed",
                           record.name, _DRAIN_TIMEOUT)
        address = record.started.address
        if self._node.names.get(record.name) == address:
            del self._node.names[record.name]
        self._node.identities.pop(record.started.process.pid, None)
        try:
            os.unlink(address)  # its listening socket, if it could not remove it itself
        except OSError:
            pass
        record.left = reason
        self._announce_exit(record, reason, record.started.process.exitcode, error)

    def _settled(self, record: AgentRecord) -> None:
        """The exit is announced and the policy decided (before any restart):
        release what the runtime held of that process and answer the
        `await_gone` waiters, so a returned `stop()` finds the name free."""
        started = record.started
        self._node.peer_gone(started.address)  # this process's connections to it
        if started.process.exitcode is not None:
            started.process.close()  # its pidfd: nothing waits on it any more
        with self._lock:
            record.settled = started.address
            waiters, record.gone_waiters = record.gone_waiters, []
            if record.status in ("stopped", "gave up"):
                self._forget_ended(record)
        for done in waiters:
            try:
                done(record.left)
            except Exception:  # noqa: BLE001 - an asker that went away
                pass

    def _await_gone(self, name: str, address: str, done: Any) -> None:
        """Call `done(reason)` once the process at `address` hosting `name`
        has exited and been settled; at once if it is not that name's
        current process, or already was (registry side of `Node.await_gone`)."""
        with self._lock:
            record: AgentRecord | None = self._records.get(name)
            if record is not None and record.started.address != address:
                record = None  # not that name's current process
            if record is not None and record.settled != address:
                record.gone_waiters.append(done)
                return
        done(record.left if record is not None else None)

    def _reap(self, record: AgentRecord, timeout: float) -> None:
        reap(record.started.process, timeout, grace=2.0)

    def _interrupt(self, record: AgentRecord) -> None:
        # SIGINT: the agent raises KeyboardInterrupt in the handler it is
        # running, if any (see `_host.interrupt_handler`), then stops.
        record.started.process.send_signal(signal.SIGINT)

    def _still_alive(self, record: AgentRecord) -> bool:
        # A process that just died is not "running" any more, even before the
        # supervisor has handled its exit (its pidfd says so at once).
        return record.started.process.is_alive()

    # -- introspection -----------------------------------------------------

    def agent_info(self) -> list[dict[str, Any]]:
        """One row per process this runtime started (psutil figures included).

        The mailbox depths are asked of every live agent at once, then read.
        """
        with self._lock:
            records = [r for r in self._records.values() if r is not None]
        rows, asked = [], []
        for record in records:
            process = record.started.process
            row = info_row(record, process.pid, process.is_alive() and record.status == "running")
            rows.append(row)
            if row["alive"]:
                self._monitor.read(row, process.pid)
                try:
                    asked.append((row, record.name, self._node.start_request(record.started.address, STATS, "", b"")))
                except Exception:  # noqa: BLE001 - it may be dying right now
                    pass
        deadline = time.monotonic() + 5.0
        for row, name, answer in asked:
            try:
                row["mailbox"] = answer(max(deadline - time.monotonic(), 0.001)).get(name)
            except Exception:  # noqa: BLE001 - it may be dying right now
                pass
        self._monitor.keep_only({row["pid"] for row in rows if row["alive"]})
        return rows

    def control_info(self) -> dict[str, Any]:
        """How another process reaches this runtime's control channel.

        Holds the runtime's secret key: whoever reads it may talk to every
        agent. `actors run` writes it to a file only its owner can read.
        """
        return {"address": self._node.address, "key": self._authkey.hex(), "pid": os.getpid(),
                "runtime_id": self.id}

    # -- lifecycle ---------------------------------------------------------

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop every agent (running `on_stop`), every service, and reap all.

        Returns within about `timeout` (plus a second or so): the agents are
        stopped at once under one deadline, and what still runs then is
        killed. Safe to call twice; called at interpreter exit if it wasn't.
        """
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + timeout
        atexit.unregister(self.shutdown)
        if not self._supervisor.stop_restarting(timeout):
            # A restart still in on_start at the deadline is ended (its start
            # fails at once), as is one that was about to fork.
            while not self._supervisor.stop_restarting(0.05):
                for process in list(self._starting):
                    process.kill()
        records = self._stop_all(max(deadline - time.monotonic(), 0))
        self._supervisor.close(max(deadline - time.monotonic(), 1.0))
        self._stop_services(max(deadline - time.monotonic(), 1.0))
        for record in records:
            record.started.control.close()
            record.started.process.close()
        self._zygote.close()
        self._logs.close()  # after every agent ended: what they logged last is emitted
        self._rundir_lock.remove()

    def _stop_services(self, timeout: float) -> None:
        for ref in reversed(self._services):
            try:
                ref.stop(timeout=timeout)
            except pykka.ActorDeadError:
                pass
        self._node.close()

    close = shutdown

    def __repr__(self) -> str:
        return f"<Runtime {self.id[:8]} agents={sorted(self.agents)}>"
