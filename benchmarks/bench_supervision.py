"""Restart speed: from SIGKILL of an agent process to its first answer again.

    python benchmarks/bench_supervision.py [--quick] [--json]

The supervisor sees the death through a pidfd (no polling), the zygote
forks a warm process, and the ref follows the name to it. Measured from
just before the kill to the first reply of the restarted agent.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_agents import Echo
from bench_messaging import parse_args, poll_until

from actors import ActorDeadError
from runtime import Runtime


def restart_times(rt: Runtime, rounds: int, name: str = "echo") -> list[float]:
    """Seconds from SIGKILL to the restarted agent's first answer, per round."""
    ref = rt.spawn(Echo, name, max_restarts=3, restart_window=0.02)
    times = []
    for _ in range(rounds):
        pid = ref.ask("pid", timeout=30)
        t = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        poll_until(lambda old=pid: ref.ask("pid", timeout=30) != old, errors=(ActorDeadError,))
        times.append(time.perf_counter() - t)
        time.sleep(0.05)  # past the restart window: each restart is a first (2 ms back-off)
    return times


def main() -> None:
    args = parse_args(__doc__)
    rounds = 5 if args.quick else 30
    with Runtime() as rt:
        times = restart_times(rt, rounds)
    report = {"restart_median_ms": statistics.median(times) * 1e3, "restart_max_ms": max(times) * 1e3,
              "rounds": rounds}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"restart after SIGKILL, median {report['restart_median_ms']:.1f} ms, "
          f"max {report['restart_max_ms']:.1f} ms over {rounds} kills")


if __name__ == "__main__":
    main()
