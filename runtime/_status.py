"""`actors status`: the process table of a runtime started by `actors run`.

`actors run` writes `.actors/control.json` (mode 0600, in a 0700 folder)
in the directory it started in: the runtime's control address and secret
key. `actors status` reads it, connects with that key (the same
authenticated channel every agent uses) and asks for `agent_info()`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from actors import ActorDeadError
from runtime._channel import Channel, PeerGone
from runtime._wire import INFO, encode

__all__ = ["ControlFile", "StatusError", "fetch_status", "render_table", "run_status"]

CONTROL = Path(".actors") / "control.json"


class StatusError(Exception):
    """No runtime to report on; the message says why."""


class ControlFile:
    """The control file of one `actors run`, removed when it ends."""

    def __init__(self, info: dict[str, Any], directory: str | os.PathLike[str] = ".") -> None:
        self.path = Path(directory) / CONTROL
        self.path.parent.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.path.parent, 0o700)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(info, handle)

    def remove(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def _control_path(address: str | None) -> Path:
    path = Path(address) if address else Path.cwd()
    return path / CONTROL if path.is_dir() else path


def fetch_status(address: str | None = None) -> list[dict[str, Any]]:
    """The `agent_info()` rows of the runtime whose control file is at `address`."""
    path = _control_path(address)
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise StatusError(f"no running runtime found ({path} does not exist; start one with `actors run`)") from None
    except (OSError, ValueError) as exc:
        raise StatusError(f"can't read {path}: {exc}") from None
    try:
        channel = Channel(info["address"], bytes.fromhex(info["key"]))
        request_id = channel.next_id()
        channel.send(encode(INFO, request_id, b"", b""))
        rows = channel.wait(request_id, 30.0, "the runtime")
    except (PeerGone, ActorDeadError, EOFError, OSError) as exc:
        raise StatusError(f"the runtime that wrote {path} (pid {info.get('pid')}) is not answering: {exc}") from None
    channel.close()
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
