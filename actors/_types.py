"""Plain records that travel between actors: messages, events, state versions.

Leaf module: standard library only. Every record is a frozen dataclass so it
pickles cheaply and can't be changed after another actor has seen it.
"""

from __future__ import annotations

import enum
import itertools
import os
import time
import uuid
from dataclasses import dataclass, field
from collections.abc import Iterable
from typing import Any

__all__ = ["Event", "EventType", "Message", "MessagePattern", "StateVersion", "make_event", "make_version", "new_id"]


class MessagePattern(enum.Enum):
    """How a message travels: the design's channels plus fire-and-forget."""

    REQUEST_REPLY = "request_reply"
    PUBLISH_SUBSCRIBE = "pub_sub"
    FIRE_AND_FORGET = "fire_forget"
    STREAMING = "streaming"


class EventType(enum.Enum):
    """The eight kinds of event on the event bus."""

    TASK_CREATED = "task_created"
    TASK_STARTED = "task_started"
    TASK_COMPLETED = "task_completed"
    TASK_FAILED = "task_failed"
    AGENT_JOINED = "agent_joined"
    AGENT_LEFT = "agent_left"
    STATE_CHANGED = "state_changed"
    ERROR_OCCURRED = "error_occurred"

    # Members are singletons compared by identity, so identity hashes them
    # too: Enum's own `__hash__` is Python code, and the bus looks a type up
    # for every event.
    __hash__ = object.__hash__


_ID_PREFIX = uuid.uuid4().hex[:8]
_id_counter = itertools.count(1)
_id_head = f"{_ID_PREFIX}{os.getpid():x}-"  # this process's; a forked child makes its own


def _new_process() -> None:
    global _id_head  # one per process, set at fork
    _id_head = f"{_ID_PREFIX}{os.getpid():x}-"


os.register_at_fork(after_in_child=_new_process)


def new_id() -> str:
    """An id unique across processes (pid) and across forks of one process
    (the pid changes); far cheaper than uuid4, which reads the OS's randomness."""
    return f"{_id_head}{next(_id_counter):x}"


_new_id = new_id


@dataclass(frozen=True)
class Message:
    """A message on one of the communication channels.

    `correlation_id` ties a reply or a stream chunk to the message it answers.
    """

    sender: str
    payload: Any
    recipient: str | None = None
    pattern: MessagePattern = MessagePattern.REQUEST_REPLY
    topic: str | None = None
    correlation_id: str | None = None
    id: str = field(default_factory=_new_id)
    timestamp: float = field(default_factory=time.time)

    def __reduce__(self) -> tuple[Any, ...]:
        # A plain tuple of fields pickles several times faster than the
        # dataclass default (copyreg and a state dict), on the message path.
        return (Message, (self.sender, self.payload, self.recipient, self.pattern, self.topic,
                          self.correlation_id, self.id, self.timestamp))


@dataclass(frozen=True)
class Event:
    """Something that happened, as kept in the event bus's history.

    Fields are in the design's order, `Event(id, type, source, timestamp,
    payload, metadata)`; all but `type` have defaults, so
    `Event(type=EventType.TASK_CREATED, source="me")` is enough. `type` may be
    given as an `EventType` or its value or name (`"task_created"`).
    """

    id: str = field(default_factory=_new_id)
    type: EventType = None  # type: ignore[assignment]  # required: checked in __post_init__
    source: str = ""
    timestamp: float = field(default_factory=time.time)
    payload: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.type is None:
            raise TypeError("Event needs a type, e.g. Event(type=EventType.TASK_CREATED, source=...)")
        if not isinstance(self.type, EventType):
            object.__setattr__(self, "type", event_type_of(self.type))

    def __reduce__(self) -> tuple[Any, ...]:
        return (Event, (self.id, self.type, self.source, self.timestamp, self.payload, self.metadata))


def make_event(
    event_type: EventType, source: str, payload: dict[str, Any], metadata: dict[str, Any] | None = None
) -> Event:
    """`Event(type=event_type, source=..., payload=..., metadata=...)`, made
    the fast way (see `make_events`)."""
    return make_events(event_type, source, (payload,), metadata)[0]


def make_events(
    event_type: EventType, source: str, payloads: Iterable[dict[str, Any]], metadata: dict[str, Any] | None = None
) -> list[Event]:
    """An event per payload, stamped at one instant, made the fast way: for
    the runtime's own events, several per task (a store's STATE_CHANGED
    batch), whose type is already an `EventType` (a frozen dataclass's
    generated `__init__` costs several times more). Each gets `metadata`,
    or an empty dict of its own."""
    stamp = time.time()
    new = object.__new__
    setattr_ = object.__setattr__
    head = _id_head
    events = []
    for payload in payloads:
        event = new(Event)
        setattr_(event, "__dict__", {
            "id": f"{head}{next(_id_counter):x}", "type": event_type, "source": source, "timestamp": stamp,
            "payload": payload, "metadata": {} if metadata is None else metadata,
        })
        events.append(event)
    return events


def event_type_of(value: EventType | str) -> EventType:
    """`value` as an `EventType`: the member itself, its value or its name."""
    if isinstance(value, EventType):
        return value
    try:
        return EventType(value)
    except ValueError:
        try:
            return EventType[str(value).upper()]
        except KeyError:
            names = ", ".join(t.name for t in EventType)
            raise ValueError(f"unknown event type {value!r}; one of {names}") from None


@dataclass(frozen=True)
class StateVersion:
    """One stored value with the version that wrote it.

    `version` starts at 1 for a new key and grows by one on every write;
    `checksum` is a digest of the pickled value, to spot divergent replicas.
    """

    value: Any
    version: int
    timestamp: float
    updated_by: str
    checksum: str

    def __reduce__(self) -> tuple[Any, ...]:
        return (StateVersion, (self.value, self.version, self.timestamp, self.updated_by, self.checksum))


def make_version(value: Any, version: int, timestamp: float, updated_by: str, checksum: str) -> StateVersion:
    """`StateVersion(...)` made the fast way, for the store's every write."""
    made = object.__new__(StateVersion)
    object.__setattr__(made, "__dict__", {
        "value": value, "version": version, "timestamp": timestamp, "updated_by": updated_by, "checksum": checksum,
    })
    return made
