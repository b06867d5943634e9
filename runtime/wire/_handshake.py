"""The guard at a node's door: who may connect, and how long they may take.

Every connection must prove it holds the runtime's secret (HMAC challenge
both ways, multiprocessing's) before a single byte from it is unpickled.
A peer that doesn't, or trickles its bytes, must not hold a thread for
long, nor may many such peers pile up: the whole handshake ends within
`HANDSHAKE_DEADLINE` seconds, and at most `MAX_PENDING_HANDSHAKES` are under
way at once per listener; connections beyond the cap are closed at once
(an honest peer gets `PeerGone` and may try again).

The node's accept loop runs `admit` and `expire` (it is the handshakes'
watchdog); each connection's own thread runs `authenticate`.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from multiprocessing.connection import Connection, answer_challenge, deliver_challenge
from typing import Any

from runtime.wire._frames import set_read_timeout, shutdown_fd

__all__ = ["HANDSHAKE_DEADLINE", "MAX_PENDING_HANDSHAKES", "HandshakeGuard", "peer_pid"]

logger = logging.getLogger("runtime")

# The whole handshake must end within this many seconds, however slowly
# bytes trickle in; and at most this many may be under way at once per
# listener (each holds a thread).
HANDSHAKE_DEADLINE = 10.0
MAX_PENDING_HANDSHAKES = 64
_REFUSAL_LOG_INTERVAL = 5.0  # seconds between log lines about refused connections


class HandshakeGuard:
    """The handshakes under way on one listener, their deadlines and cap."""

    def __init__(self) -> None:
        # Handshakes under way: fd -> [deadline, expired]. Invariant: an fd
        # is here only while its thread has not closed it, so the accept
        # loop may shut it down (never close it) once its deadline passed.
        self._handshakes: dict[int, list[Any]] = {}
        self._lock = threading.Lock()
        self._refused = 0  # connections refused at the cap since the last log line
        self._refusal_logged = float("-inf")

    def admit(self, sock: socket.socket) -> bool:
        """In the accept loop: start the clock on a new connection, or close
        it at once (and say so, now and then) if the cap is reached."""
        with self._lock:
            full = len(self._handshakes) >= MAX_PENDING_HANDSHAKES
            if not full:
                self._handshakes[sock.fileno()] = [time.monotonic() + HANDSHAKE_DEADLINE, False]
        if full:
            self.refuse(sock)
        return not full

    def refuse(self, sock: socket.socket) -> None:
        """Close an admitted or unadmitted connection without serving it."""
        with self._lock:
            self._handshakes.pop(sock.fileno(), None)
        sock.close()
        self._refused += 1
        now = time.monotonic()
        if now - self._refusal_logged >= _REFUSAL_LOG_INTERVAL:
            logger.warning(
                "closed %d connection(s) at once: %d handshakes already under way (the limit)",
                self._refused, MAX_PENDING_HANDSHAKES,
            )
            self._refused, self._refusal_logged = 0, now

    def expire(self) -> float | None:
        """Shut down the handshakes past their deadline; seconds to the next one."""
        now = time.monotonic()
        nearest = None
        with self._lock:
            for fd, entry in self._handshakes.items():
                deadline, expired = entry
                if expired:
                    continue
                if deadline <= now:
                    entry[1] = True
                    shutdown_fd(fd)  # its thread's read ends; that thread closes it
                elif nearest is None or deadline < nearest:
                    nearest = deadline
        return None if nearest is None else nearest - now

    def authenticate(self, conn: Connection, authkey: bytes) -> bool:
        """In the connection's thread: both sides prove they hold `authkey`,
        within the deadline. False (and `conn` closed) if the peer didn't."""
        fd = conn.fileno()
        # Each read of a stalled peer ends by the deadline too (the accept
        # loop enforces the deadline for the handshake as a whole).
        set_read_timeout(fd, HANDSHAKE_DEADLINE)
        try:
            deliver_challenge(conn, authkey)
            answer_challenge(conn, authkey)
        except Exception:  # noqa: BLE001 - wrong key, garbage, a stall or the deadline
            logger.warning("refused a connection without the runtime's key (or too slow to show it)")
            with self._lock:
                del self._handshakes[fd]
            conn.close()
            return False
        with self._lock:
            expired = self._handshakes.pop(fd)[1]
        if expired:  # shut down at the deadline just as it succeeded
            conn.close()
            return False
        set_read_timeout(fd, None)  # the conversation itself may idle
        return True

    def close(self) -> None:
        """The listener is closing (its watchdog is gone): end every handshake now."""
        with self._lock:
            for fd, entry in self._handshakes.items():
                entry[1] = True
                shutdown_fd(fd)


_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid


def peer_pid(sock: socket.socket) -> int:
    """The pid of the process at the other end of a Unix socket (0 if unknown)."""
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDENTIALS.size)
    except OSError:
        return 0
    pid: int = _CREDENTIALS.unpack(creds)[0]
    return pid
