"""`actors status`: the process table of a runtime started by `actors run`.

`actors run` writes `.actors/control-<pid>.json` (mode 0600, in a 0700
folder) in the directory it started in: the runtime's control address and
secret key, one file per run, so two runs in one folder don't hide each
other. `actors status` finds them (given that directory, the `.actors`
folder, or a file), uses the one whose runtime is alive, or when several
are, names them and asks which (`--address`); it connects with that key
(the same authenticated handshake every agent uses) and asks for
`agent_info()`. The folder is removed with the last file in it.

The key proves nothing about a file someone else wrote: whoever planted
the file chose the key, and can answer the handshake. So status trusts a
control file only if it and its folder are the caller's own and writable
by nobody else (checked on the open descriptors, so nothing can be swapped
in between), and it unpickles nothing: the runtime answers INFO in JSON,
read here by a few lines that know only frames and JSON.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
import struct
import sys
import time
from multiprocessing.connection import Connection, answer_challenge, deliver_challenge
from pathlib import Path
from typing import Any, cast

import psutil

from runtime.wire._frames import INFO, REPLY, decode_header, encode, set_read_timeout, write_all

__all__ = ["ControlFile", "StatusError", "fetch_status", "read_control", "render_table", "run_status"]

CONTROL_DIR = Path(".actors")
CONTROL = CONTROL_DIR / f"control-{os.getpid()}.json"  # this process's, if it runs a runtime
_CONTROL_GLOB = "control*.json"  # control-<pid>.json, and an older version's control.json
_TIMEOUT = 30.0  # for the whole conversation with the runtime
_MAX_CONTROL = 1 << 16  # a control file is a few hundred bytes
_MAX_REPLY = 64 << 20  # ~200k rows; a larger length is not a runtime's answer
_LENGTH = struct.Struct("!i")  # multiprocessing's length prefix, which frames share (`wire._frames`)
_ROW_KEYS = ("name", "kind", "pid", "alive", "restarts", "cpu_percent", "rss_bytes", "mailbox", "capabilities")


class StatusError(Exception):
    """No runtime to report on; the message says why."""


class ControlFile:
    """The control file of one `actors run`, removed when it ends.

    It holds the runtime's key, so it is written only into a folder that is
    the caller's own and private (else `StatusError`), always as a new file:
    never through a file or symlink someone planted there.
    """

    def __init__(self, info: dict[str, Any], directory: str | os.PathLike[str] = ".") -> None:
        self.path = Path(directory) / CONTROL_DIR / f"control-{os.getpid()}.json"  # one per run
        try:
            self.path.parent.mkdir(mode=0o700)
        except FileExistsError:
            pass
        dir_fd = _open_refusing_links("folder", self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            if os.fstat(dir_fd).st_uid == os.getuid():
                os.fchmod(dir_fd, 0o700)
            reason = _untrusted("folder", self.path.parent, os.fstat(dir_fd))
            if reason:
                raise StatusError(reason)
            try:
                os.unlink(self.path.name, dir_fd=dir_fd)  # a leftover, or something planted
            except FileNotFoundError:
                pass
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(self.path.name, flags, 0o600, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)
        with os.fdopen(fd, "w") as handle:
            json.dump(info, handle)

    def remove(self) -> None:
        """Delete the file, and the folder if nothing else is left in it."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        try:
            self.path.parent.rmdir()  # fails while another run's file (or anything) is there
        except OSError:
            pass


def _control_path(address: str | None) -> Path:
    """The control file `address` names: a file, or the one live runtime's
    file in a folder (the directory `actors run` started in, or its
    `.actors`); StatusError if there is none, or several to choose from."""
    path = Path(address) if address else Path.cwd()
    if not path.is_dir():
        return path
    folder = path / CONTROL_DIR if (path / CONTROL_DIR).is_dir() or path.name != CONTROL_DIR.name else path
    try:
        candidates = sorted(folder.glob(_CONTROL_GLOB))
    except OSError:
        candidates = []
    if not candidates:
        raise StatusError(f"no running runtime found (no control file in {folder}; start one with `actors run`)")
    live = []
    for candidate in candidates:
        info = read_control(candidate)  # every file is checked: a planted one is refused, not skipped
        if _pid_alive(info.get("pid")):
            live.append((candidate, info))
    if len(live) == 1:
        return live[0][0]
    if not live:
        stale = ", ".join(str(c) for c in candidates)
        raise StatusError(f"no running runtime found in {folder} (stale control files of runs that ended "
                          f"without removing them: {stale})")
    listed = "; ".join(f"{c} (pid {info.get('pid')})" for c, info in live)
    raise StatusError(f"{len(live)} runtimes run from {folder}: {listed}; pick one with --address FILE")


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return True  # not said: let the connection decide
    return cast("bool", psutil.pid_exists(pid))  # psutil has no type information here


def _untrusted(what: str, path: Path, st: os.stat_result) -> str | None:
    """Why `path` (a `what`) can't be trusted, or None if only the caller could have written it."""
    if st.st_uid != os.getuid():
        return f"refusing {what} {path}: it belongs to uid {st.st_uid}, not to you (uid {os.getuid()})"
    if st.st_mode & 0o022:
        writers = " and ".join(w for w, bit in (("group", 0o020), ("others", 0o002)) if st.st_mode & bit)
        return f"refusing {what} {path}: it is writable by {writers} (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def _open_refusing_links(what: str, path: Path, flags: int, dir_fd: int | None = None) -> int:
    try:
        return os.open(path.name if dir_fd is not None else path, flags | os.O_NOFOLLOW | os.O_CLOEXEC,
                       dir_fd=dir_fd)
    except FileNotFoundError:
        raise StatusError(f"no running runtime found ({path} does not exist; start one with `actors run`)") from None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(path):
            raise StatusError(f"refusing {what} {path}: it is a symbolic link") from None
        raise StatusError(f"can't read {path}: {exc.strerror}") from None


def read_control(path: Path) -> dict[str, Any]:
    """The control file at `path`, if only the caller could have written it.

    The folder is opened first (not through a symlink) and checked on its
    descriptor; the file is opened relative to that descriptor (not
    through a symlink either) and checked on its own: no race between the
    check and the read.
    """
    folder = path.parent
    dir_fd = _open_refusing_links("folder", folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        reason = _untrusted("folder", folder, os.fstat(dir_fd))
        if reason:
            raise StatusError(reason)
        # O_NONBLOCK: a FIFO planted there can't block the open; refused below.
        fd = _open_refusing_links("control file", path, os.O_RDONLY | os.O_NONBLOCK, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise StatusError(f"refusing control file {path}: it is not a regular file")
        reason = _untrusted("control file", path, st)
        if reason:
            raise StatusError(reason)
        data = handle.read(_MAX_CONTROL + 1)
    try:
        info = json.loads(data)
        if len(data) > _MAX_CONTROL or not isinstance(info, dict):
            raise ValueError("not a control file")
        address, key = info["address"], bytes.fromhex(info["key"])
        if not isinstance(address, str):
            raise ValueError("address is not a string")
    except (ValueError, KeyError, TypeError) as exc:
        raise StatusError(f"can't read {path}: {exc}") from None
    return {**info, "key": key}


def fetch_status(address: str | None = None, timeout: float = _TIMEOUT) -> list[dict[str, Any]]:
    """The `agent_info()` rows of the runtime whose control file is at `address`."""
    path = _control_path(address)
    info = read_control(path)
    try:
        body = _ask_info(info["address"], info["key"], time.monotonic() + timeout)
    except Exception as exc:  # noqa: BLE001 - refused key, garbage (an assert in the handshake), gone
        reason = str(exc) or type(exc).__name__
        raise StatusError(f"the runtime that wrote {path} (pid {info.get('pid')}) is not answering: {reason}") from None
    return _rows(body, path)


def _ask_info(address: str, key: bytes, deadline: float) -> bytes:
    """Send one INFO frame and return the body of its reply; nothing is unpickled."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(max(deadline - time.monotonic(), 0.001))
    try:
        sock.connect(address)
        sock.setblocking(True)
    except BaseException:
        sock.close()
        raise
    conn = Connection(sock.detach())
    fd = conn.fileno()
    try:
        # The handshake reads through multiprocessing's recv_bytes (which
        # never unpickles), each read bounded by the time left.
        set_read_timeout(fd, max(deadline - time.monotonic(), 0.001))
        answer_challenge(conn, key)
        deliver_challenge(conn, key)
        write_all(fd, encode(INFO, 1, b"", b""))
        while True:
            (size,) = _LENGTH.unpack(_read_exact(fd, _LENGTH.size, deadline))
            if not 0 < size <= _MAX_REPLY:
                raise OSError(f"a reply of {size} bytes is not a runtime's answer")
            kind, request_id, _name, body = decode_header(memoryview(_read_exact(fd, size, deadline)))
            if kind == REPLY and request_id == 1:
                return bytes(body)
    finally:
        conn.close()


def _read_exact(fd: int, size: int, deadline: float) -> bytes:
    parts, got = [], 0
    while got < size:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no answer in time")
        set_read_timeout(fd, remaining)
        try:
            chunk = os.read(fd, min(size - got, 1 << 20))
        except BlockingIOError:
            raise TimeoutError("no answer in time") from None
        if not chunk:
            raise EOFError("the connection was closed")
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _rows(body: bytes, path: Path) -> list[dict[str, Any]]:
    """The reply's rows, checked: a list of dicts with the table's columns."""
    where = f"the runtime that wrote {path}"
    try:
        rows = json.loads(body)
    except ValueError:
        raise StatusError(f"{where} sent a reply that is not JSON (an older runtime, or not a runtime)") from None
    if isinstance(rows, dict) and isinstance(rows.get("error"), str):
        raise StatusError(f"{where} could not report: {rows['error']}")
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise StatusError(f"{where} sent a reply that is not a list of rows")
    for row in rows:
        missing = [k for k in _ROW_KEYS if k not in row]
        if missing:
            raise StatusError(f"{where} sent a row without {', '.join(missing)}")
    return rows


def render_table(rows: list[dict[str, Any]]) -> str:
    headers = ["NAME", "KIND", "PID", "ALIVE", "RESTARTS", "CPU%", "RSS MB", "MAILBOX", "CAPABILITIES"]
    table = [
        [
            r["name"], r["kind"], str(r["pid"]), "yes" if r["alive"] else "no", str(r["restarts"]),
            "-" if r["cpu_percent"] is None else f"{r['cpu_percent']:.1f}",
            "-" if r["rss_bytes"] is None else f"{r['rss_bytes'] / 1e6:.1f}",
            "-" if r["mailbox"] is None else str(r["mailbox"]),
            ",".join(r["capabilities"]),
        ]
        for r in rows
    ]
    widths = [max(len(h), *(len(row[i]) for row in table)) if table else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in table]
    return "\n".join(line.rstrip() for line in lines)


def run_status(address: str | None, as_json: bool, watch: bool, interval: float = 1.0) -> int:
    while True:
        rows = fetch_status(address)
        if as_json:
            print(json.dumps(rows), flush=True)
        else:
            if watch:
                sys.stdout.write("\033[H\033[2J")  # home and clear, like top
            print(render_table(rows), flush=True)
        if not watch:
            return 0
        time.sleep(interval)
