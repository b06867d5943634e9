"""The zygote: a clean process that forks agent processes on request.

It is started once per runtime (`python -c`, not a fork of the runtime, so
it holds none of the runtime's threads, sockets or `__main__`), imports
pykka, cloudpickle, psutil, the agent host and the runtime's `preload`
modules once, reports ("ready",) or ("preload_failed", module, reason), then
waits. Pages imported here are shared by every agent (copy-on-write). Each
request carries one file descriptor, the agent's control pipe; the zygote
forks, and the child reads its boot spec from that pipe and becomes the
agent. The zygote reaps its children and reports each agent's exit status.

Single-threaded by design: forking a process that has threads is unsafe.
The loop wakes on its socket or on a signal (through a wakeup fd).

Nothing outlives the runtime, and nothing an agent started outlives it; the
kernel does the parts a busy interpreter could not:

- runtime -> zygote: the zygote exits when its socket from the runtime hits
  EOF (it only ever blocks in `select`, so it always notices), and ignores
  the signals a terminal or a shell sends to the runtime's whole process
  group (SIGINT, SIGTERM, SIGHUP, SIGQUIT): it lives as long as its
  runtime, which stops the agents cleanly first. Its parent
  death signal is SIGUSR1, not SIGKILL: Linux sends it when the *thread*
  that started the zygote ends, which for a runtime made in a short-lived
  thread is not the runtime's death, so the zygote only wakes and checks
  whether its parent process changed. (This also covers a copy of the
  socket kept open by a process forked from the runtime.)
- zygote -> agents: each agent sets PR_SET_PDEATHSIG=SIGKILL first thing
  (the zygote's only thread is the one that forks), so the kernel ends an
  agent even when it is stuck in a C call and never gets the GIL back; it
  then checks getppid() for a zygote that died before the prctl.
- agent -> what it started: each agent leads its own process group. When an
  agent dies, the zygote kills its group with SIGKILL *before* reaping it
  (the zombie still holds the pid, so the group id can't be reused), and it
  is a child subreaper: processes orphaned by a dead agent are reparented to
  it and reaped here, never reported as agent exits. When the zygote exits
  it kills every agent's group and every child it still has.
"""

from __future__ import annotations

import ctypes
import gc
import os
import pickle
import select
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

__all__ = ["BOOT_CODE", "main", "warm_up"]

# What `python -c` runs: set the runtime's sys.path, then serve.
BOOT_CODE = (
    "import json, sys; sys.path[:0] = json.loads(sys.argv[2]); "
    "from runtime.local._zygote import main; main(int(sys.argv[1]), json.loads(sys.argv[3]), int(sys.argv[4]))"
)

_MAX_REQUEST = 1 << 16

# prctl(2) options (linux/prctl.h).
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_PARENT_DEATH_SIGNAL = signal.SIGUSR1  # the zygote's: it checks, then decides

# Pids of the live agents this zygote forked (each leads its own group).
_agents: set[int] = set()

# Signals the zygote handles its own way; each agent gets back what the
# zygote started with. SIGHUP, SIGQUIT (Ctrl-\) and SIGTERM sent to the
# runtime's process group (a terminal, a shell's `kill %1`, `timeout`)
# reach the runtime too: the zygote leaves them to the runtime (the command
# line stops its agents cleanly on SIGTERM) and follows it out through the
# EOF, instead of dying first and leaving its agents' children behind.
_OWN_SIGNALS = (signal.SIGHUP, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1)
_inherited: dict[int, Callable[[int, FrameType | None], Any] | int | None] = {}  # signal.getsignal's


def _load_prctl() -> Callable[[int, int], bool]:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.prctl
    except (OSError, AttributeError):  # not Linux: no kernel help, the pipes remain
        return lambda option, arg: False
    call.restype = ctypes.c_int
    call.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return lambda option, arg: call(option, arg, 0, 0, 0) == 0


# Loaded once in the zygote, so an agent calls it right after the fork.
_prctl = _load_prctl()


def _send(sock: socket.socket, message: tuple[Any, ...]) -> None:
    try:
        sock.send(pickle.dumps(message))
    except OSError:
        _exit()  # the runtime is gone


def _kill_group(pid: int) -> None:
    # Only for a child not reaped yet: its pid (and so its group id) can't
    # have been reused by another process.
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:  # the group is empty, or the agent left it
        pass


def _reap(sock: socket.socket) -> None:
    """Reap every child that exited; report the agents among them.

    An agent's process group is killed while its zombie still holds the pid;
    other children are processes orphaned by agents (this is a subreaper):
    reaped silently.
    """
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if info is None or info.si_pid == 0:
            return
        pid = info.si_pid
        is_agent = pid in _agents
        if is_agent:
            _agents.discard(pid)
            _kill_group(pid)
        _, status = os.waitpid(pid, 0)
        if is_agent:
            _send(sock, ("exit", pid, os.waitstatus_to_exitcode(status)))


def _exit() -> None:
    """End the zygote: kill every agent's group and every other child first.

    The agents would die with the zygote anyway (their parent death signal);
    what they started would not. Children are reaped for up to a second, so
    they don't stay zombies under an init that doesn't reap.
    """
    for pid in _agents:
        _kill_group(pid)
    try:
        import psutil

        for child in psutil.Process().children():
            try:  # not reaped yet, so the pid is still this child's
                os.kill(child.pid, signal.SIGKILL)
            except OSError:
                pass
    except Exception:  # noqa: BLE001 - best effort on the way out
        pass
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            time.sleep(0.01)
    os._exit(0)


def _become_agent(
    sock: socket.socket, wake_r: int, wake_w: int, control_fd: int, sys_path: list[str], zygote: int,
) -> None:
    # In the forked child. First: forget the zygote's agents and signals.
    _agents.clear()
    for signum, handler in _inherited.items():
        signal.signal(signum, signal.SIG_DFL if handler is None else handler)
    # Then tie this process to the zygote: the kernel kills it when the
    # zygote dies, whatever holds the GIL; if the zygote died before the
    # prctl, the signal will never come: leave now.
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != zygote:
        os._exit(1)
    try:
        os.setpgid(0, 0)  # its own group: what it starts is killed with it
    except OSError:
        pass
    # Drop the zygote's plumbing, then run the agent.
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    sock.close()
    os.close(wake_r)
    os.close(wake_w)
    sys.path[:0] = [p for p in sys_path if p not in sys.path]
    code = 1
    try:
        from multiprocessing.connection import Connection

        from runtime.local._host import agent_main

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


def warm_up() -> None:
    """Import what every agent needs before it runs its own code, once, here.

    Each agent is forked from this process, so it starts with these pages
    shared and imports (and, without bytecode caches, compiles) nothing of
    its own to read its boot spec: the host, and the service clients its
    context carries.
    """
    import cloudpickle  # noqa: F401
    import psutil  # noqa: F401
    import pykka  # noqa: F401

    import actors._services  # noqa: F401
    import runtime.local._host  # noqa: F401


def main(fd: int, preload: Sequence[str] = (), runtime_pid: int = 0) -> None:
    """Serve fork requests on the SOCK_SEQPACKET socket `fd` until EOF,
    after importing the modules named in `preload`. `runtime_pid` is the
    process that started this one: once it is no longer the parent, the
    runtime is gone and so is this zygote."""
    # A clean signal mask: an exec keeps the one of the thread that started
    # us (a runtime made in a thread blocking SIGINT would otherwise give
    # every agent a blocked SIGINT, and its interrupts would never land).
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    # Armed before the (maybe slow) imports and checked again after them;
    # checked now in case the runtime died before the prctl.
    _inherited.update((signum, signal.getsignal(signum)) for signum in _OWN_SIGNALS)
    signal.signal(_PARENT_DEATH_SIGNAL, lambda *_: None)
    for signum in (signal.SIGHUP, signal.SIGQUIT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)  # the runtime's to handle: the zygote lives as long
    _prctl(_PR_SET_PDEATHSIG, _PARENT_DEATH_SIGNAL)
    if runtime_pid and os.getppid() != runtime_pid:
        os._exit(0)
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    warm_up()

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
    # Ctrl-C is the runtime's to handle (agents inherit this, and being in
    # groups of their own, don't get the terminal's signals anyway).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    zygote = os.getpid()
    if runtime_pid and os.getppid() != runtime_pid:
        _exit()  # the runtime died while the modules were imported
    watched: list[socket.socket | int] = [sock, wake_r]
    while True:
        try:
            ready, _, _ = select.select(watched, [], [])
        except InterruptedError:
            continue
        if wake_r in ready:
            os.read(wake_r, 4096)
            if runtime_pid and os.getppid() != runtime_pid:
                _exit()  # the runtime died (not just the thread that started us)
            _reap(sock)
        if sock not in ready:
            continue
        try:
            data, fds, _flags, _addr = socket.recv_fds(sock, _MAX_REQUEST, 1)
        except OSError:
            data, fds = b"", []
        if not data:
            _exit()  # the runtime closed the socket or died
        sys_path = pickle.loads(data)
        pid = os.fork()
        if pid == 0:
            _become_agent(sock, wake_r, wake_w, fds[0], sys_path, zygote)
        try:
            os.setpgid(pid, pid)  # as the child does: whichever runs first
        except OSError:  # the child did it already, or died
            pass
        _agents.add(pid)
        os.close(fds[0])
        _send(sock, ("pid", pid))
