"""Pub-sub fan-out and streaming beside the raw floor, in the same run.

    python benchmarks/bench_comm.py [--quick] [--json]

Fan-out: one publisher in the runtime's process, 8 subscriber agent
processes; deliveries per second against the raw pipe's one-way sends.
Streaming: 1 MiB chunks from one agent process to another, in MB/s,
against a raw `multiprocessing.Pipe` moving the same chunks.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cloudpickle
from bench_messaging import parse_args, raw_floor

from actors import Agent
from runtime import Runtime

CHUNK = 1 << 20


class Counter(Agent):
    def on_start(self):
        self.count = 0
        self.ctx.comm.pub_sub.subscribe("bench", self.on_message)

    def on_message(self, message):
        self.count += 1

    def get_count(self):
        return self.count


class Writer(Agent):
    def write(self, stream_id, n):
        chunk = os.urandom(CHUNK)
        for _ in range(n):
            self.ctx.comm.streaming.send(stream_id, chunk)
        self.ctx.comm.streaming.close_stream(stream_id)
        return n


class Reader(Agent):
    def read(self, stream_id):
        t = time.perf_counter()
        total = sum(len(c) for c in self.ctx.comm.streaming.iterate(stream_id))
        return total, time.perf_counter() - t


def _raw_sink(conn, n):
    for _ in range(n):
        conn.recv_bytes()
    conn.send_bytes(b"done")


def _raw_counter(conn, m):
    for _ in range(m):
        cloudpickle.loads(conn.recv_bytes())
    conn.send_bytes(b"done")


def raw_fan_out(m: int, fan: int = 8) -> float:
    """The floor for fan-out: one process sending to `fan` processes, each
    message pickled (cloudpickle) and sent over a Pipe to every receiver."""
    ctx = mp.get_context("forkserver")
    pipes, procs = [], []
    for _ in range(fan):
        here, there = ctx.Pipe()
        proc = ctx.Process(target=_raw_counter, args=(there, m))
        proc.start()
        pipes.append(here)
        procs.append(proc)
    t = time.perf_counter()
    for i in range(m):
        for pipe in pipes:
            pipe.send_bytes(cloudpickle.dumps({"topic": "bench", "payload": i}))
    for pipe in pipes:
        pipe.recv_bytes()
    elapsed = time.perf_counter() - t
    for proc in procs:
        proc.join(10)
    return fan * m / elapsed


def raw_stream(n: int) -> float:
    ctx = mp.get_context("forkserver")
    here, there = ctx.Pipe()
    proc = ctx.Process(target=_raw_sink, args=(there, n))
    proc.start()
    chunk = os.urandom(CHUNK)
    t = time.perf_counter()
    for _ in range(n):
        here.send_bytes(chunk)
    here.recv_bytes()
    elapsed = time.perf_counter() - t
    proc.join(10)
    return n * CHUNK / elapsed / 1e6


def fan_out(m: int) -> float:
    with Runtime() as rt:
        subs = [rt.spawn(Counter, f"c{i}") for i in range(8)]
        t = time.perf_counter()
        for i in range(m):
            rt.comm.pub_sub.publish("bench", "bench", i)
        for sub in subs:
            while sub.proxy().get_count().get(timeout=60) < m:
                time.sleep(0.001)
        return 8 * m / (time.perf_counter() - t)


def stream(n: int) -> float:
    with Runtime() as rt:
        rt.comm.streaming.create_stream("bench", maxsize=8)
        writer, reader = rt.spawn(Writer, "w"), rt.spawn(Reader, "r")
        reading = reader.proxy().read("bench")
        t = time.perf_counter()
        writer.proxy().write("bench", n).get(timeout=600)
        total, _ = reading.get(timeout=600)
        return total / (time.perf_counter() - t) / 1e6


def main() -> None:
    args = parse_args(__doc__)
    m, n = (200, 20) if args.quick else (3000, 300)
    raw_tells = raw_floor(m, 10 * m)["tells_per_s"]
    report = {
        "raw_one_way_per_s": raw_tells,
        "raw_fan_out_per_s": raw_fan_out(m),
        "fan_out_deliveries_per_s": fan_out(m),
        "raw_pipe_mb_per_s": raw_stream(n),
        "stream_mb_per_s": stream(n),
    }
    report["ratio fan-out / raw one-way"] = report["fan_out_deliveries_per_s"] / raw_tells
    report["ratio fan-out / raw fan-out"] = report["fan_out_deliveries_per_s"] / report["raw_fan_out_per_s"]
    report["ratio stream / raw pipe"] = report["stream_mb_per_s"] / report["raw_pipe_mb_per_s"]
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"raw pipe one-way sends            {raw_tells:>10,.0f} /s")
    print(f"raw fan-out to 8 processes        {report['raw_fan_out_per_s']:>10,.0f} deliveries/s")
    print(f"pub-sub fan-out to 8 agents       {report['fan_out_deliveries_per_s']:>10,.0f} deliveries/s"
          f"  ({report['ratio fan-out / raw one-way']:.2f}x raw one-way,"
          f" {report['ratio fan-out / raw fan-out']:.2f}x raw fan-out)")
    print(f"raw pipe, 1 MiB chunks            {report['raw_pipe_mb_per_s']:>10,.0f} MB/s")
    print(f"stream agent -> agent, 1 MiB      {report['stream_mb_per_s']:>10,.0f} MB/s"
          f"  ({report['ratio stream / raw pipe']:.2f}x raw)")


if __name__ == "__main__":
    main()
