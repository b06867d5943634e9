"""Stopping agents: one, or all at once under one deadline.

A mixin of `RuntimeBase` (see `runtime._runtime_base`): the stop sequence
is the same on every backend; the backend provides how a stopped agent's
process is reaped (`_reap`) and how a running handler is interrupted
(`_interrupt`). Runs in the runtime's process, in the thread that stops.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from actors import AskTimeout

__all__ = ["Stopping"]


class Stopping:
    """How a runtime stops its agents; `_records` and `_lock` are the
    runtime's agent table, `_interrupting` says the shutdown was interrupted."""

    _lock: threading.RLock
    _records: dict[str, Any]
    _interrupting: bool

    # -- hooks a backend provides ----------------------------------------------

    def _reap(self, record: Any, timeout: float) -> None:
        """Wait up to `timeout` for a stopped agent's process to end (or end it)."""
        raise NotImplementedError

    def _interrupt(self, record: Any) -> None:
        """Abandon the handler `record`'s agent is running, if it is in one,
        so its stop (and `on_stop`) need not wait for a long task; called by
        `_stop_all` after the stop messages went out, when the shutdown was
        interrupted (Ctrl-C, SIGTERM). A backend that can't: does nothing."""

    # -- the stop sequence --------------------------------------------------------

    def _stop_record(self, record: Any, timeout: float) -> None:
        """Stop one agent, running its `on_stop`; AGENT_LEFT is out on return.

        Within `timeout` in all (then the process is killed)."""
        deadline = time.monotonic() + timeout
        record.status = "stopping"
        try:
            record.ref.stop(timeout=timeout)
        except Exception:  # noqa: BLE001 - dead or stuck: reaped below
            pass
        self._reap(record, max(deadline - time.monotonic(), 0))
        record.exit_handled.wait(max(deadline - time.monotonic(), 1.0))  # AGENT_LEFT is out when this returns
        record.status = "stopped"

    def _stop_all(self, timeout: float) -> list[Any]:
        """Stop every agent at once (each runs `on_stop`), under one deadline
        `timeout` away; what still runs then is killed. The records stopped.
        Restarts must already be stopped."""
        deadline = time.monotonic() + timeout
        with self._lock:
            records = [r for r in self._records.values() if r is not None and r.status not in ("stopped", "gave up")]
        for record in records:
            record.status = "stopping"
        stops = []
        for record in records:
            try:
                stops.append(record.ref.stop(block=False))
            except Exception:  # noqa: BLE001 - already gone
                stops.append(None)
        if self._interrupting:
            # After the stops: a task sent meanwhile waits behind its stop.
            for record in records:
                self._interrupt(record)
        for record, future in zip(records, stops):
            self._await_stop(record, future, deadline)
        for record in records:
            self._reap(record, max(deadline - time.monotonic(), 0))
            record.status = "stopped"
        return records

    def _await_stop(self, record: Any, future: Any, deadline: float) -> None:
        """Wait for `record`'s stop until `deadline` (then it is reaped).

        When interrupting, the agent is interrupted again every 0.2 s: one
        that was between messages at the first interrupt may have begun its
        next task since, and only an interrupt ends a task early.
        """
        if future is None:
            return
        while True:
            remaining = deadline - time.monotonic()
            step = min(remaining, 0.2) if self._interrupting else remaining
            try:
                future.get(timeout=max(step, 0))
                return
            except AskTimeout:
                if not self._interrupting or remaining <= 0.2:
                    return
                self._interrupt(record)
            except Exception:  # noqa: BLE001 - dead or stuck: reaped below
                return
