"""The project's errors: one root, each named for what happened.

Leaf module: imports only pykka (so the two pykka-compatible errors can also
be caught as their pykka counterparts by code written for plain pykka).
"""

from __future__ import annotations

from typing import Any

import pykka

__all__ = [
    "ActorDeadError",
    "ActorsError",
    "AgentStartError",
    "AskTimeout",
    "BrokenBarrierError",
    "DeadlockError",
    "LockTimeout",
    "MessageSerializationError",
    "NamespacePermissionError",
    "NoCapableAgentError",
    "QuorumNotReachedError",
    "RemoteError",
    "RunInProgressError",
    "StateFileInUseError",
    "StreamClosedError",
    "UnknownNamespaceError",
    "UnknownStreamError",
]


class ActorsError(Exception):
    """Root of every error this project raises.

    An error with `_fields` travels between processes rebuilt from those
    attributes (its constructor's arguments, in order), so they stay intact.
    """

    _fields: tuple[str, ...] = ()

    def __reduce__(self) -> str | tuple[Any, ...]:
        if not self._fields:
            return super().__reduce__()
        return (type(self), tuple(getattr(self, name) for name in self._fields))


class ActorDeadError(ActorsError, pykka.ActorDeadError):
    """The actor is not running: stopped, crashed, or its process is gone.

    Raised at once to every pending ask of an actor whose process died, rather
    than after the ask's timeout.
    """


class AskTimeout(ActorsError, pykka.Timeout):
    """No reply arrived within the ask's timeout; the actor may still be busy."""


class DeadlockError(ActorsError):
    """An ask would wait on itself: its target is already waiting for the asker.

    Raised at once, to the asker, instead of sending an ask that could never
    be answered (an agent asking itself, or A asking B while B's handler asks
    A, round any cycle of blocking asks). `chain` holds the agents waiting on
    each other, outermost first, then the asker and the target it asked (the
    target appears twice: where it waits, and at the end).
    """

    _fields = ("chain",)

    def __init__(self, chain: tuple[str, ...]) -> None:
        self.chain = tuple(chain)
        *waiting, target = self.chain
        asker = waiting[-1] if waiting else "?"
        cycle = self.chain[waiting.index(target):] if target in waiting else self.chain
        self.asker, self.target = asker, target
        super().__init__(f"agent {asker!r} asking {target!r} would deadlock: {' -> '.join(cycle)}")


class NoCapableAgentError(ActorsError):
    """No live agent has the capability a task asked for."""

    def __init__(self, task_type: str, known: list[str] | None = None) -> None:
        self.task_type = task_type
        self.known = sorted(known or [])
        have = ", ".join(self.known) or "none"
        super().__init__(
            f"no live agent has capability {task_type!r} (capabilities present: {have})"
        )

    _fields = ("task_type", "known")


class UnknownNamespaceError(ActorsError, ValueError):
    """A state namespace was used before `create_namespace` made it."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        super().__init__(f"unknown namespace {namespace!r}; create it first")

    _fields = ("namespace",)


class NamespacePermissionError(ActorsError, PermissionError):
    """A writer not listed in the namespace's `writers` tried to write."""

    def __init__(self, namespace: str, writer: str) -> None:
        self.namespace = namespace
        self.writer = writer
        super().__init__(f"{writer!r} may not write to namespace {namespace!r}")

    _fields = ("namespace", "writer")


class LockTimeout(ActorsError, TimeoutError):
    """`with lock:` could not acquire the lock within its timeout."""


class BrokenBarrierError(ActorsError):
    """A barrier broke: a party died or the barrier was reset while waiting."""


class MessageSerializationError(ActorsError, TypeError):
    """A message could not be pickled; raised in the sender, nothing was sent."""


class AgentStartError(ActorsError):
    """An agent process could not be started (it died before `on_start` ended)."""


class QuorumNotReachedError(ActorsError):
    """A replicated state's read or write got fewer than `quorum` answers.

    For a read, only replicas that know count: one that restarted empty and
    could not catch up from its peers says "I don't know" for a key it
    doesn't hold. `answered` is how many counted.
    """

    _fields = ("key", "quorum", "answered", "operation", "store")

    def __init__(self, key: str, quorum: int, answered: int, operation: str = "read", store: str = "") -> None:
        self.key = key
        self.quorum = quorum
        self.answered = answered
        self.operation = operation
        self.store = store
        where = f" of replicated state {store!r}" if store else ""
        why = " (a replica that restarted empty and did not catch up doesn't count)" if operation == "read" else ""
        super().__init__(
            f"{operation} of {key!r}{where} reached {answered} replica(s), needs a quorum of {quorum}{why}"
        )


class RemoteError(ActorsError):
    """An exception raised in another process that could not travel as itself.

    `remote_type` names the original exception's class and `remote_traceback`
    holds the traceback text as formatted in the process that raised it.
    """

    _fields = ("remote_type", "message", "remote_traceback")

    def __init__(self, remote_type: str, message: str, remote_traceback: str) -> None:
        self.remote_type = remote_type
        self.message = message
        self.remote_traceback = remote_traceback
        super().__init__(f"{remote_type}: {message}")


class RunInProgressError(ActorsError):
    """A `map`/`imap` was given a `run_id` that a map of this runtime is running.

    Two maps recording under one id would run each task twice and race on
    its records. The id is free again once the first map ended (it
    returned or raised, or its `imap` generator was closed, exhausted or
    dropped). `run_id` is the id.
    """

    _fields = ("run_id",)

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(
            f"run {run_id!r} is already in progress in this runtime: a map or imap with this run_id "
            "has not ended yet (wait for it, close its imap, or use another run_id)"
        )


class StateFileInUseError(ActorsError):
    """Another runtime holds the state file (two would overwrite each other's writes).

    `path` is the state file; `pid` the holder's process id, or None if it
    could not be read.
    """

    def __init__(self, path: str, pid: int | None = None) -> None:
        self.path = path
        self.pid = pid
        holder = f"another runtime (pid {pid})" if pid is not None else "another runtime"
        super().__init__(f"state file {path!r} is in use by {holder}; one runtime at a time may use it")

    _fields = ("path", "pid")


class UnknownStreamError(ActorsError, LookupError):
    """A stream was used before `create_stream` made it."""

    def __init__(self, stream_id: str) -> None:
        self.stream_id = stream_id
        super().__init__(f"unknown stream {stream_id!r}; create it first")

    _fields = ("stream_id",)


class StreamClosedError(ActorsError):
    """A chunk was sent to a stream after `close_stream`."""
