"""State store speed beside the raw floor, measured in the same run.

    python benchmarks/bench_state.py [--quick] [--json]

`set` and `get` per second from an agent process and from the runtime's
process, in memory and with SQLite (WAL), next to the raw pipe round trip
(the floor for anything that crosses a process boundary). Also concurrent
SQLite sets from four agents, where group commit shares each fsync.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_messaging import parse_args, raw_floor

from actors import Agent
from runtime import Runtime


class Client(Agent):
    def sets(self, n, key):
        state = self.ctx.state
        t = time.perf_counter()
        for i in range(n):
            state.set("shared", key, i)
        return n / (time.perf_counter() - t)

    def gets(self, n, key):
        state = self.ctx.state
        t = time.perf_counter()
        for _ in range(n):
            state.get("shared", key)
        return n / (time.perf_counter() - t)


def measure(state_path: str | None, n: int) -> dict[str, float]:
    with Runtime(state_path=state_path) as rt:
        client = rt.spawn(Client, "client")
        out = {
            "agent_set_per_s": client.proxy().sets(n, "a").get(timeout=600),
            "agent_get_per_s": client.proxy().gets(n, "a").get(timeout=600),
        }
        t = time.perf_counter()
        for i in range(n):
            rt.state.set("shared", "r", i)
        out["runtime_set_per_s"] = n / (time.perf_counter() - t)
        t = time.perf_counter()
        for _ in range(n):
            rt.state.get("shared", "r")
        out["runtime_get_per_s"] = n / (time.perf_counter() - t)
        others = [rt.spawn(Client, f"c{i}") for i in range(4)]
        t = time.perf_counter()
        futures = [c.proxy().sets(n // 2, f"k{i}") for i, c in enumerate(others)]
        for f in futures:
            f.get(timeout=600)
        out["four_agents_set_per_s"] = 4 * (n // 2) / (time.perf_counter() - t)
    return out


def main() -> None:
    args = parse_args(__doc__)
    n = 300 if args.quick else 5000
    raw = raw_floor(n, n)
    with tempfile.TemporaryDirectory() as tmp:
        results = {"memory": measure(None, n), "sqlite": measure(str(Path(tmp) / "bench.db"), n)}
    rtt = raw["rtt_median_us"]
    report = {
        "raw_rtt_median_us": rtt,
        **results,
        "ratio agent set time / raw rtt (memory)": (1e6 / results["memory"]["agent_set_per_s"]) / rtt,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"raw pipe round trip, median: {rtt:.1f} us")
    print(f"{'per second':28} {'memory':>10} {'sqlite':>10}")
    for key in results["memory"]:
        print(f"{key:28} {results['memory'][key]:>10,.0f} {results['sqlite'][key]:>10,.0f}")
    ratio = report["ratio agent set time / raw rtt (memory)"]
    print(f"in-memory set from an agent costs {ratio:.2f}x a raw round trip")


if __name__ == "__main__":
    main()
