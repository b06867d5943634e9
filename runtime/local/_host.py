"""The process host: a pykka actor whose loop is an OS process's main thread.

`agent_main` runs in a fresh process forked by the runtime's zygote. It builds the
process's node, then starts the agent class through pykka's own hooks:
`_create_actor_inbox` gives it a mailbox that reads the process's sockets
itself when empty (`_reactor`), `_start_actor_loop` runs the loop in this
(main) thread, so the process lives exactly as long as the actor, and
`_actor_loop_setup` reports the outcome of `on_start` to the runtime
before the first message is handled.

A watchdog thread holds the control pipe from the runtime: when it reads
EOF the runtime's process is gone, and the agent process exits by itself.
That needs the GIL; an agent stuck in a C call is ended by the kernel
instead, when the zygote exits (see `_zygote`).
"""

from __future__ import annotations

import logging
import os
import sys
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, cast

import pykka

from actors import ActorDeadError, AgentContext, AskTimeout
from actors._chain import OwnFuture, set_thread_agent
from actors._context import set_current_agent_id, set_delivery_ref_factory
from runtime.local._logs import install_forwarder
from actors._snapshot import SnapshotHost
from runtime.local._aio_host import AsyncHost
from runtime.wire._channel import Channel, PeerGone
from runtime.wire._frames import SNAPSHOT, encode
from runtime.wire._node import Node
from runtime.wire._reactor import MAILBOX_SIZE, ReactorInbox
from runtime._ref import AgentRef
from runtime.wire._serialization import dumps, exception_payload, loads

__all__ = ["BootSpec", "ProcessHost", "agent_main"]

EXIT_FAILED = 3  # the actor stopped because a told message raised
_SNAPSHOT_TIMEOUT = 60.0  # how long a snapshot waits for its acknowledgement (a state file's commit)

# Written on the control pipe when a stop was asked of the agent, before its
# on_stop runs: the supervisor reads it after the exit, so a stop asked for
# (through any ref, from any process) is never taken for a crash, whatever
# on_stop then does (raise: ON_STOP_FAILED follows; os._exit; hang and get
# killed).
STOP_REQUESTED = b"stopping:"
ON_STOP_FAILED = b"on_stop_failed:"


@dataclass
class BootSpec:
    """Everything an agent process needs, pickled once by the runtime."""

    name: str
    agent_cls: type
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    ctx: AgentContext
    runtime_id: str
    authkey: bytes
    rundir: str
    registry_address: str
    mailbox_size: int = MAILBOX_SIZE  # messages from other processes waiting unread (see `_reactor`)
    log_address: str = ""  # the runtime's `LogCollector`: where this process's log records go
    log_level: int = logging.WARNING  # the lowest level forwarded (see `_logs.forwarded_level`)
    snapshots_told: bool = False  # the store keeps snapshots in memory: tell them (`snapshot_sender`)


class ProcessHost(pykka.Actor):
    """Mixin placed before the user's agent class in the agent's process.

    Which process runs what: `__init__`, `on_start`, every handler and
    `on_stop` all run in the agent's own process; `__init__` in its main
    thread, the rest in the same thread as the actor loop.
    """

    ctx: AgentContext  # the agent class's (`Agent.ctx`), set on the hosted class
    _node: Node
    _own_ref: AgentRef
    _control: Connection
    _mailbox_size = MAILBOX_SIZE
    _failed = False
    _stopping = False  # a stop was asked: failures from here on are on_stop's
    _left = False  # the registry was told that this actor stops (`_leave`)

    @property
    def actor_urn(self) -> str:
        # The urn of the agent's refs (`AgentRef.actor_urn`), so that what
        # pykka logs about this actor names it as its refs do.
        return self._own_ref.actor_urn

    @actor_urn.setter
    def actor_urn(self, value: str) -> None:
        pass  # pykka's __init__ draws a random urn: the agent keeps its own

    def _create_actor_inbox(self) -> ReactorInbox:  # type: ignore[override]
        # Runs in __init__ (main thread). The actor's thread reads the
        # process's sockets while its mailbox is empty: a message from
        # another process needs no hand-over between threads. It holds at
        # most `_mailbox_size` of them: senders beyond that wait.
        assert self._node.reactor is not None  # agent_main makes the node with reactor=True
        return ReactorInbox(self._node.reactor, self._mailbox_size)

    @classmethod
    def _create_future(cls) -> OwnFuture:
        # The futures of asks made in this process, all to this agent: one
        # waited for in its own handler raises DeadlockError (`actors._chain`).
        return OwnFuture(cls.ctx.agent_id)

    def _start_actor_loop(self) -> None:
        self._actor_loop()  # blocks: this thread is the actor's thread

    def _actor_loop_setup(self) -> None:
        set_thread_agent(self.ctx.agent_id)  # what this thread asks from now on carries the agent's id
        self._node.host(self.ctx.agent_id, self.actor_ref)
        try:
            self.on_start()
        except Exception as exc:  # noqa: BLE001 - spawn raises it in the runtime
            # pykka's handling first (logged as "Unhandled exception in ...",
            # unregistered, stopped), then spawn learns of it.
            self._handle_failure(*sys.exc_info())
            self._report(("error", exception_payload(exc)))
            return
        self._report(("ready", self._node.address))

    def _report(self, outcome: tuple[str, Any]) -> None:
        try:
            self._control.send_bytes(dumps(outcome, "startup report"))
        except OSError:
            os._exit(1)  # the runtime went away while we were starting

    def _stop(self) -> None:
        # pykka's stop: for a stop message (from any ref), or a BaseException
        # out of a handler (which exits with code 0 anyway). On the class:
        # `interrupt_handler` reads it (one hosted class per process).
        type(self)._stopping = True
        self._note(STOP_REQUESTED)
        self._leave()
        super()._stop()

    def _handle_failure(self, *exc_info: Any) -> None:
        # pykka's: a handler, on_start, on_stop or on_failure raised; the
        # actor stops (before on_failure runs, for a handler's exception).
        type(self)._failed = True  # one hosted class per process: the exit code reads it
        if self._stopping:
            self._note(ON_STOP_FAILED + f"on_stop raised {exc_info[0].__name__}: {exc_info[1]}".encode())
        self._leave()
        super()._handle_failure(*exc_info)

    def _leave(self) -> None:
        # Where pykka unregisters the actor (before on_stop / on_failure run):
        # the registry forgets the name (one round trip to the runtime's
        # process, once per process), so is_alive() is False in every
        # process from here on, as pykka's is once the actor stopped. The
        # stop or crash is still settled by the supervisor (AGENT_LEFT,
        # restart policy) once the process has exited.
        if not self._left:
            type(self)._left = True
            self._node.leave(self.ctx.agent_id)

    def _note(self, note: bytes) -> None:
        try:
            self._control.send_bytes(note)
        except OSError:
            pass  # the runtime is gone: nobody to tell


def interrupt_handler(hosted: type[ProcessHost]) -> Any:
    """The agent process's SIGINT handler (main thread, the actor's).

    The runtime sends SIGINT when its shutdown was interrupted (Ctrl-C), after
    the stop message: an agent in the middle of a handler raises
    KeyboardInterrupt there, which pykka answers by stopping the actor
    (`on_stop` runs; the stop counts as requested, so no restart). Anywhere
    else (waiting for a message, in on_start or on_stop) it is ignored: the
    stop message does the rest. The stack is looked at only when the signal
    comes, so handling messages costs nothing more.
    """

    def on_sigint(_signum: int, frame: Any) -> None:
        if hosted._stopping:
            return
        while frame is not None:
            if frame.f_code.co_name == "_handle_receive":
                raise KeyboardInterrupt
            frame = frame.f_back

    return on_sigint


def _watch_runtime(control: Connection) -> None:
    # The runtime never writes after start-up; EOF means its process is gone.
    try:
        while True:
            control.recv_bytes()
    except (EOFError, OSError):
        pass
    os._exit(0)


def _hosts_for(cls: type) -> tuple[type, ...]:
    """The host bases of `cls`: with `async def` handlers, an event loop
    too; with `snapshot`, durable state (`actors._snapshot`; after the
    hosts, so the async host's `on_start` runs its `restore` on the loop)."""
    hosts: tuple[type, ...] = (ProcessHost,)
    if getattr(cls, "_async_handlers", False):  # class attributes, set once per class
        hosts = (AsyncHost, ProcessHost)
    if getattr(cls, "_durable", False):
        hosts = (*hosts, SnapshotHost)
    return hosts


def snapshot_sender(node: Node, spec: BootSpec) -> Callable[[bytes], None]:
    """How this agent sends its pickled snapshots to the store
    (`actors._snapshot`): the bare bytes in a SNAPSHOT frame, on a
    connection to the runtime's node that carries nothing else; the store
    keeps them under the sender's name (`StateStore.keep_snapshot`).

    With a state file, acknowledged: it returns once the store committed
    (the node reads every agent's such connection in one thread, and the
    store commits what it read together: `runtime.wire._journal`). In
    memory, told, which the node reads in batches (`runtime.wire._drain`);
    written to the kernel before this returns (never queued with batched
    tells), so before the reply that follows.
    """
    address = spec.registry_address
    channel: list[Channel] = []  # made at the first snapshot, again if it broke
    acknowledged = not spec.snapshots_told

    def send(blob: bytes) -> None:
        try:
            if not channel or channel[0].closed:
                channel[:] = [Channel(address, node.authkey)]
            sent = channel[0]
            request_id = sent.next_id() if acknowledged else 0  # 0: told
            sent.send(encode(SNAPSHOT, request_id, b"_state", blob))  # the bytes as they are: nothing to unpickle
        except PeerGone as exc:
            msg = f"the runtime is gone: a snapshot could not be saved ({exc})"
            raise ActorDeadError(msg) from None
        if acknowledged:
            try:
                sent.wait(request_id, _SNAPSHOT_TIMEOUT, "the state store")
            except AskTimeout:
                sent.abandon(request_id)  # its late acknowledgement is dropped, not kept
                raise

    return send


def agent_main(boot: bytes, control: Connection) -> int:
    """Run the agent described by `boot` in this process; return its exit code.

    Called in a fresh child of the zygote. Exit code 0 after a requested
    stop, `EXIT_FAILED` when a told message raised or start-up failed.
    """
    spec: BootSpec = loads(boot)
    set_current_agent_id(spec.name)
    if spec.log_address:
        install_forwarder(spec.log_address, spec.name, spec.log_level)
    node = Node(spec.runtime_id, spec.authkey, spec.rundir, spec.registry_address, reactor=True)
    own_ref = AgentRef(spec.name, node.address, spec.runtime_id, spec.agent_cls.__name__)
    set_delivery_ref_factory(lambda: own_ref)
    threading.Thread(target=_watch_runtime, args=(control,), name="runtime-watch", daemon=True).start()
    cls = spec.agent_cls
    hosted = cast("type[ProcessHost]", type(
        cls.__name__,
        (*_hosts_for(cls), cls),
        {
            "ctx": spec.ctx,
            "capabilities": spec.ctx.capabilities,
            "_node": node,
            "_own_ref": own_ref,
            "_control": control,
            "_mailbox_size": spec.mailbox_size,
            "_snapshot_dumps": staticmethod(dumps),
            "_snapshot_send": staticmethod(snapshot_sender(node, spec)),
            "__module__": cls.__module__,
            "__qualname__": cls.__qualname__,
        },
    ))
    signal.signal(signal.SIGINT, interrupt_handler(hosted))
    failed = False
    try:
        hosted.start(*spec.args, **spec.kwargs)  # returns when the actor stops
        failed = hosted._failed
    except Exception as exc:  # noqa: BLE001 - __init__ raised: spawn raises it
        try:
            control.send_bytes(dumps(("error", exception_payload(exc)), "startup report"))
        except OSError:
            pass
        failed = True
    finally:
        node.close()
    return EXIT_FAILED if failed else 0
