"""STATE_CHANGED: how the state store announces its writes on the event bus.

A mixin of `StateStore` (see `actors._state`), run in the store's actor.
Changes are gathered and sent to the bus as one `emit_many` per batch, so
the bus handles a batch, not every write:

- with a state file, each batch goes out after its commit (`_emit_changes`
  from the store's group commit), so nothing uncommitted is announced;
- in memory, after `ANNOUNCE_EVERY` seconds: a steady stream of writes
  sends each batch itself, when a write finds it that old; a timer sends
  the last one. (The timer's tell, sent from its own thread, often found
  the store busy in another thread, which then handed the store's messages
  to the store's own thread for a while: a GIL hand-off per batch on
  every task's records.)
"""

from __future__ import annotations

import time
from typing import Any

import pykka
from pykka.messages import ProxyCall

from actors._errors import ActorDeadError
from actors._timers import TimerHandle, call_later
from actors._types import EventType, make_events

__all__ = ["ANNOUNCE_EVERY", "Announcer"]

ANNOUNCE_EVERY = 0.002  # seconds: the changes of this span go to the bus together


class Announcer:
    """Gathers a store's changes and tells them to the bus (`set_event_bus`).

    Invariant: `_announce` holds the changes not yet told, oldest first,
    made since `_announce_since`; between messages, while the store has no
    state file and `_announce` is not empty, `_announce_timer` will tell
    the store to `flush_changes`, unless cancelled (`_changes_due` runs
    after each message that made changes).
    """

    actor_ref: Any  # the store's own ref (pykka's)
    _backend: Any  # the store's state file, or None

    def _init_announcer(self) -> None:
        self._events: Any = None
        self._announce: list[dict[str, Any]] = []
        self._announce_timer: TimerHandle | None = None
        self._announce_since = 0.0

    def set_event_bus(self, events: Any) -> None:
        self._events = events

    def _changes_due(self) -> None:
        """After a message that gathered changes in memory (`_announce`,
        one dict per write, made by the store): send the batch if it is
        due, else see that the timer will."""
        if self._announce_timer is None:
            self._announce_since = time.monotonic()
            self._announce_timer = call_later(ANNOUNCE_EVERY, self._tell_flush)
        elif time.monotonic() - self._announce_since >= ANNOUNCE_EVERY:
            self.flush_changes()

    def _tell_flush(self) -> None:
        # In the timer's thread: the store's own thread (or whoever runs it) flushes.
        try:
            self.actor_ref.tell(ProxyCall(("flush_changes",), (), {}))
        except pykka.ActorDeadError:
            pass  # stopped meanwhile: its on_stop announced what was left

    def flush_changes(self) -> None:
        """Announce the changes gathered so far (STATE_CHANGED, in order).

        The timer is cancelled whoever flushes (a stale timer's tell may
        come after a newer timer was set): no timer outlives its batch."""
        if self._announce_timer is not None:
            self._announce_timer.cancel()
            self._announce_timer = None
        self._emit_changes()

    def _stop_announcing(self) -> None:
        if self._announce_timer is not None:
            self._announce_timer.cancel()
            self._announce_timer = None

    def _emit_changes(self) -> None:
        # Told, never asked: the bus may be writing to this store right now.
        announce, self._announce = self._announce, []
        if announce and self._events is not None:
            events = make_events(EventType.STATE_CHANGED, "state", announce)
            try:
                self._events.tell(ProxyCall(("emit_many",), (events,), {}))
            except ActorDeadError:
                pass  # the bus stopped first (shutdown): nobody is left to tell
