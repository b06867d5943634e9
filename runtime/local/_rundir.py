"""The runtime's private socket folder, and removing those of dead runtimes.

Each local runtime makes `<tmp>/actors-XXXXXXXX` (mode 0700) for the Unix
sockets of its nodes, and removes it at shutdown. A runtime that was killed
can't, so each new runtime removes the folders whose runtime is gone.

"Gone" is decided by a lock, not by guessing from pids: for its whole life
the runtime's process holds an `flock` on `runtime.lock` inside its folder.
The lock file is opened close-on-exec and only in the runtime's process, so
neither the zygote (started with exec) nor the agents (forked by the
zygote) hold it; the kernel drops it the moment the runtime's process dies.
A runtime that can take the lock of another folder knows its owner is gone.
The lock file is locked under a temporary name and renamed into place, so a
`runtime.lock` that exists was locked by its owner before anyone could see it.

Folders without a lock file (made by an older version, or by a runtime
between `mkdtemp` and its rename) are removed only when they are a minute
old, hold nothing but sockets, no process named in a socket's name
(`<pid>-<hex>.sock`) is alive, and no socket accepts a connection.

Start-up cost: one directory listing of <tmp>, and per folder of this user
an `lstat`, an `open` and a non-blocking `flock`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import os
import shutil
import socket
import stat
import tempfile
import time

import psutil

__all__ = ["LOCK_NAME", "PREFIX", "RunDir", "remove_stale_rundirs"]

PREFIX = "actors-"
LOCK_NAME = "runtime.lock"
_OLD_FORMAT_GRACE = 60.0  # seconds: a lock-less folder younger than this may be starting


class RunDir:
    """A new private folder for one runtime's sockets, locked while it lives.

    Made in the runtime's process; `remove()` (at shutdown) deletes it and
    drops the lock.
    """

    def __init__(self) -> None:
        self.path = tempfile.mkdtemp(prefix=PREFIX)  # mode 0700
        fd, pending = tempfile.mkstemp(prefix=".lock-", dir=self.path)  # O_CLOEXEC: only this process
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(pending, os.path.join(self.path, LOCK_NAME))
        except BaseException:
            os.close(fd)
            shutil.rmtree(self.path, ignore_errors=True)
            raise
        self._lock_fd = fd

    def remove(self) -> None:
        """Delete the folder, then release the lock (safe to call twice)."""
        shutil.rmtree(self.path, ignore_errors=True)
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


def remove_stale_rundirs(tmpdir: str | None = None, keep: str | None = None) -> list[str]:
    """Remove this user's runtime folders in `tmpdir` whose runtime is gone.

    `keep` is a folder never to touch (the caller's own). Returns the
    folders removed. Never raises for a folder it can't judge: it keeps it.
    """
    removed = []
    base = tmpdir if tmpdir is not None else tempfile.gettempdir()
    uid = os.getuid()
    for path in glob.glob(os.path.join(glob.escape(base), PREFIX + "*")):
        if keep is not None and os.path.abspath(path) == os.path.abspath(keep):
            continue
        try:
            info = os.lstat(path)
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid:
                continue
            if _remove_if_unlocked(path) or _remove_if_old_format_and_dead(path, info):
                removed.append(path)
        except OSError:  # it went away meanwhile, or we may not look: keep it
            continue
    return removed


def _remove_if_unlocked(path: str) -> bool:
    try:
        fd = os.open(os.path.join(path, LOCK_NAME), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # its runtime is alive
        shutil.rmtree(path)  # held until removed: two new runtimes never both judge it
        return True
    finally:
        os.close(fd)


def _remove_if_old_format_and_dead(path: str, info: os.stat_result) -> bool:
    # A folder without a lock file: judged with care, since it may be a
    # live runtime of an older version, or one that is starting.
    if time.time() - info.st_mtime < _OLD_FORMAT_GRACE:
        return False
    if os.path.exists(os.path.join(path, LOCK_NAME)):
        return False  # locked after all (made since the first look)
    names = os.listdir(path)
    if not names:
        return False  # nothing says it is a runtime's
    for name in names:
        entry = os.path.join(path, name)
        if not name.endswith(".sock") or not stat.S_ISSOCK(os.lstat(entry).st_mode):
            return False  # not only sockets: not ours to judge
        pid = name.split("-", 1)[0]
        if pid.isdigit() and psutil.pid_exists(int(pid)):
            return False
        if _accepts(entry):
            return False
    shutil.rmtree(path)
    return True


def _accepts(address: str) -> bool:
    with contextlib.closing(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(address)
        except OSError as exc:
            # Only a refusal says nobody listens; anything else (a full
            # backlog, a timeout) may be a live runtime.
            return exc.errno not in (errno.ECONNREFUSED, errno.ENOENT)
        return True
