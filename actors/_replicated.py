"""Replicated state: a key-value store kept by several replica actors.

Each replica is an agent of its own (the runtime gives each a process and
supervises it). A write goes to every replica at once and succeeds when
`quorum` of them acknowledge it; a read asks every reachable replica and
lets the conflict resolver pick among what they hold. The default resolver
is last-write-wins on a hybrid logical clock: wall time in nanoseconds,
bumped past the last stamp seen, so it never runs backwards even when the
wall clock does, and two writes never tie (the writer's id breaks ties).

A read or write that fewer than `quorum` replicas answer raises
`QuorumNotReachedError`, never a silent `None`. For a read only replicas
that *know* count: a replica created with the store knows (nothing was
written before it), and so does one that restarted and caught up from
enough peers that know; one that restarted empty and could not catch up
answers "I don't know" for any key it doesn't hold, and publishes
ERROR_OCCURRED saying so. How a replica tells a restart from its first
start: the runtime writes a marker to its flat store once every replica
of a new store is up; a replica that finds it at start is a restart.
A read sees every acknowledged write when reads and writes overlap
(2 * quorum > replicas, as with the default 3 and 2).
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
from actors._errors import ActorDeadError, ActorsError, AskTimeout, QuorumNotReachedError
from actors._state import check_key, checksum
from actors._timers import call_later
from actors._types import EventType, StateVersion

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

    `peers` are the other replicas' names, `quorum` the store's, and
    `marker` the flat-store key the runtime sets once the store is made
    (None: no way to tell a restart, so it trusts itself, as before).

    `on_start` (in the replica's process): at the store's creation there is
    nothing to catch up. After a restart it catches up from its peers, so it
    holds every write the others kept; it knows (counts for reads) once
    enough of them that know answered: `caught_up_from` of them, so that
    every write a quorum acknowledged is on one of them. It catches up once
    more shortly after, for the writes that went only to the others while
    it was being registered under its name again; if it still doesn't
    know then, it publishes ERROR_OCCURRED.
    """

    catch_up_again_after = 0.3  # seconds

    def __init__(self, peers: tuple[str, ...] = (), quorum: int = 1, marker: str | None = None) -> None:
        super().__init__()
        self._data: dict[str, StateVersion] = {}
        self._peers = tuple(peers)
        self._marker = marker
        self._knows = marker is None
        replicas = len(self._peers) + 1
        # A write sits on >= quorum replicas: on >= quorum - 1 peers if this
        # one lost it; hearing from replicas - quorum + 1 peers finds it.
        self.caught_up_from = max(1, min(replicas - quorum + 1, replicas - 1))

    def on_start(self) -> None:
        if self._marker is not None and self.ctx.store.get(self._marker) is None:
            self._knows = True  # made with the store: nothing was written before
            return
        self.catch_up(last=not self._peers)
        if self._peers:
            call_later(
                self.catch_up_again_after, self.actor_ref.tell, ProxyCall(("catch_up",), (), {"last": True})
            )

    def catch_up(self, last: bool = False) -> None:
        """Merge every peer's data into ours (newest version of each key wins).

        `last`: the final try after a restart; not knowing by then is
        published as ERROR_OCCURRED.
        """
        vouched = 0  # peers that know
        for peer in self._peers:
            try:
                knows, data = self.ctx.peer(peer).ask(ProxyCall(("share",), (), {}), timeout=5)
            except ActorsError:
                continue  # not started yet, or down too: the others may suffice
            for key, version in data.items():
                self.put(key, version)
            vouched += knows
        if vouched >= self.caught_up_from:
            self._knows = True
        elif last and not self._knows:
            self._report_unknown(vouched)

    def _report_unknown(self, vouched: int) -> None:
        me = self.ctx.agent_id
        error = (
            f"replica {me} restarted empty and could not catch up: {vouched} of the {self.caught_up_from} "
            f"peer(s) that know it needs answered (acknowledged writes may be lost); it answers "
            f"\"don't know\" for keys it doesn't hold, so reads without a quorum that knows raise "
            f"QuorumNotReachedError"
        )
        try:
            self.ctx.events.emit(me, EventType.ERROR_OCCURRED, {
                "agent_id": me, "error": error, "peers_that_know": vouched, "needed": self.caught_up_from,
            })
        except ActorsError:
            pass  # the runtime is going away

    def share(self) -> tuple[bool, dict[str, StateVersion]]:
        """Whether this replica knows, and everything it holds (for a catching-up peer)."""
        return self._knows, dict(self._data)

    def lookup(self, key: str) -> tuple[bool, StateVersion | None]:
        """(knows, version): a replica that doesn't know says so for keys it doesn't hold."""
        version = self._data.get(key)
        return (self._knows or version is not None), version

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
        """Write to every replica; True once `quorum` of them acknowledged.

        Fewer acknowledgements raise `QuorumNotReachedError` (the replicas
        that did acknowledge keep the write).
        """
        check_key(key)
        needed = self.quorum if quorum is None else quorum
        if not 1 <= needed <= len(self.replicas):
            msg = f"quorum must be between 1 and {len(self.replicas)}, got {needed}"
            raise ValueError(msg)
        digest = checksum(self._dumps(value))
        version = StateVersion(value, _clock.now(), time.time(), updater or current_agent_id(), digest)
        acks = sum(ok for ok, _ in self._fan_out("put", key, version))
        if acks < needed:
            raise QuorumNotReachedError(key, needed, acks, "write", self.name)
        return True

    def versions(self, key: str) -> list[StateVersion | None]:
        """What each replica holds for `key` (None: nothing, or unreachable)."""
        return [reply if ok else None for ok, reply in self._fan_out("read", key)]

    def _resolve(self, key: str) -> tuple[StateVersion | None, list[StateVersion | None]]:
        """The winning version of `key`, and what each replica holds.

        `QuorumNotReachedError` unless `quorum` replicas that know answered.
        """
        answers = self._fan_out("lookup", key)
        known = sum(1 for ok, answer in answers if ok and answer[0])  # answer: (knows, version)
        if known < self.quorum:
            raise QuorumNotReachedError(key, self.quorum, known, "read", self.name)
        versions = [answer[1] if ok else None for ok, answer in answers]
        held = [v for v in versions if v is not None]
        if not held:
            return None, versions
        _clock.observe(max(v.version for v in held))
        return self.conflict_resolver(held), versions

    def get_version(self, key: str) -> StateVersion | None:
        """The resolved version (None: absent); replicas holding something else are repaired.

        `QuorumNotReachedError` if fewer than `quorum` replicas that know answered.
        """
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
