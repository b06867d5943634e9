"""Replicated state: a key-value store kept by several replica actors.

Each replica is an agent of its own (the runtime gives each a process and
supervises it). A write goes to every replica at once and succeeds when
`quorum` of them acknowledge it; a read asks every reachable replica and
lets the conflict resolver pick among what they hold. The default resolver
is last-write-wins on a hybrid logical clock: wall time in nanoseconds,
bumped past the last stamp seen, so it never runs backwards even when the
wall clock does, and two writes never tie (the writer's id breaks ties).
"""

from __future__ import annotations

import pickle
import threading
import time
from collections.abc import Callable
from typing import Any

from pykka.messages import ProxyCall

from actors._agent import Agent
from actors._context import current_agent_id
from actors._errors import ActorDeadError, AskTimeout
from actors._state import check_key, checksum
from actors._timers import call_later
from actors._types import StateVersion

__all__ = ["HybridClock", "ReplicatedState", "Replica", "last_write_wins"]

Resolver = Callable[[list[StateVersion]], Any]


class HybridClock:
    """Stamps that only grow: max(wall clock ns, last stamp + 1)."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def now(self) -> int:
        with self._lock:
            self._last = max(time.time_ns(), self._last + 1)
            return self._last

    def observe(self, stamp: int) -> None:
        """Move past a stamp seen elsewhere, so later writes order after it."""
        with self._lock:
            self._last = max(self._last, stamp)


_clock = HybridClock()


def _newer(a: StateVersion, b: StateVersion | None) -> bool:
    return b is None or (a.version, a.updated_by) > (b.version, b.updated_by)


def last_write_wins(versions: list[StateVersion]) -> StateVersion:
    """The default resolver: the highest clock stamp (writer id breaks ties)."""
    return max(versions, key=lambda v: (v.version, v.updated_by))


class Replica(Agent):
    """One replica. `StateVersion.version` holds the write's clock stamp.

    `on_start` (in the replica's process) catches up from its peers, so a
    replica restarted after a crash holds every write the others kept; it
    catches up once more shortly after, for the writes that went only to
    the others while it was being registered under its name again.
    """

    catch_up_again_after = 0.3  # seconds

    def __init__(self, peers: tuple[str, ...] = ()) -> None:
        super().__init__()
        self._data: dict[str, StateVersion] = {}
        self._peers = tuple(peers)

    def on_start(self) -> None:
        self.catch_up()
        if self._peers:
            call_later(self.catch_up_again_after, self.actor_ref.tell, ProxyCall(("catch_up",), (), {}))

    def catch_up(self) -> None:
        """Merge every peer's data into ours (newest version of each key wins)."""
        for peer in self._peers:
            try:
                dump = self.ctx.peer(peer).ask(ProxyCall(("dump",), (), {}), timeout=5)
            except (ActorDeadError, AskTimeout):
                continue  # not started yet, or down too: the others suffice
            for key, version in dump.items():
                self.put(key, version)

    def put(self, key: str, version: StateVersion, force: bool = False) -> bool:
        """Keep `version` if it is newer than what is held (or if `force`)."""
        if force or _newer(version, self._data.get(key)):
            self._data[key] = version
            return True
        return False

    def read(self, key: str) -> StateVersion | None:
        return self._data.get(key)

    def dump(self) -> dict[str, StateVersion]:
        return dict(self._data)


class ReplicatedState:
    """`rt.replicated_state(...)`: quorum writes and resolved reads.

    Picklable: an agent can be handed one and use it from its own process.
    `conflict_resolver(versions)` gets the `StateVersion`s the reachable
    replicas hold for a key and returns the winner (a `StateVersion`).
    """

    def __init__(
        self,
        name: str,
        replicas: list[Any],
        quorum: int,
        conflict_resolver: Resolver | None = None,
        dumps: Callable[[Any], bytes] = pickle.dumps,
        timeout: float = 5.0,
    ) -> None:
        self.name = name
        self.replicas = list(replicas)
        self.quorum = quorum
        self.conflict_resolver = conflict_resolver or last_write_wins
        self.timeout = timeout
        self._dumps = dumps

    def __repr__(self) -> str:
        return f"<ReplicatedState {self.name!r} replicas={len(self.replicas)} quorum={self.quorum}>"

    def _fan_out(self, method: str, *args: Any) -> list[tuple[bool, Any]]:
        """Ask every replica at once; (True, reply) or (False, error) each."""
        futures = []
        for ref in self.replicas:
            try:
                futures.append(ref.ask(ProxyCall((method,), args, {}), block=False))
            except ActorDeadError as exc:
                futures.append(exc)
        outcomes = []
        deadline = time.monotonic() + self.timeout
        for future in futures:
            if isinstance(future, Exception):
                outcomes.append((False, future))
                continue
            try:
                outcomes.append((True, future.get(timeout=max(deadline - time.monotonic(), 0.001))))
            except (ActorDeadError, AskTimeout) as exc:
                outcomes.append((False, exc))
        return outcomes

    def set_replicated(self, key: str, value: Any, updater: str | None = None, quorum: int | None = None) -> bool:
        """Write to every replica; True once `quorum` of them acknowledged."""
        check_key(key)
        needed = self.quorum if quorum is None else quorum
        if not 1 <= needed <= len(self.replicas):
            msg = f"quorum must be between 1 and {len(self.replicas)}, got {needed}"
            raise ValueError(msg)
        digest = checksum(self._dumps(value))
        version = StateVersion(value, _clock.now(), time.time(), updater or current_agent_id(), digest)
        acks = sum(ok for ok, _ in self._fan_out("put", key, version))
        return acks >= needed

    def versions(self, key: str) -> list[StateVersion | None]:
        """What each replica holds for `key` (None: nothing, or unreachable)."""
        return [reply if ok else None for ok, reply in self._fan_out("read", key)]

    def _resolve(self, key: str) -> tuple[StateVersion | None, list[StateVersion | None]]:
        """The winning version of `key`, and what each replica holds."""
        versions = self.versions(key)
        held = [v for v in versions if v is not None]
        if not held:
            return None, versions
        _clock.observe(max(v.version for v in held))
        return self.conflict_resolver(held), versions

    def get_version(self, key: str) -> StateVersion | None:
        """The resolved version; replicas holding something else are repaired."""
        winner, versions = self._resolve(key)
        if winner is None:
            return None
        for ref, version in zip(self.replicas, versions):
            if version != winner:  # read repair, without waiting for it
                try:
                    ref.tell(ProxyCall(("put",), (key, winner, True), {}))
                except ActorDeadError:
                    pass
        return winner

    def get(self, key: str) -> Any:
        winner = self.get_version(key)
        return None if winner is None else winner.value

    def sync_stores(self, key: str) -> Any:
        """Resolve `key` and write the winner to every replica; return its value."""
        winner, _versions = self._resolve(key)
        if winner is None:
            return None
        self._fan_out("put", key, winner, True)  # acknowledged, unlike a read's repair
        return winner.value
