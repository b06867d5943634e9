"""Durable agents and resumable batches: what a snapshot costs per ask.

    python benchmarks/bench_durable.py [--quick] [--json]

- raw floor: a Pipe round trip with cloudpickle (bench_messaging.raw_floor);
- plain ask: an agent without `snapshot`, `ref.ask(msg)` from the runtime;
- durable ask, in memory: an agent whose `snapshot()` changes at every
  message (a counter), so every ask also saves a snapshot (told to the
  store by the agent, before its reply: `actors._snapshot`);
- durable ask, unchanged: the same agent asked for a read, so the snapshot
  is pickled and compared but not saved;
- with SQLite (`state_path`): 4 such agents asked at once from 4 threads,
  acknowledged changes per second together (each snapshot sent to the
  store, answered once committed; group commit shares commits); and the
  same 4 agents asked by 4 other agents instead, so the runtime's process
  runs the store alone, not the askers too (its GIL is the limit);
- `map(..., run_id=...)` of 2,000 tiny tasks beside a plain `map`, and the
  resumed call (everything recorded).
Targets: durable ask (changed) / plain ask <= 2; SQLite 4 agents >= 5,000/s.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_agents import MESSAGE, timed
from bench_messaging import parse_args, raw_floor

from actors import Agent
from runtime import Runtime


class Plain(Agent):
    capabilities = ["tiny"]

    def on_start(self):
        self.count = 0

    def on_receive(self, message):
        if message == "get":
            return self.count
        self.count += 1
        return self.count

    def do_work(self, task):
        return task["payload"] + 1


class Durable(Plain):
    def snapshot(self):
        return self.count

    def restore(self, snapshot):
        self.count = snapshot


def _us(times: list[float]) -> float:
    return statistics.median(times) * 1e6


class Driver(Agent):
    """Asks one durable agent `n` times in a row (the asker as another agent)."""

    def drive(self, ref, n):
        for _ in range(n):
            ref.ask(MESSAGE, timeout=30)
        return n


def _changes_driven_by_agents(rt: Runtime, agents: int, per_agent: int) -> float:
    refs = [rt.spawn(Durable, f"driven{i}") for i in range(agents)]
    drivers = [rt.spawn(Driver, f"driver{i}") for i in range(agents)]
    for driver, ref in zip(drivers, refs):
        driver.proxy().drive(ref, 50).get(timeout=60)
    t = time.perf_counter()
    for future in [driver.proxy().drive(ref, per_agent) for driver, ref in zip(drivers, refs)]:
        future.get(timeout=600)
    return agents * per_agent / (time.perf_counter() - t)


def _changes_per_second(rt: Runtime, agents: int, per_agent: int) -> float:
    refs = [rt.spawn(Durable, f"d{i}") for i in range(agents)]
    for ref in refs:
        for _ in range(50):
            ref.ask(MESSAGE, timeout=10)

    def hammer(ref):
        for _ in range(per_agent):
            ref.ask(MESSAGE, timeout=30)

    threads = [threading.Thread(target=hammer, args=(ref,)) for ref in refs]
    t = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return agents * per_agent / (time.perf_counter() - t)


def main() -> None:
    args = parse_args(__doc__)
    n = 500 if args.quick else 3000
    out: dict[str, float] = {}
    out["raw_floor_us"] = raw_floor(n, 100)["rtt_median_us"]
    with Runtime() as rt:
        plain = rt.spawn(Plain, "plain")
        durable = rt.spawn(Durable, "durable")
        out["plain_ask_us"] = _us(timed(lambda: plain.ask(MESSAGE), n))
        out["durable_changed_ask_us"] = _us(timed(lambda: durable.ask(MESSAGE), n))
        out["durable_unchanged_ask_us"] = _us(timed(lambda: durable.ask("get"), n))
        out["changed_over_plain"] = out["durable_changed_ask_us"] / out["plain_ask_us"]
        out["memory_4_agents_changes_per_s"] = _changes_per_second(rt, 4, n)
        payloads = list(range(400 if args.quick else 2000))
        t = time.perf_counter()
        rt.map("tiny", payloads)
        out["map_s"] = time.perf_counter() - t
        t = time.perf_counter()
        rt.map("tiny", payloads, run_id="bench")
        out["map_run_id_s"] = time.perf_counter() - t
        t = time.perf_counter()
        rt.map("tiny", payloads, run_id="bench")
        out["map_resumed_s"] = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as folder, Runtime(state_path=f"{folder}/state.db") as rt:
        out["sqlite_4_agents_changes_per_s"] = _changes_per_second(rt, 4, n)
        out["sqlite_4_agents_asked_by_agents_per_s"] = _changes_driven_by_agents(rt, 4, n)
    if args.json:
        print(json.dumps(out))
        return
    for key, value in out.items():
        print(f"{key:38} {value:12,.2f}")


if __name__ == "__main__":
    main()
