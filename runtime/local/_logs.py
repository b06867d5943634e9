"""Agents' log records, forwarded to the runtime's process (as Ray does to its driver).

Agent processes are forked from the zygote, a clean interpreter: they
don't share the runtime's `logging` set-up, so what agent code logs (and
pykka's "Unhandled exception" traceback when a told message raises) went
nowhere. Each agent process installs a `LogForwarder` on its root logger;
it sends every record, already formatted, as one JSON datagram to the
runtime's `LogCollector`, whose thread emits it on logger
`actors.agent.<name>` in the runtime's process: `actors run` prints it,
and an embedding application's handlers get it like any other record.

Why a Unix datagram socket in the runtime's private folder (mode 0700):

- Nothing to lose on a crash: `sendto` returns once the datagram is in the
  collector's queue, so a record logged just before `os._exit` arrives.
- One socket for all agents, no connection each, no reader per agent; the
  runtime's thread only parses JSON (nothing is unpickled).
- Bounded waiting: a full queue (a flood faster than the runtime reads)
  blocks a sender at most `_SEND_TIMEOUT`; after that, records are dropped
  (and counted, said in the next one that gets through) until the queue
  drains, so logging never stalls an agent for long.

Which records: those at or above the level of the runtime's
`actors.agent.<name>` logger when the agent was spawned (WARNING unless the
application configured it), so agents don't pay for records nobody sees.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from typing import Any

__all__ = ["LogCollector", "LogForwarder", "agent_logger", "forwarded_level", "install_forwarder"]

AGENT_LOGGERS = "actors.agent"
_SEND_TIMEOUT = 0.5  # seconds a sender may wait for room in the collector's queue
_MAX_TEXT = 60_000  # characters of message or traceback kept per record (a datagram's size is bounded)


def agent_logger(name: str) -> logging.Logger:
    """The runtime-side logger of agent `name`'s records."""
    return logging.getLogger(f"{AGENT_LOGGERS}.{name}")


def forwarded_level(name: str) -> int:
    """The lowest level worth sending from agent `name`: what its logger lets through now."""
    return agent_logger(name).getEffectiveLevel()


class LogForwarder(logging.Handler):
    """In an agent process: sends each record to the runtime's `LogCollector`."""

    def __init__(self, address: str, agent: str) -> None:
        super().__init__()
        self.address = address
        self.agent = agent
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.settimeout(_SEND_TIMEOUT)
        self._dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            exc_text = record.exc_text
            if record.exc_info and not exc_text:
                exc_text = logging.Formatter().formatException(record.exc_info)
            if record.stack_info:
                exc_text = f"{exc_text}\n{record.stack_info}" if exc_text else record.stack_info
            data = {
                "agent": self.agent, "logger": record.name, "level": record.levelno, "msg": message[:_MAX_TEXT],
                "exc_text": exc_text[-_MAX_TEXT:] if exc_text else None, "created": record.created,
                "pathname": record.pathname, "lineno": record.lineno, "funcName": record.funcName,
                "thread": record.threadName, "pid": os.getpid(), "dropped": self._dropped,
            }
            payload = json.dumps(data, default=repr).encode()
        except Exception:  # noqa: BLE001 - a record that can't be formatted is not forwarded
            return
        try:
            self._sock.sendto(payload, self.address)
        except (TimeoutError, BlockingIOError):
            self._dropped += 1
            self._sock.setblocking(False)  # until the queue drains: drop rather than wait again
        except OSError:
            pass  # the runtime is gone: nobody to tell
        else:
            if self._dropped:
                self._dropped = 0
            if self._sock.gettimeout() == 0:
                self._sock.settimeout(_SEND_TIMEOUT)

    def handleError(self, record: logging.LogRecord) -> None:
        pass  # never print a logging error from inside the forwarder

    def close(self) -> None:
        self._sock.close()
        super().close()


def install_forwarder(address: str, agent: str, level: int) -> LogForwarder:
    """In a new agent process: forward its root logger's records at `level` and above."""
    handler = LogForwarder(address, agent)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    return handler


class LogCollector:
    """In the runtime's process: receives agents' records and emits them.

    `close()` reads what is still queued, so records sent before an agent
    ended are emitted before the runtime's shutdown returns.
    """

    def __init__(self, rundir: str) -> None:
        self.address = os.path.join(rundir, "logs.sock")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(self.address)
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="agent-logs", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                data = self._sock.recv(1 << 20)
            except OSError:
                return
            if not data:  # the wake-up `close` sends itself
                if self._closed:
                    return
                continue
            try:
                emit(json.loads(data))
            except Exception:  # noqa: BLE001 - a malformed datagram, or a failing handler
                pass

    def close(self, timeout: float = 2.0) -> None:
        """Emit what is queued, then stop (the socket file goes with the rundir)."""
        self._closed = True
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as waker:
                waker.sendto(b"", self.address)  # queued after every record already sent
        except OSError:
            pass
        self._thread.join(timeout)
        self._sock.close()
        try:
            os.unlink(self.address)
        except OSError:
            pass


def emit(data: dict[str, Any]) -> None:
    """Emit one forwarded record on `actors.agent.<name>`, as if logged here.

    `processName` is the agent's name, `agent_logger` the logger it was
    logged on in the agent; `exc_text` carries the traceback, which
    handlers' formatters print as for a local exception.
    """
    agent = str(data["agent"])
    level = int(data["level"])
    logger = agent_logger(agent)
    if not logger.isEnabledFor(level):
        return
    msg = str(data["msg"])
    origin = str(data.get("logger") or "root")
    if data.get("dropped"):
        msg = f"{msg} ({data['dropped']} earlier records dropped: the agent logged faster than they were read)"
    record = logger.makeRecord(
        logger.name, level, str(data.get("pathname") or ""), int(data.get("lineno") or 0), msg, (), None,
        func=str(data.get("funcName") or ""), extra={"agent_logger": origin, "agent": agent},
    )
    record.created = float(data.get("created") or record.created)
    record.msecs = (record.created - int(record.created)) * 1000
    record.process = int(data.get("pid") or 0)
    record.processName = agent
    record.threadName = str(data.get("thread") or "")
    record.exc_text = data.get("exc_text") or None
    logger.handle(record)
