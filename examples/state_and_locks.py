"""Shared state and locks across agent processes.

Four agents increment one counter: atomically with `update`, and with an
unsafe read-modify-write made safe by a lock. A semaphore caps how many
work at once, and a barrier lines them up between rounds.

Run:  python examples/state_and_locks.py
"""

from actors import Agent
from runtime import Runtime


class Counter(Agent):
    def run(self, n):
        state, sync = self.ctx.state, self.ctx.sync
        for _ in range(n):
            state.update("shared", "atomic", lambda v: (v or 0) + 1)
            with sync.get_lock("counter"):
                value = state.get("shared", "locked") or 0
                state.set("shared", "locked", value + 1)
            with sync.get_semaphore("pool", 2):
                state.update("shared", "calls", lambda v: (v or 0) + 1)
        return sync.get_barrier("done", 4).wait(timeout=60)


if __name__ == "__main__":
    with Runtime() as rt:
        agents = [rt.spawn(Counter, f"counter-{i}") for i in range(4)]
        arrived = [f.get(timeout=120) for f in [a.proxy().run(50) for a in agents]]
        print(f"all four passed the barrier: {all(arrived)}")
        for key in ("atomic", "locked", "calls"):
            version = rt.state.get_version("shared", key)
            print(f"{key}: {version.value} (version {version.version}, last by {version.updated_by})")
        print(f"lock token after {version.value} grants: {rt.sync.get_lock('counter').token()}")
