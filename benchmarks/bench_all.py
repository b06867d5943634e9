"""The benchmark suite: this framework beside the raw floor and its peers.

    python benchmarks/bench_all.py [--quick] [--json] [--scale]

One run, one table. Every system is measured the same way, on the same
machine, in the same run:

- raw floor: two processes over a `multiprocessing.Pipe` with cloudpickle,
  and over an `os.pipe` with fixed bytes;
- this framework (agents in processes of their own);
- plain pykka in one process, and, when installed (`pip install '.[bench]'`),
  Ray actors (`ray.init(num_cpus=2)`) and Thespian (`multiprocQueueBase`,
  `multiprocTCPBase`).

Columns: ask round trip (median, p99), one-way tells per second to one
actor, spawn to first reply, restart after SIGKILL to first reply (where
the system restarts actors), and the memory of one idle actor process
(USS: the pages only it holds). `--scale` adds 50/100/250/500 agents
spawned, each answering an ask: time and total memory.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import psutil
import pykka

from bench_agents import MESSAGE, ONEWAY, Echo, idle_child, timed
from bench_messaging import message_path, p99, parse_args, poll_until, raw_floor, spawn_times
from bench_supervision import restart_times

from runtime import Runtime


def _row(name: str, times: list[float] | None = None, **figures: Any) -> dict[str, Any]:
    row = {"system": name, "ask_median_us": None, "ask_p99_us": None, "tells_per_s": None,
           "spawn_ms": None, "restart_ms": None, "idle_uss_mb": None}
    if times:
        row["ask_median_us"] = statistics.median(times) * 1e6
        row["ask_p99_us"] = p99(times) * 1e6
    row.update(figures)
    return row


def _uss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_full_info().uss / 1e6


# -- raw floors ---------------------------------------------------------------

def _os_pipe_echo(r: int, w: int) -> None:
    while True:
        data = os.read(r, 64)
        if not data or data == b"q" * 64:
            return
        if data[0:1] == b"t":
            continue
        os.write(w, data)


def raw_os_pipe(n: int, n_tells: int) -> dict[str, Any]:
    ctx = mp.get_context("fork")
    to_child_r, to_child_w = os.pipe()
    to_parent_r, to_parent_w = os.pipe()
    proc = ctx.Process(target=_os_pipe_echo, args=(to_child_r, to_parent_w))
    proc.start()
    message = b"a" * 64

    def round_trip() -> None:
        os.write(to_child_w, message)
        os.read(to_parent_r, 64)

    times = timed(round_trip, n)
    tell = b"t" * 64
    t = time.perf_counter()
    for _ in range(n_tells):
        os.write(to_child_w, tell)
    round_trip()
    rate = n_tells / (time.perf_counter() - t)
    os.write(to_child_w, b"q" * 64)
    proc.join(10)
    for fd in (to_child_r, to_child_w, to_parent_r, to_parent_w):
        os.close(fd)
    return _row("raw os.pipe, 64 fixed bytes", times, tells_per_s=rate)


def raw_pipe(n: int, n_tells: int) -> dict[str, Any]:
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["pykka", "cloudpickle", "psutil"])  # before the forkserver starts
    floor = raw_floor(n, n_tells)
    spawns, uss = [], None
    for _ in range(5):
        here, there = ctx.Pipe()
        t = time.perf_counter()
        proc = ctx.Process(target=idle_child, args=(there,))
        proc.start()
        here.recv_bytes()
        spawns.append(time.perf_counter() - t)
        uss = _uss_mb(proc.pid)
        here.send_bytes(b"bye")
        proc.join(10)
    return _row("raw Pipe + cloudpickle", None, ask_median_us=floor["rtt_median_us"], ask_p99_us=floor["rtt_p99_us"],
                tells_per_s=floor["tells_per_s"], spawn_ms=statistics.median(spawns) * 1e3, idle_uss_mb=uss)


# -- this framework -----------------------------------------------------------

def framework(n: int, n_tells: int) -> list[dict[str, Any]]:
    with Runtime() as rt:
        times, peer_times, rate = message_path(rt, n, n_tells)
        spawns = spawn_times(rt, 10)
        uss = _uss_mb(rt.agents["a"].ask("pid", timeout=30))
        restarts = restart_times(rt, 10, "victim")
    common = {"tells_per_s": rate, "spawn_ms": statistics.median(spawns) * 1e3,
              "restart_ms": statistics.median(restarts) * 1e3, "idle_uss_mb": uss}
    return [_row("actors: runtime -> agent", times, **common), _row("actors: agent -> agent", peer_times)]


# -- peers --------------------------------------------------------------------

class PykkaEcho(pykka.ThreadingActor):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def on_receive(self, message: Any) -> Any:
        if message == "count":
            return self.count
        if isinstance(message, dict) and message.get("oneway"):
            self.count += 1
            return None
        return message


def plain_pykka(n: int, n_tells: int) -> dict[str, Any]:
    ref = PykkaEcho.start()
    times = timed(lambda: ref.ask(MESSAGE), n)
    t = time.perf_counter()
    for _ in range(n_tells):
        ref.tell(ONEWAY)
    ref.ask("count")
    rate = n_tells / (time.perf_counter() - t)
    spawns = []
    for _ in range(20):
        t = time.perf_counter()
        other = PykkaEcho.start()
        other.ask(MESSAGE)
        spawns.append(time.perf_counter() - t)
        other.stop()
    ref.stop()
    return _row("pykka, threads in one process", times, tells_per_s=rate, spawn_ms=statistics.median(spawns) * 1e3)


def ray_actors(n: int, n_tells: int) -> dict[str, Any] | None:
    try:
        import ray
    except ImportError:
        return None
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
             configure_logging=False)
    try:
        @ray.remote(max_restarts=-1)
        class RayEcho:
            def __init__(self) -> None:
                self.count = 0

            def echo(self, message: Any) -> Any:
                return message

            def oneway(self, message: Any) -> None:
                self.count += 1

            def get_count(self) -> int:
                return self.count

            def pid(self) -> int:
                return os.getpid()

        t = time.perf_counter()
        actor = RayEcho.remote()
        ray.get(actor.echo.remote(MESSAGE))
        spawn = time.perf_counter() - t
        times = timed(lambda: ray.get(actor.echo.remote(MESSAGE)), n, warm=20)
        t = time.perf_counter()
        for _ in range(n_tells):
            actor.oneway.remote(ONEWAY)
        ray.get(actor.get_count.remote())
        rate = n_tells / (time.perf_counter() - t)
        pid = ray.get(actor.pid.remote())
        uss = _uss_mb(pid)
        t = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        poll_until(lambda: ray.get(actor.pid.remote(), timeout=60) != pid)
        restart = time.perf_counter() - t
    finally:
        ray.shutdown()
    return _row("ray actors", times, tells_per_s=rate, spawn_ms=spawn * 1e3, restart_ms=restart * 1e3,
                idle_uss_mb=uss)


def thespian_actors(base: str, n: int, n_tells: int) -> dict[str, Any] | None:
    try:
        from thespian.actors import ActorSystem
    except ImportError:
        return None
    from bench_thespian import TEcho

    system = ActorSystem(base, transientUnique=True)
    try:
        t = time.perf_counter()
        addr = system.createActor(TEcho)
        system.ask(addr, "pid", 30)
        spawn = time.perf_counter() - t
        times = timed(lambda: system.ask(addr, MESSAGE, 30), n, warm=20)
        t = time.perf_counter()
        for _ in range(n_tells):
            system.tell(addr, ONEWAY)
        system.ask(addr, "count", 120)
        rate = n_tells / (time.perf_counter() - t)
        uss = _uss_mb(system.ask(addr, "pid", 30))
    finally:
        system.shutdown()
    return _row(f"thespian {base}", times, tells_per_s=rate, spawn_ms=spawn * 1e3, idle_uss_mb=uss)


def scale(counts: tuple[int, ...]) -> list[dict[str, Any]]:
    rows = []
    with Runtime() as rt:
        started = time.perf_counter()
        for count in counts:
            for i in range(len(rt.agents), count):
                rt.spawn(Echo, f"n{i}").ask("pid", timeout=60)
            pids = [r["pid"] for r in rt.agent_info()]
            total = sum(psutil.Process(p).memory_full_info().uss for p in pids)
            total += psutil.Process().memory_full_info().uss
            rows.append({"agents": count, "seconds": time.perf_counter() - started, "total_uss_gb": total / 1e9})
    return rows


def main() -> None:
    args = parse_args(__doc__, ("--scale", "also spawn 50/100/250/500 agents"))
    # Peers (Ray) print to stdout on their own; keep it clean for the report.
    sys.stdout.flush()
    report_fd = os.dup(1)
    os.dup2(2, 1)
    try:
        report = measure(args)
    finally:
        sys.stdout.flush()
        os.dup2(report_fd, 1)
        os.close(report_fd)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(_table(report["systems"]))
    for row in report.get("scale", []):
        print(f"{row['agents']:>4} agents spawned and answering: {row['seconds']:6.2f} s, "
              f"{row['total_uss_gb']:.2f} GB USS in all")


def measure(args: argparse.Namespace) -> dict[str, Any]:
    n, n_tells = (200, 2000) if args.quick else (3000, 30000)
    rows = [raw_pipe(n, n_tells), raw_os_pipe(n, n_tells), *framework(n, n_tells), plain_pykka(n, n_tells)]
    for extra in (ray_actors(min(n, 1000), min(n_tells, 5000)),
                  thespian_actors("multiprocQueueBase", min(n, 1000), min(n_tells, 5000)),
                  thespian_actors("multiprocTCPBase", min(n, 1000), min(n_tells, 5000))):
        if extra is not None:
            rows.append(extra)
    floor = rows[0]["ask_median_us"]
    for row in rows:
        row["ask_vs_raw_pipe"] = None if row["ask_median_us"] is None else row["ask_median_us"] / floor
    report: dict[str, Any] = {"systems": rows}
    if args.scale:
        report["scale"] = scale((50, 100, 250, 500))
    return report


def _table(rows: list[dict[str, Any]]) -> str:
    def fmt(value: Any, spec: str) -> str:
        width = int(spec.split(".")[0].replace(",", "") or 0)
        return "-".rjust(width) if value is None else format(value, spec)

    lines = [f"{'system':32} {'ask med':>9} {'ask p99':>9} {'tells/s':>10} {'spawn':>9} {'restart':>9} "
             f"{'idle USS':>9} {'vs raw':>7}"]
    for r in rows:
        lines.append(
            f"{r['system']:32} {fmt(r['ask_median_us'], '8.1f')}µ {fmt(r['ask_p99_us'], '8.1f')}µ "
            f"{fmt(r['tells_per_s'], '10,.0f')} {fmt(r['spawn_ms'], '7.1f')}ms {fmt(r['restart_ms'], '7.1f')}ms "
            f"{fmt(r['idle_uss_mb'], '7.1f')}MB {fmt(r['ask_vs_raw_pipe'], '6.2f')}x"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
