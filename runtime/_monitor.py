"""Watching processes with psutil: the figures behind `agent_info()`.

`cpu_percent` compares two readings of the same `psutil.Process`, so the
objects are kept between calls (a fresh one always reads 0.0); entries of
processes that are gone are dropped.
"""

from __future__ import annotations

import socket
from typing import Any

import psutil

__all__ = ["ProcessMonitor", "info_row"]


_HOST = socket.gethostname()


def info_row(record: Any, pid: int | None, alive: bool, node: str | None = _HOST) -> dict[str, Any]:
    """An `agent_info()` row with the record's facts; figures not read yet.

    `node` names the machine the process runs on (this one by default; on
    Ray, the Ray node id).
    """
    return {
        "name": record.name,
        "kind": record.kind,
        "pid": pid,
        "alive": alive,
        "status": record.status,
        "restarts": record.restarts,
        "capabilities": list(record.capabilities),
        "cpu_percent": None,
        "rss_bytes": None,
        "mailbox": None,
        "node": node,
    }


class ProcessMonitor:
    """CPU and memory of processes on this machine, by pid."""

    def __init__(self) -> None:
        self._procs: dict[int, psutil.Process] = {}

    def read(self, row: dict[str, Any], pid: int) -> None:
        """Fill `cpu_percent` and `rss_bytes` of `row` (left None if unknown)."""
        try:
            proc = self._procs.get(pid)
            if proc is None:
                proc = self._procs[pid] = psutil.Process(pid)
            row["cpu_percent"] = proc.cpu_percent(None)
            row["rss_bytes"] = proc.memory_info().rss
        except psutil.Error:
            self._procs.pop(pid, None)

    def keep_only(self, pids: set[int]) -> None:
        """Forget the processes not in `pids` (they ended, or were restarted)."""
        for pid in set(self._procs) - pids:
            del self._procs[pid]
