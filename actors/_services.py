"""Starting the runtime's services and making their clients, for any host.

Both backends call these: `spawn(actor_cls, name, *args, **kwargs)` starts
one service actor wherever the backend keeps its services and returns a
ref to it that works from any process; everything else is ask and tell.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

from pykka.messages import ProxyCall

from actors._comm import CommHub
from actors._events import EventBus, EventsClient
from actors._pubsub import PubSubClient, PubSubManager
from actors._state import StateStore
from actors._state_client import FlatStateClient, StateClient
from actors._streams import StreamingClient, StreamManager
from actors._sync import SyncClient, SyncManager

__all__ = ["start_services", "service_clients"]


def start_services(
    spawn: Callable[..., Any],
    *,
    retire: Callable[[str], object] | None = None,
    dumps: Callable[[Any], bytes] = pickle.dumps,
    max_history: int = 1000,
    state_path: str | None = None,
    synchronous: str = "NORMAL",
    authenticated: bool = True,
    task_records: int | None = 10_000,
) -> dict[str, Any]:
    """Start the state store (first: a bad `state_path` fails before anything
    else exists), the event bus, and the managers of locks, topics and
    streams. Returns their refs by name. `retire(name)` forgets a service
    actor that stopped for good (none does now: locks are no actors). `authenticated` says
    whether the host tells the store who sent each message (see
    `StateStore`); without it, writers are who they say they are.
    `task_records` is how many tasks' `shared/task:{id}:*` records are
    kept (None: all; see `_task_ledger`)."""
    store = spawn(StateStore, "_state", dumps=dumps, max_history=max_history, path=state_path,
                  synchronous=synchronous, authenticated=authenticated)
    bus = spawn(EventBus, "_events", max_history=max_history, state=StateClient(store))
    store.ask(ProxyCall(("set_event_bus",), (bus,), {}))
    sync = spawn(SyncManager, "_sync", spawn=spawn, state=store, events=bus,
                 authenticated=authenticated, task_records=task_records,
                 # a state file's commits need answers; the store and the bus are
                 # reached in-process (on Ray too: see `runtime.ray._ref`), so a
                 # tell is in their mailbox before any later reader's message
                 confirmed=state_path is not None)
    refs = {"_state": store, "_events": bus, "_sync": sync}
    for cls, name in ((PubSubManager, "_pubsub"), (StreamManager, "_streams")):
        refs[name] = spawn(cls, name, spawn=spawn)
    return refs


def service_clients(refs: dict[str, Any], peer: Callable[[str], Any]) -> tuple[Any, ...]:
    """(state, store, events, sync, comm): the clients a runtime and `ctx` expose."""
    return (
        StateClient(refs["_state"]),
        FlatStateClient(refs["_state"]),
        EventsClient(refs["_events"]),
        SyncClient(refs["_sync"]),
        CommHub(peer, PubSubClient(refs["_pubsub"]), StreamingClient(refs["_streams"])),
    )
