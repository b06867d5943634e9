"""One node per process and runtime: where other processes deliver messages.

A node listens on a Unix socket inside the runtime's private directory
(mode 0700; socket 0600). Every connection proves it holds the runtime's
secret (HMAC challenge both ways, under a deadline: `_handshake`) before a
single byte is unpickled. Each inbound connection has a reader thread that
puts envelopes straight into the mailbox of the named actor hosted here;
replies go back on the same connection from the actor's thread.

The runtime's own node is also the registry: it knows which node hosts
each name, and answers LOOKUP frames for the others. Every process holds
the same key, so the key proves membership, not identity: the registry
also knows which agent each of its processes is (by pid, registered
before the process runs any agent code) and learns a connection's peer
pid from the kernel (`SO_PEERCRED`), so actors that `wants_sender` are
told who really sent each message.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, cast

import psutil
import pykka
from pykka._envelope import Envelope

from actors import ActorDeadError
from actors._base import Sent, set_idle_hook
from actors._chain import AskChain
from actors._snapshot import SnapshotBatch
from runtime.wire._batching import flush_all, flush_thread
from runtime.wire._drain import OpenConnections, read_snapshots
from runtime.wire._handshake import HandshakeGuard, peer_pid
from runtime.wire._journal import SnapshotAcks, SnapshotJournal
from runtime.wire._outbound import Outbound
from runtime.wire._reactor import Reactor
from runtime.wire._reply import Outbox, RemoteReply
from runtime.wire._serialization import loads
from runtime.wire._spin import IDLE_SPIN, Spinner
from runtime.wire._frames import (
    ASK_CHAINED, GONE, INFO, LEAVING, LOOKUP, SNAPSHOT, STATS, TELL, FrameReader, decode_header, shutdown_fd,
)

__all__ = ["Node", "node_for"]

logger = logging.getLogger("runtime")

# runtime id -> this process's node for that runtime (how unpickled refs bind)
_NODES: dict[str, Node] = {}


def node_for(runtime_id: str) -> Node:
    node = _NODES.get(runtime_id)
    if node is None:
        msg = f"runtime {runtime_id} is not running in or reachable from this process"
        raise ActorDeadError(msg)
    return node


class Node(Outbound):
    """The listener, hosted actors and outbound connections (`Outbound`) of one process."""

    def __init__(
        self,
        runtime_id: str,
        authkey: bytes,
        rundir: str,
        registry_address: str | None = None,
        reactor: bool = False,
    ) -> None:
        self.runtime_id = runtime_id
        self.authkey = authkey
        self.address = os.path.join(rundir, f"{os.getpid()}-{uuid.uuid4().hex[:8]}.sock")
        self.is_registry = registry_address is None
        self.registry_address = registry_address or self.address
        self.local: dict[str, pykka.ActorRef[Any]] = {}
        self.names: dict[str, str] = {}  # registry only: name -> node address
        self.info: Callable[[], Any] | None = None  # registry only: answers INFO
        # Registry only: pid -> the agent (or service) that process runs.
        self.identities: dict[int, str] = {}
        self._wants_sender: set[str] = set()  # hosted names told who sent each message
        # Registry only: gone(name, address, done) calls done(reason) once the
        # process at `address` hosting `name` has exited and its exit is
        # handled (at once if it already is); answers GONE.
        self.gone: Callable[[str, str, Callable[[Any], None]], None] | None = None
        self._init_outbound()
        self._conns: set[Connection] = set()
        self._reading = OpenConnections()  # registry only: by peer pid (`wait_drained`)
        self.closed = False  # an attribute, not a property: every ref reads it per message
        self._guard = HandshakeGuard()  # deadlines and a cap for the handshakes under way
        self._journal: SnapshotJournal | None = None  # registry only, made at the first acknowledged snapshot
        self._journal_lock = threading.Lock()
        # In an agent's process the agent's own thread reads the connections
        # (see `_reactor`); elsewhere each connection has a reader thread.
        self.reactor = Reactor(self._dispatch, self._conns.discard) if reactor else None
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            self._sock.bind(self.address)
        finally:
            os.umask(old_umask)
        self._sock.listen(128)
        _NODES[runtime_id] = self
        set_idle_hook(flush_thread)  # an actor about to sleep sends its batched tells
        threading.Thread(target=self._accept_loop, name="node-accept", daemon=True).start()

    # -- hosting ----------------------------------------------------------

    def host(self, name: str, ref: pykka.ActorRef[Any]) -> None:
        """Make the local actor `ref` reachable by `name` from other processes."""
        self.local[name] = ref
        if getattr(ref.actor_class, "wants_sender", False):
            self._wants_sender.add(name)
        if self.is_registry:
            self.names[name] = self.address

    def unhost(self, name: str) -> None:
        self.local.pop(name, None)
        self._wants_sender.discard(name)
        if self.is_registry:
            self.names.pop(name, None)

    def _forget_name(self, name: str, address: str) -> None:
        # Only if `address` still hosts it: a restart may have moved it on.
        if self.names.get(name) == address:
            self.names.pop(name, None)

    def leave(self, name: str, timeout: float = 10.0) -> None:
        """The hosted actor `name` is stopping: forget its name in the
        registry now, before its `on_stop` runs (as pykka unregisters an
        actor first), so that from here on `is_alive()` is False and a new
        lookup finds nothing, in every process. Waits for the registry's
        answer (up to `timeout`): a process that sees the stop's effects
        (what `on_stop` does) also sees the name gone. The runtime still
        settles the exit itself (AGENT_LEFT, restart policy) once the
        process has exited."""
        try:
            if self.is_registry:
                self._forget_name(name, self.address)
            else:
                self.request(self.registry_address, LEAVING, name, self.address.encode(), timeout)
        except Exception:  # noqa: BLE001 - the runtime is gone or slow: its supervisor forgets the name at exit
            pass

    def identify(self, pid: int) -> str:
        """Which agent the process `pid` speaks for (registry only).

        The runtime's own process is ``"runtime"``; a process an agent
        started speaks for that agent (its nearest registered ancestor);
        any other process is ``"_unknown:<pid>"``, a name no agent can have.
        """
        if pid == os.getpid():
            return "runtime"
        current = pid
        for _ in range(16):  # ancestors: an agent's own subprocesses
            name = self.identities.get(current)
            if name is not None:
                return name
            try:
                current = psutil.Process(current).ppid()
            except psutil.Error:
                break
            if current <= 1:
                break
        return f"_unknown:{pid}"

    # -- inbound ----------------------------------------------------------

    def _accept_loop(self) -> None:
        # Also the handshakes' watchdog: accept() waits no longer than the
        # nearest handshake deadline, then drops the handshakes past theirs.
        while not self.closed:
            try:
                self._sock.settimeout(self._guard.expire())
                sock, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._guard.admit(sock):
                continue
            try:
                threading.Thread(target=self._serve, args=(sock,), name="node-conn", daemon=True).start()
            except RuntimeError:  # no thread to be had: as if at the cap
                self._guard.refuse(sock)

    def _serve(self, sock: socket.socket) -> None:
        sender = None
        pid = 0
        if self.is_registry:  # the kernel says which process connected; the key can't
            pid = peer_pid(sock)
            sender = self.identify(pid) if pid > 0 else "_unknown"
        with self._reading.of(pid):
            self._read_from(sock, sender)

    def wait_drained(self, pid: int, timeout: float | None) -> bool:
        """Wait until every connection from process `pid` has been read to
        its end (registry only); False if one is still open at `timeout`.
        For a process that has exited: all it sent is then delivered."""
        return self._reading.wait_drained(pid, timeout)

    def _read_from(self, sock: socket.socket, sender: str | None) -> None:
        conn = Connection(sock.detach())
        fd = conn.fileno()
        if not self._guard.authenticate(conn, self.authkey):
            return
        self._conns.add(conn)
        if self.reactor is not None:
            self.reactor.add(conn)
            return
        outbox = Outbox(fd)
        reader = FrameReader(fd)
        # Idle services run inline in this thread (`_inline`), so it may
        # poll for the next request before it sleeps, as agents do.
        spinner = Spinner(IDLE_SPIN)
        try:
            try:
                frame = reader.read()
            except (EOFError, OSError):
                return
            if frame[0] == SNAPSHOT:  # an agent's connection for its snapshots alone
                if not decode_header(frame)[1]:  # told (request id 0): the store keeps them in memory
                    read_snapshots(reader, frame, lambda last: self._deliver_snapshot(last, sender))
                elif self._keeps_snapshots_of(sender):  # acknowledged once committed
                    self._snapshot_journal().serve(fd, reader, frame, outbox, cast("str", sender))
                else:  # its asker sees the connection close
                    logger.info("refused a snapshot connection from %r: only agents keep snapshots", sender)
                return
            while True:
                try:
                    self._dispatch(outbox, frame, sender)
                except Exception:  # a malformed frame: drop this peer, not the node
                    logger.exception("dropping a connection that sent a malformed frame")
                    return
                try:
                    if not reader.buffered():
                        spinner.read(fd, reader)
                    frame = reader.read()
                except (EOFError, OSError):
                    return
        finally:
            self._conns.discard(conn)
            outbox.close()  # replies still to come are dropped, never written to a reused fd
            conn.close()

    @staticmethod
    def _keeps_snapshots_of(sender: str | None) -> bool:
        # Only an agent keeps a snapshot: never a process the registry does
        # not know ("_unknown:<pid>"), nor the runtime's own.
        return sender is not None and not sender.startswith("_") and sender != "runtime"

    def _store(self, name: str) -> pykka.ActorRef[Any] | None:
        """The hosted actor `name` if it is told who sends it messages (a store)."""
        return self.local.get(name) if name in self._wants_sender else None

    def _deliver_snapshot(self, frame: memoryview, sender: str | None) -> None:
        """A snapshot frame from `sender`'s own connection for them: to its store."""
        kind, _request_id, name, body = decode_header(frame)
        ref = self._store(name)
        if kind != SNAPSHOT or sender is None or not self._keeps_snapshots_of(sender) or ref is None:
            logger.info("dropped a snapshot for %r from %r: nobody here keeps it", name, sender)
            return
        ref.actor_inbox.put(Envelope(Sent(sender, bytes(body))))  # the body is the pickled snapshot itself

    def _snapshot_journal(self) -> SnapshotJournal:
        with self._journal_lock:
            if self._journal is None:
                self._journal = SnapshotJournal(self._deliver_snapshots)
            return self._journal

    def _deliver_snapshots(self, name: str, batch: SnapshotBatch, acks: SnapshotAcks) -> None:
        """Acknowledged snapshots (`_journal`) to the store `name`, run inline if it is idle."""
        ref = self._store(name)
        if ref is None or not ref.is_alive():
            acks.set_exception((ActorDeadError, ActorDeadError(f"no store named {name!r} is running here"), None))
            return
        inbox = ref.actor_inbox
        getattr(inbox, "put_from_reader", inbox.put)(Envelope(batch, reply_to=acks))

    def _dispatch(self, outbox: Outbox, frame: memoryview, sender: str | None = None) -> None:
        """Deliver one frame from a connection whose peer is `sender` (if known)."""
        kind, request_id, name, body = decode_header(frame)
        reply = RemoteReply(outbox, request_id) if kind != TELL else None
        try:
            if kind >= LOOKUP:  # one test for tells and asks: the requests to the node itself follow
                assert reply is not None  # not a tell
                self._node_request(kind, name, body, reply, sender)
                return
            message = loads(body)
            if kind == ASK_CHAINED:  # the handler learns who waits on it
                message = AskChain(*message)
            if sender is not None and name in self._wants_sender:
                message = Sent(sender, message)
            ref = self.local.get(name)
            if ref is None or not ref.is_alive():
                if reply is not None:
                    raise ActorDeadError(f"no actor named {name!r} is running here")
                logger.info("dropped a tell to %r: not running here", name)
                return
            # A service that runs inline (`_inline`) handles it here and now if
            # idle, and the tells its handler sends after the reply has left.
            inbox = ref.actor_inbox  # any pykka actor's (one not ours has no `put_from_reader`)
            getattr(inbox, "put_from_reader", inbox.put)(Envelope(message, reply_to=reply))
        except Exception:
            if reply is not None:
                reply.set_exception()
            else:
                logger.exception("could not deliver a tell to %r", name)

    def _info_json(self) -> bytes:
        """The `agent_info()` rows as JSON (or {"error": ...}); never raises."""
        try:
            return json.dumps(self.info() if self.info is not None else [], default=str).encode()
        except Exception as exc:
            logger.exception("agent_info() failed for `actors status`")
            return json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode()

    def _node_request(
        self, kind: int, name: str, body: memoryview, reply: RemoteReply, sender: str | None
    ) -> None:
        if kind == LOOKUP:
            reply.set(self.names.get(name))
        elif kind == LEAVING:
            # Only the agent's own process may take its name off the registry
            # (the key proves membership, the kernel says which process sent it).
            if sender == name:
                self._forget_name(name, bytes(body).decode())
            reply.set(None)
        elif kind == STATS:
            reply.set({n: _depth(r) for n, r in self.local.items()})
        elif kind == INFO:  # in JSON: `actors status` unpickles nothing
            reply.send_body(self._info_json())
        elif kind == GONE and self.gone is not None:  # answered later, by the thread that handles the exit
            self.gone(name, bytes(body).decode(), reply.set)
        else:
            reply.set(None)

    def close(self) -> None:
        """Stop listening and drop every connection (peers see EOF).

        Tells still batched are written first, as far as sockets take them.
        """
        flush_thread()
        flush_all()
        self.closed = True
        if _NODES.get(self.runtime_id) is self:
            del _NODES[self.runtime_id]
        # shutdown() wakes the threads blocked in accept() and read(); each
        # reader then closes its own connection. Closing a descriptor under a
        # thread that reads it could hand that thread a reused one.
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        self._guard.close()  # the watchdog is gone: end the handshakes now
        if self._journal is not None:
            self._journal.close()
        for conn in list(self._conns):
            try:
                shutdown_fd(conn.fileno())
            except OSError:
                pass  # its reader closed it just now
        try:
            os.unlink(self.address)
        except OSError:
            pass


def _depth(ref: pykka.ActorRef[Any]) -> int:
    inbox = ref.actor_inbox
    depth: int = inbox.qsize() if hasattr(inbox, "qsize") else 0
    return depth
