"""Batch pipelines: `rt.map` beside `multiprocessing.Pool.map`, concurrent.futures and Ray.

    python benchmarks/bench_batch.py [--quick] [--json] [--no-ray]

One run, one table, two workers everywhere: `Pool(2).map` (its default
chunksize), `ProcessPoolExecutor(2).map` (its default chunksize of 1, and
chunksize=len/8 as Pool would pick), Ray's `ActorPool.map` over two actors
(when Ray is installed), and `rt.map` over two agents. Work: near-empty
tasks (return the payload), tasks burning ~1 ms of CPU, and ~10 ms. Rates
are tasks per second; ratios are ours / theirs (higher is better for us).

Beside them, measured in the same run: the raw pipe round trip (two
processes over a `multiprocessing.Pipe` with cloudpickle), `execute_task`
called inside an agent (median), `submit_task` from the runtime's process
(median), each as a multiple of that round trip, timed in turns, each turn
divided by the round trip timed just before it; and the runtime
process's memory (RSS) with `task_records=1000` after 2,000 tasks and
after 100,000 (20,000 with --quick), plus the bytes per task a record
costs (measured with `task_records=None`: the default window of 10,000
tasks costs that times 10,000).
"""

from __future__ import annotations

import concurrent.futures
import gc
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import psutil

from bench_agents import timed
from bench_messaging import RawEcho, parse_args, raw_floor

from actors import Agent
from runtime import Runtime

WORKERS = 2


def burn(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def work(payload: Any) -> Any:
    """The task body every system runs: (seconds of CPU to burn, value)."""
    seconds, value = payload
    if seconds:
        burn(seconds)
    return value


class Worker(Agent):
    capabilities = ["work"]

    def do_work(self, task: dict[str, Any]) -> Any:
        return work(task["payload"])

    def execute_times(self, n: int, warm: int = 100) -> float:
        """Median seconds of `execute_task` called here, in the agent."""
        times = timed(lambda: self.execute_task({"id": f"in-agent-{time.perf_counter_ns()}", "type": "work",
                                                 "payload": (0, 1)}), n, warm=warm)
        return statistics.median(times)


def rate(n: int, run) -> float:
    started = time.perf_counter()
    results = run()
    elapsed = time.perf_counter() - started
    assert len(results) == n
    return n / elapsed


def pool_rates(workloads: dict[str, tuple[float, int]]) -> dict[str, float]:
    out = {}
    with mp.get_context("fork").Pool(WORKERS) as pool:
        pool.map(work, [(0, i) for i in range(100)])  # warm
        for name, (seconds, n) in workloads.items():
            payloads = [(seconds, i) for i in range(n)]
            out[name] = rate(n, lambda p=payloads: pool.map(work, p))
    return out


def executor_rates(workloads: dict[str, tuple[float, int]], chunked: bool) -> dict[str, float]:
    out = {}
    ctx = mp.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(WORKERS, mp_context=ctx) as executor:
        list(executor.map(work, [(0, i) for i in range(100)]))
        for name, (seconds, n) in workloads.items():
            chunk = max(1, n // (4 * WORKERS)) if chunked else 1
            payloads = [(seconds, i) for i in range(n)]
            out[name] = rate(n, lambda p=payloads, c=chunk: list(executor.map(work, p, chunksize=c)))
    return out


def ray_rates(workloads: dict[str, tuple[float, int]]) -> dict[str, float] | None:
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:
        return None
    ray.init(address="local", num_cpus=WORKERS, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        @ray.remote
        class RayWorker:
            def run(self, payload):
                return work(payload)

        actors = [RayWorker.remote() for _ in range(WORKERS)]
        pool = ActorPool(actors)
        list(pool.map(lambda a, v: a.run.remote(v), [(0, i) for i in range(100)]))
        out = {}
        for name, (seconds, n) in workloads.items():
            n = min(n, 2000)  # Ray does ~1,000 tiny tasks a second: keep the run short
            payloads = [(seconds, i) for i in range(n)]
            out[name] = rate(n, lambda p=payloads: list(pool.map(lambda a, v: a.run.remote(v), p)))
        return out
    finally:
        ray.shutdown()


def rss() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


def ours(workloads: dict[str, tuple[float, int]], n_latency: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with Runtime() as rt:
        agents = [rt.spawn(Worker, f"w{i}") for i in range(WORKERS)]
        rt.map("work", [(0, i) for i in range(200)])  # warm
        out["rates"] = {}
        for name, (seconds, n) in workloads.items():
            payloads = [(seconds, i) for i in range(n)]
            out["rates"][name] = rate(n, lambda p=payloads: rt.map("work", p))
        out["latency"] = latencies(rt, agents[0], n_latency)
    return out


def latencies(rt: Runtime, agent: Any, n: int, blocks: int = 8) -> dict[str, Any]:
    """`execute_task` in an agent and `submit_task`, in `blocks` turns, each
    turn beside the raw round trip timed just before it: on a shared
    machine the floor itself drifts during a run, so each figure is divided
    by the floor of its own turn. Medians of the turns, and the ratios' range."""
    echo = RawEcho()
    turns = []
    try:
        for _ in range(blocks):
            raw = statistics.median(timed(echo.round_trip, n // blocks, warm=20))
            in_agent = agent.proxy().execute_times(n // blocks, 20).get(timeout=600)
            submit = statistics.median(timed(lambda: rt.submit_task({"type": "work", "payload": (0, 1)}),
                                             n // blocks, warm=20))
            turns.append((raw, in_agent, submit))
    finally:
        echo.close()
    raws = [raw for raw, _e, _s in turns]
    out: dict[str, Any] = {"raw_rtt_median_us": statistics.median(raws) * 1e6, "turns": blocks}
    for i, name in ((1, "execute_task_in_agent"), (2, "submit_task")):
        ratios = [turn[i] / turn[0] for turn in turns]
        out[f"{name}_us"] = statistics.median(turn[i] for turn in turns) * 1e6
        out[f"{name}_ratio"] = statistics.median(ratios)
        out[f"{name}_ratio_range"] = (min(ratios), max(ratios))
    return out


def memory(total: int) -> dict[str, float]:
    """RSS of this (the runtime's) process with task_records=1000, and the
    bytes per task kept with every record kept."""
    with Runtime(task_records=1000) as rt:
        for i in range(WORKERS):
            rt.spawn(Worker, f"m{i}")
        rt.map("work", [(0, i) for i in range(2000)])
        after_2k = rss()
        done = 2000
        while done < total:
            step = min(20_000, total - done)
            rt.map("work", [(0, i) for i in range(step)])
            done += step
        after_all = rss()
        keys = len(rt.state.list_keys("shared"))
    with Runtime(task_records=None) as rt:
        for i in range(WORKERS):
            rt.spawn(Worker, f"k{i}")
        rt.map("work", [(0, i) for i in range(2000)])
        before = rss()
        n = 20_000
        rt.map("work", [(0, i) for i in range(n)])
        per_task = (rss() - before) / n
    return {"rss_after_2k_mb": after_2k / 1e6, "rss_after_all_mb": after_all / 1e6,
            "rss_growth_mb": (after_all - after_2k) / 1e6, "tasks": total, "shared_keys": keys,
            "bytes_per_task_all_kept": per_task}


def main() -> None:
    args = parse_args(__doc__, ("--no-ray", "leave Ray out"))
    scale = 10 if args.quick else 1
    workloads = {
        "near-empty": (0.0, 20_000 // scale),
        "1 ms": (0.001, 2_000 // scale),
        "10 ms": (0.010, 200 // scale),
    }
    raw = raw_floor(300 if args.quick else 2000, 100)["rtt_median_us"]
    report: dict[str, Any] = {"raw_rtt_median_us": raw, "workloads": {k: n for k, (_s, n) in workloads.items()}}
    report["pool_map"] = pool_rates(workloads)
    report["executor_map"] = executor_rates(workloads, chunked=False)
    report["executor_map_chunked"] = executor_rates(workloads, chunked=True)
    report["ray_actor_pool"] = None if args.no_ray else ray_rates(workloads)
    framework = ours(workloads, 300 if args.quick else 2000)
    report["ours"] = framework["rates"]
    report["latency"] = framework["latency"]
    report["memory"] = memory(20_000 if args.quick else 100_000)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print_table(report)


def print_table(report: dict[str, Any]) -> None:
    raw = report["raw_rtt_median_us"]
    systems = [("Pool.map", "pool_map"), ("ProcessPoolExecutor.map", "executor_map"),
               ("ProcessPoolExecutor.map chunked", "executor_map_chunked"), ("Ray ActorPool.map", "ray_actor_pool"),
               ("rt.map", "ours")]
    names = list(report["workloads"])
    print(f"two workers each; raw pipe round trip {raw:.1f} us (median)")
    heads = [f"{n} ({report['workloads'][n]:,})" for n in names]
    print(f"{'tasks/s':34}" + "".join(f"{h:>24}" for h in heads))
    for label, key in systems:
        rates = report[key]
        if rates is None:
            print(f"{label:34}" + "".join(f"{'(not installed)':>24}" for _ in names))
            continue
        print(f"{label:34}" + "".join(f"{rates[n]:>24,.0f}" for n in names))
    for label, key in systems[:-1]:
        if report[key] is not None:
            print(f"{'rt.map / ' + label:34}" + "".join(f"{report['ours'][n] / report[key][n]:>23.2f}x" for n in names))
    lat = report["latency"]
    print(f"latencies, {lat['turns']} turns each beside its own raw round trip "
          f"(median {lat['raw_rtt_median_us']:.1f} us):")
    for label, name in (("execute_task inside an agent", "execute_task_in_agent"),
                        ("submit_task from the runtime", "submit_task")):
        low, high = lat[f"{name}_ratio_range"]
        print(f"{label:34} {lat[name + '_us']:>9.1f} us  ({lat[name + '_ratio']:.1f}x raw round trip; "
              f"turns {low:.1f}-{high:.1f}x)")
    mem = report["memory"]
    print(f"{'RSS, task_records=1000':34} {mem['rss_after_2k_mb']:.1f} MB after 2,000 tasks, "
          f"{mem['rss_after_all_mb']:.1f} MB after {mem['tasks']:,} ({mem['rss_growth_mb']:+.1f} MB; "
          f"{mem['shared_keys']:,} keys in shared)")
    print(f"{'memory per task, all records kept':34} {mem['bytes_per_task_all_kept']:,.0f} bytes "
          f"(the default window of 10,000 tasks: {mem['bytes_per_task_all_kept'] * 10_000 / 1e6:.1f} MB)")


if __name__ == "__main__":
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    main()
