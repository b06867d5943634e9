"""The zygote: a clean process that forks agent processes on request.

It is started once per runtime (`python -c`, not a fork of the runtime, so
it holds none of the runtime's threads, sockets or `__main__`), imports
pykka, cloudpickle, psutil, the agent host and the runtime's `preload`
modules once, reports ("ready",) or ("preload_failed", module, reason), then
waits. Pages imported here are shared by every agent (copy-on-write). Each
request carries one file descriptor, the agent's control pipe; the zygote
forks, and the child reads its boot spec from that pipe and becomes the
agent. The zygote reaps its children and reports each exit status.

Single-threaded by design: forking a process that has threads is unsafe.
The loop wakes on its socket or on SIGCHLD (through a wakeup fd).
"""

from __future__ import annotations

import gc
import os
import pickle
import select
import signal
import socket
import sys
from collections.abc import Sequence

__all__ = ["BOOT_CODE", "main"]

# What `python -c` runs: set the runtime's sys.path, then serve.
BOOT_CODE = (
    "import json, sys; sys.path[:0] = json.loads(sys.argv[2]); "
    "from runtime._zygote import main; main(int(sys.argv[1]), json.loads(sys.argv[3]))"
)

_MAX_REQUEST = 1 << 16


def _send(sock: socket.socket, message: tuple) -> None:
    try:
        sock.send(pickle.dumps(message))
    except OSError:
        sys.exit(0)  # the runtime is gone


def _reap(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(sock, ("exit", pid, os.waitstatus_to_exitcode(status)))


def _become_agent(sock: socket.socket, wake_r: int, wake_w: int, control_fd: int, sys_path: list[str]) -> None:
    # In the forked child: drop the zygote's plumbing, then run the agent.
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    sock.close()
    os.close(wake_r)
    os.close(wake_w)
    sys.path[:0] = [p for p in sys_path if p not in sys.path]
    code = 1
    try:
        from multiprocessing.connection import Connection

        from runtime._host import agent_main

        control = Connection(control_fd)
        code = agent_main(control.recv_bytes(), control)
    except BaseException:  # noqa: BLE001 - report, then exit with a code
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _preload(sock: socket.socket, modules: list[str]) -> None:
    import importlib

    for module in modules:
        try:
            importlib.import_module(module)
        except BaseException as exc:  # noqa: BLE001 - any failure is the user's to see
            _send(sock, ("preload_failed", module, f"{type(exc).__name__}: {exc}"))
            sys.exit(1)
    _send(sock, ("ready",))


def main(fd: int, preload: Sequence[str] = ()) -> None:
    """Serve fork requests on the SOCK_SEQPACKET socket `fd` until EOF,
    after importing the modules named in `preload`."""
    import cloudpickle  # noqa: F401 - preloaded so each agent starts warm
    import psutil  # noqa: F401
    import pykka  # noqa: F401

    import runtime._host  # noqa: F401

    sock = socket.socket(fileno=fd)
    _preload(sock, list(preload))

    # Everything imported so far lives as long as the process: keep it out
    # of the collector's sight, or the first full collection in each agent
    # writes to every object's header and copies the pages it shares.
    gc.collect()
    gc.freeze()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the runtime's to handle
    while True:
        try:
            ready, _, _ = select.select([sock, wake_r], [], [])
        except InterruptedError:
            continue
        if wake_r in ready:
            os.read(wake_r, 4096)
            _reap(sock)
        if sock not in ready:
            continue
        try:
            data, fds, _flags, _addr = socket.recv_fds(sock, _MAX_REQUEST, 1)
        except OSError:
            data, fds = b"", []
        if not data:
            os._exit(0)  # the runtime closed the socket or died
        sys_path = pickle.loads(data)
        pid = os.fork()
        if pid == 0:
            _become_agent(sock, wake_r, wake_w, fds[0], sys_path)
        os.close(fds[0])
        _send(sock, ("pid", pid))
