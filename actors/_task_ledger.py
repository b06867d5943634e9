"""The records and events of coordinated tasks, a batch per message.

`execute_task` promises, for each task: TASK_STARTED, then
`shared/task:{id}:status = "in_progress"`; at its end either the result
under `shared/task:{id}:result`, status "completed", `:completed = True`
and TASK_COMPLETED, or status "failed" and TASK_FAILED with the error.
The ledger turns the start (or end) of one task, or of a whole chunk of
tasks, into one write to the state store (`write_many`) and one tell to the
event bus (`emit_many`), instead of an ask each.

It lives inside the sync manager's actor (which also holds the tasks'
locks, see `_sync`), and runs in its thread, in the services' process
(the runtime's own; on Ray the services host): the store and the bus are
reached in-process. Records are written in the
name of the agent that ran the task: with an authenticating host the write
goes to the store wrapped in `Sent(agent, ...)`, as if the agent had sent
it; elsewhere `agent` is passed as the updater.

With `task_records=N` the ledger keeps the records of the N tasks that
started or ended most recently and purges older ones (their keys and any
tombstone: `StateStore.purge`), so a batch of millions of tasks leaves
the store's memory flat. `None` keeps them all.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from pykka.messages import ProxyCall

from actors._base import Sent
from actors._types import Event, EventType, make_event

__all__ = ["RECORDED", "TaskLedger", "check_task_records"]

SHARED = "shared"
# Metadata of a TASK_COMPLETED whose `:completed` record the ledger wrote
# itself (the bus's reactive coordination then leaves it alone).
RECORDED = "completed_recorded"

_BACKPRESSURE = 256  # records and events told between two asks (see `TaskLedger._send`)
_IN_PROGRESS, _COMPLETED, _FAILED = "in_progress", "completed", "failed"  # one object each, shared by all records


def check_task_records(task_records: object) -> int | None:
    """`task_records` if it is None or an int >= 0; ValueError otherwise."""
    if task_records is None:
        return None
    if isinstance(task_records, bool) or not isinstance(task_records, int) or task_records < 0:
        msg = f"task_records must be None or an int >= 0, got {task_records!r}"
        raise ValueError(msg)
    return task_records


class TaskLedger:
    """Writes the records and events of tasks starting and ending.

    `state` and `events` are refs to the store and the bus; `authenticated`
    says whether the store takes its writer from `Sent` (see `_state`).

    Records and events are told: the store and the bus run in this
    process, each in order, so whoever reads after the task's start or end
    was answered (which follows the tell) reads them. Every
    `_BACKPRESSURE` items one is asked instead and its answer waited for,
    so a store or bus that falls behind holds up the tasks instead of
    letting its mailbox, and the runtime's memory, grow. With `confirmed`
    every one is asked: where the store has a state file (records are
    then committed before the task's start or end is answered). The refs
    must deliver in-process (as the services' refs to each other do on
    every backend), else a tell could be overtaken by another process's
    later read.
    """

    def __init__(
        self, state: Any, events: Any, *, authenticated: bool = True, task_records: int | None = None,
        confirmed: bool = False,
    ) -> None:
        self._state = state
        self._confirmed = confirmed
        self._unconfirmed = 0  # records and events told since the last ask
        self._events = events
        self._authenticated = authenticated
        self._keep = check_task_records(task_records)
        self._recent: OrderedDict[str, None] = OrderedDict()  # task ids whose records are kept, oldest first

    def begin(self, tasks: list[tuple[str, str | None]], agent: str, *, created: bool = False) -> None:
        """Tasks (id, type) start on `agent`: (TASK_CREATED,) TASK_STARTED, status."""
        events = []
        if created:
            events += [make_event(EventType.TASK_CREATED, "runtime", {"task_id": t, "type": k}) for t, k in tasks]
        events += [make_event(EventType.TASK_STARTED, agent, {"task_id": t, "type": k}) for t, k in tasks]
        self._emit(events)
        self._write([(f"task:{t}:status", _IN_PROGRESS) for t, _k in tasks], [t for t, _k in tasks], agent)

    def end(self, outcomes: list[tuple[str, bool, Any]], agent: str) -> None:
        """Tasks ended on `agent`: (id, True, result) or (id, False, "Error: text")."""
        writes: list[tuple[str, Any]] = []
        events = []
        for task_id, ok, value in outcomes:
            if ok:
                writes += [(f"task:{task_id}:result", value), (f"task:{task_id}:status", _COMPLETED),
                           (f"task:{task_id}:completed", True)]
                events.append(make_event(EventType.TASK_COMPLETED, agent, {"task_id": task_id, "result": value},
                                         {RECORDED: True}))
            else:
                writes.append((f"task:{task_id}:status", _FAILED))
                events.append(make_event(EventType.TASK_FAILED, agent, {"task_id": task_id, "error": value}))
        self._write(writes, [t for t, _ok, _v in outcomes], agent)
        self._emit(events)

    def _emit(self, events: list[Event]) -> None:
        if events:
            self._send(self._events, ProxyCall(("emit_many",), (events,), {}), len(events))

    def _write(self, writes: list[tuple[str, Any]], task_ids: list[str], agent: str) -> None:
        purge = self._note(task_ids)
        call = ProxyCall(("write_many",), (SHARED, writes, agent), {"purge": purge})
        message = Sent(agent, call) if self._authenticated else call
        self._send(self._state, message, len(writes))

    def _send(self, ref: Any, message: Any, items: int) -> None:
        """Tell, or ask and wait: always with `confirmed`, else once every
        `_BACKPRESSURE` items, so a store or bus that falls behind holds up
        the tasks before its mailbox (and the runtime's memory) grows."""
        self._unconfirmed += items
        if self._confirmed or self._unconfirmed >= _BACKPRESSURE:
            self._unconfirmed = 0
            ref.ask(message, timeout=60)
        else:
            ref.tell(message)

    def _note(self, task_ids: list[str]) -> list[str]:
        """Remember `task_ids` as the most recent; the keys of tasks that fell out."""
        if self._keep is None:
            return []
        recent = self._recent
        for task_id in task_ids:
            if task_id in recent:  # its end: it moves to the most recent
                recent.move_to_end(task_id)
            else:
                recent[task_id] = None
        purge = []
        while len(recent) > self._keep:
            old, _ = recent.popitem(last=False)
            purge += [f"task:{old}:status", f"task:{old}:result", f"task:{old}:completed"]
        return purge
