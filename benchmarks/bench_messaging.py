"""Message-path speed beside the raw floor, measured in the same run.

    python benchmarks/bench_messaging.py [--quick] [--json]

The raw floor is two processes over a `multiprocessing.Pipe` with
cloudpickle, echoing; the framework figures are an ask from the runtime to
an agent, an ask from one agent to another, one-way tells to one agent,
and spawn-to-first-reply. Ratios are framework / floor (lower is better
for times, higher for rates).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cloudpickle

from bench_agents import MESSAGE, ONEWAY, Echo, raw_echo, timed
from runtime import Runtime



def parse_args(doc: str | None, *flags: tuple[str, str]) -> argparse.Namespace:
    """`--quick` and `--json`, as every benchmark here takes them, plus
    `flags` as (flag, help) pairs of further switches."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    for flag, text in flags:
        parser.add_argument(flag, action="store_true", help=text)
    return parser.parse_args()


def poll_until(probe, timeout: float = 60.0, errors=(Exception,)):
    """Call `probe()` until it returns something truthy (errors in `errors`
    count as not yet); its value, or RuntimeError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = probe()
        except errors:
            value = None
        if value:
            return value
        time.sleep(0.0005)
    msg = f"{probe} did not succeed within {timeout} s"
    raise RuntimeError(msg)


class RawEcho:
    """The raw floor's far end, a process of its own kept running, so that
    its round trips can be timed in between other measures (`interleaved`)."""

    def __init__(self) -> None:
        ctx = mp.get_context("forkserver")
        self._here, there = ctx.Pipe()
        self._proc = ctx.Process(target=raw_echo, args=(there,))
        self._proc.start()

    def round_trip(self) -> None:
        self._here.send_bytes(cloudpickle.dumps(MESSAGE))
        cloudpickle.loads(self._here.recv_bytes())

    def tells_per_s(self, n: int) -> float:
        t = time.perf_counter()
        for _ in range(n):
            self._here.send_bytes(cloudpickle.dumps(ONEWAY))
        self._here.send_bytes(b"count")
        self._here.recv_bytes()
        return n / (time.perf_counter() - t)

    def close(self) -> None:
        self._here.send_bytes(b"stop")
        self._proc.join(10)


def raw_floor(n_rtt: int, n_tells: int) -> dict[str, float]:
    echo = RawEcho()
    try:
        times = timed(echo.round_trip, n_rtt)
        rate = echo.tells_per_s(n_tells)
    finally:
        echo.close()
    return {"rtt_median_us": statistics.median(times) * 1e6, "rtt_p99_us": p99(times) * 1e6, "tells_per_s": rate}


def p99(values):
    return sorted(values)[max(int(len(values) * 0.99) - 1, 0)]


def message_path(rt, n_rtt: int, n_tells: int):
    """Ask times runtime -> agent "a" and agent -> agent, and one-way tells
    per second to agent "b" (every one checked to have arrived)."""
    a = rt.spawn(Echo, "a")
    b = rt.spawn(Echo, "b")
    times = timed(lambda: a.ask(MESSAGE), n_rtt)
    peer_times = a.proxy().ask_peer(b, n_rtt).get(timeout=600)
    t = time.perf_counter()
    for _ in range(n_tells):
        b.tell(ONEWAY)
    assert b.ask("count", timeout=600) == n_tells
    return times, peer_times, n_tells / (time.perf_counter() - t)


def spawn_times(rt, n: int) -> list[float]:
    """Seconds from spawn to the new agent's first answer, for `n` agents."""
    spawns = []
    for i in range(n):
        t = time.perf_counter()
        rt.spawn(Echo, f"s{i}").ask(MESSAGE, timeout=30)
        spawns.append(time.perf_counter() - t)
        rt.remove_agent(f"s{i}")
    return spawns


def framework(n_rtt: int, n_tells: int, n_spawn: int) -> dict[str, float]:
    with Runtime() as rt:
        times, peer_times, rate = message_path(rt, n_rtt, n_tells)
        spawns = spawn_times(rt, n_spawn)
    return {
        "ask_median_us": statistics.median(times) * 1e6,
        "ask_p99_us": p99(times) * 1e6,
        "agent_ask_median_us": statistics.median(peer_times) * 1e6,
        "tells_per_s": rate,
        "spawn_median_ms": statistics.median(spawns) * 1e3,
    }


def main() -> None:
    args = parse_args(__doc__)
    n_rtt, n_tells, n_spawn = (300, 2000, 3) if args.quick else (5000, 50000, 20)
    raw = raw_floor(n_rtt, n_tells)
    ours = framework(n_rtt, n_tells, n_spawn)
    ratios = {
        "ask / raw rtt": ours["ask_median_us"] / raw["rtt_median_us"],
        "agent ask / raw rtt": ours["agent_ask_median_us"] / raw["rtt_median_us"],
        "tells / raw sends": ours["tells_per_s"] / raw["tells_per_s"],
    }
    if args.json:
        print(json.dumps({"raw": raw, "framework": ours, "ratios": ratios}, indent=2))
        return
    print(f"{'measure':34} {'value':>12}")
    print(f"{'raw pipe round trip, median':34} {raw['rtt_median_us']:>9.1f} us")
    print(f"{'raw pipe round trip, p99':34} {raw['rtt_p99_us']:>9.1f} us")
    print(f"{'raw pipe one-way sends':34} {raw['tells_per_s']:>9,.0f} /s")
    print(f"{'ask runtime->agent, median':34} {ours['ask_median_us']:>9.1f} us")
    print(f"{'ask runtime->agent, p99':34} {ours['ask_p99_us']:>9.1f} us")
    print(f"{'ask agent->agent, median':34} {ours['agent_ask_median_us']:>9.1f} us")
    print(f"{'tells to one agent':34} {ours['tells_per_s']:>9,.0f} /s")
    print(f"{'spawn to first reply, median':34} {ours['spawn_median_ms']:>9.1f} ms")
    for name, value in ratios.items():
        print(f"{'ratio ' + name:34} {value:>11.2f}x")


if __name__ == "__main__":
    main()
