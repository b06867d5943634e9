"""Starting agent processes: forkserver children with the libraries preloaded.

The forkserver is a clean single-threaded process that imported pykka,
cloudpickle, psutil and this package once; each agent is a fork of it, so a
new agent costs a fork, not an interpreter start, and never inherits the
runtime's threads or sockets.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from actors import AgentStartError
from runtime._host import agent_main
from runtime._serialization import loads

__all__ = ["Started", "reap", "start_agent_process"]

_PRELOAD = ["pykka", "cloudpickle", "psutil", "actors", "runtime._host"]


def _context() -> Any:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    return ctx


@dataclass
class Started:
    """A running agent process: its handle, control pipe and node address."""

    process: Any
    control: Connection
    address: str


def start_agent_process(boot: bytes, name: str, timeout: float) -> Started:
    """Start one agent process and wait until its `on_start` has run.

    Raises what `__init__` or `on_start` raised, or `AgentStartError` if the
    process died or stayed silent for `timeout` seconds; in every failure
    the process is reaped before this returns.
    """
    ctx = _context()
    control, child_end = ctx.Pipe(duplex=True)
    process = ctx.Process(target=agent_main, args=(boot, child_end), name=f"agent:{name}", daemon=True)
    process.start()
    child_end.close()
    deadline = time.monotonic() + timeout
    outcome = None
    while outcome is None:
        remaining = deadline - time.monotonic()
        ready = multiprocessing.connection.wait([control, process.sentinel], max(remaining, 0))
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
    reap(process)
    control.close()
    if kind == "error":
        raise value
    if kind == "timeout":
        msg = f"agent {name!r} did not finish on_start within {timeout} s"
    else:
        msg = f"agent {name!r} exited with code {process.exitcode} before on_start finished"
    raise AgentStartError(msg)


def reap(process: Any, timeout: float = 5.0) -> None:
    process.join(timeout)
    if process.is_alive():
        process.kill()
        process.join(timeout)
