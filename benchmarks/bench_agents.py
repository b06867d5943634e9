"""What the benchmarks run inside other processes: the echo agent, the raw
floor's echo loop, and the messages they exchange.

A module of its own, importing only what those need: a child process
imports the module its code comes from, so anything the benchmark harness
imports (argparse, statistics, Ray...) would otherwise be loaded into every
measured process and counted in its memory and start-up time.
"""

from __future__ import annotations

import os
import time

import cloudpickle

from actors import Agent

MESSAGE = {"op": "echo", "n": 1, "data": [1, 2, 3]}
ONEWAY = {"oneway": True, "n": 1}


def timed(call, n: int, warm: int = 200) -> list[float]:
    """Seconds each of `n` calls took, after `warm` calls not counted."""
    for _ in range(warm):
        call()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return times


def raw_echo(conn) -> None:
    """The raw floor's far end: echo each message, count the one-way ones."""
    count = 0
    while True:
        data = conn.recv_bytes()
        if data == b"stop":
            return
        if data == b"count":
            conn.send_bytes(cloudpickle.dumps(count))
            continue
        message = cloudpickle.loads(data)
        if isinstance(message, dict) and message.get("oneway"):
            count += 1
            continue
        conn.send_bytes(cloudpickle.dumps(message))


def idle_child(conn) -> None:
    """A process that says it is up, then idles until told to go."""
    conn.send_bytes(b"up")
    conn.recv_bytes()


class Echo(Agent):
    """Echoes asks, counts one-way tells; "pid" and "count" answer those."""

    def on_start(self):
        self.count = 0

    def on_receive(self, message):
        if message == "count":
            return self.count
        if message == "pid":
            return os.getpid()
        if isinstance(message, dict) and message.get("oneway"):
            self.count += 1
            return None
        return message

    def ask_peer(self, peer, n):
        return timed(lambda: peer.ask(MESSAGE), n)
