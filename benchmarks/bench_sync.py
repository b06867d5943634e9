"""Lock speed beside the raw floor, measured in the same run.

    python benchmarks/bench_sync.py [--quick] [--json]

Uncontended acquire+release per second from an agent (explicit calls, and
`with lock:`), and the hand-off latency of one lock passed back and forth
between two agent processes, next to the raw pipe round trip.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_messaging import parse_args, raw_floor

from actors import Agent
from runtime import Runtime


class Locker(Agent):
    def uncontended(self, n):
        lock = self.ctx.sync.get_lock(f"solo-{self.agent_id}")
        t = time.perf_counter()
        for _ in range(n):
            lock.acquire()
            lock.release()
        explicit = (time.perf_counter() - t) / n
        t = time.perf_counter()
        for _ in range(n):
            with lock:
                pass
        return explicit, (time.perf_counter() - t) / n

    def ping_pong(self, n):
        lock = self.ctx.sync.get_lock("shared")
        t = time.perf_counter()
        for _ in range(n):
            lock.acquire(timeout=60)
            lock.release()
        return time.perf_counter() - t


def main() -> None:
    args = parse_args(__doc__)
    n = 300 if args.quick else 3000
    raw = raw_floor(n, n)["rtt_median_us"]
    with Runtime() as rt:
        a, b = rt.spawn(Locker, "a"), rt.spawn(Locker, "b")
        explicit, with_block = a.proxy().uncontended(n).get(timeout=600)
        futures = [x.proxy().ping_pong(n) for x in (a, b)]
        elapsed = max(f.get(timeout=600) for f in futures)
    report = {
        "raw_rtt_median_us": raw,
        "acquire_release_us": explicit * 1e6,
        "with_lock_us": with_block * 1e6,
        "acquire_release_per_s": 1 / explicit,
        "contended_acquire_release_per_s": 2 * n / elapsed,
        "ratio acquire+release / raw rtt": explicit * 1e6 / raw,
        "ratio with lock / raw rtt": with_block * 1e6 / raw,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"raw pipe round trip, median          {raw:>9.1f} us")
    print(f"uncontended acquire()+release()      {report['acquire_release_us']:>9.1f} us"
          f"  ({report['ratio acquire+release / raw rtt']:.2f}x raw)")
    print(f"uncontended `with lock:`             {report['with_lock_us']:>9.1f} us"
          f"  ({report['ratio with lock / raw rtt']:.2f}x raw)")
    print(f"two agents contending, grants        {report['contended_acquire_release_per_s']:>9,.0f} /s"
          f"  (hand-off {1e6 / report['contended_acquire_release_per_s']:.0f} us)")


if __name__ == "__main__":
    main()
