"""Durable agent state: `snapshot()` saved after each message, `restore()` at start.

A host places `SnapshotHost` among the bases of an agent class that
defines `snapshot` (`Agent._durable`, a class attribute set once per
class, so agents without snapshots pay nothing per message). Then, in the
agent's own process and actor thread:

- before `on_start`, the last snapshot saved under the agent's name (by an
  earlier process of the same name: a supervisor restart, or a runtime
  before this one on the same `state_path`) is given to `restore`;
- after each message handled without raising, `snapshot()` is pickled and,
  if the bytes differ from the last saved, sent to the state store before
  the handler's result goes back, by the host's `_snapshot_send`. On this
  machine (`runtime.local._host`) that is the bare pickled bytes
  (`StateStore.keep_snapshot`, the cheapest message there is):

  - with a state file, asked: the reply is sent only once the store
    answered, which it does after its commit;
  - in memory, told on a connection of the agent's own to the store's
    process that carries only its snapshots: the bytes are in that
    process's socket before the reply leaves, so they outlive the agent,
    and its supervisor reads every connection of a dead process to its
    end before anything (a restart's `restore`) asks for its snapshot
    (`Node.wait_drained`). That process reads them in batches, keeping
    the last (`runtime.wire._drain`): no round trip, and about one
    wake-up there per millisecond of snapshots. A third process reading
    `_snapshots` right after the reply may see an earlier one.

  A host that sets nothing (Ray's) asks `StateStore.save_snapshot`.

  So no change acknowledged to an asker is lost to a crash of the agent
  (nor, with a state file, of the runtime).

A handler that raises saves nothing (the agent's next message saves
whatever it changed); a stop saves nothing either (`on_stop` runs after
the last message). An `async def` handler's result is a coroutine: the
async host saves when its task ends, before setting the reply
(`runtime.local._aio_host`).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from types import CoroutineType
from typing import Any

import pykka
from pykka.messages import _ActorStop

__all__ = ["SnapshotBatch", "SnapshotHost"]


class SnapshotBatch(list[tuple[str, bytes]]):
    """A message to the store: the pickled snapshots of several agents, as
    (agent name, bytes) pairs, each authenticated by the host that read it,
    to keep in one commit (`StateStore` answers with one outcome each:
    None, or the exception that refused it)."""

    __slots__ = ()


class SnapshotHost(pykka.Actor):
    """Mixin placed before the agent's class by its host (see the module docstring)."""

    #: The last snapshot saved or restored, pickled: what the next one is compared with.
    _snapshot_saved: bytes | None = None
    #: How snapshots are pickled; a host sets the runtime's (cloudpickle for `__main__`).
    _snapshot_dumps: Callable[[Any], bytes] = staticmethod(pickle.dumps)
    #: Set by a host: sends a pickled snapshot to the store; once it
    #: returns, the snapshot survives the agent's death (see the module
    #: docstring). None: `save_snapshot` is asked of the store.
    _snapshot_send: Callable[[bytes], None] | None = None

    def on_start(self) -> None:
        self._restore_snapshot()
        super().on_start()

    def _restore_snapshot(self) -> None:
        blob = self.ctx.store._call("load_snapshot", self.ctx.agent_id)  # type: ignore[attr-defined]
        if blob is not None:
            self._snapshot_saved = blob
            self.restore(pickle.loads(blob))  # type: ignore[attr-defined]

    def _handle_receive(self, message: Any) -> Any:
        result = super()._handle_receive(message)
        if type(result) is not CoroutineType and type(message) is not _ActorStop:
            self._save_snapshot()
        return result

    def _save_snapshot(self) -> None:
        """Save `snapshot()` if it changed; raises what pickling or the store raised."""
        blob = self._snapshot_dumps(self.snapshot())  # type: ignore[attr-defined]
        if blob != self._snapshot_saved:
            send = self._snapshot_send
            if send is None:
                self.ctx.store._call("save_snapshot", self.ctx.agent_id, blob)  # type: ignore[attr-defined]
            else:
                send(blob)
            self._snapshot_saved = blob
