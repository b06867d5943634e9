"""The Ray backend on a two-node Ray cluster, beside Ray's own actor calls.

    python benchmarks/bench_ray_cluster.py [--quick] [--json]

A `ray.cluster_utils.Cluster` (a head node and a worker node, two raylets
on this machine, bound to 127.0.0.1; the driver is on the head) runs:

- ask latency agent->agent within a node (head->head) and across nodes
  (head->worker), and runtime->agent, each beside the same call between
  plain Ray actors (`ray.get(actor.echo.remote(msg))`) placed alike;
- `map` throughput with 4 agents, 2 on each node, beside 4 plain Ray actors
  fed the same payloads round-robin (`ray.get` of all the calls);
- node loss: the worker node (with 3 agents on it) removed; the time until
  their pending asks fail, and until all 3, restarted on the head, answer.

Both nodes share this machine's cores: "across nodes" adds Ray's
inter-raylet path, not a network.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ray
from bench_agents import MESSAGE, timed
from bench_messaging import p99, parse_args
from ray._private import services
from ray.cluster_utils import Cluster
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as pin_to

from actors import ActorDeadError, Agent
from runtime import Runtime

NODE_ARGS = {"num_cpus": 2, "node_ip_address": "127.0.0.1"}


class Echo(Agent):
    capabilities = ["compute"]

    def on_receive(self, message):
        if isinstance(message, tuple) and message[0] == "sleep":
            time.sleep(message[1])
        return message

    def do_work(self, task):
        return {"status": "completed", "output": task["payload"]}

    def ask_times(self, ref, n: int, warm: int = 100) -> list[float]:
        for _ in range(warm):
            ref.ask(MESSAGE, timeout=60)
        times = []
        for _ in range(n):
            t = time.perf_counter()
            ref.ask(MESSAGE, timeout=60)
            times.append(time.perf_counter() - t)
        return times


@ray.remote(num_cpus=0)
class RayEcho:
    def echo(self, message):
        return message

    def work(self, payload):
        return {"status": "completed", "output": payload}

    def call_times(self, other, n: int, warm: int = 100) -> list[float]:
        for _ in range(warm):
            ray.get(other.echo.remote(MESSAGE))
        times = []
        for _ in range(n):
            t = time.perf_counter()
            ray.get(other.echo.remote(MESSAGE))
            times.append(time.perf_counter() - t)
        return times


def _us(times: list[float]) -> dict[str, float]:
    return {"median_us": round(statistics.median(times) * 1e6, 1), "p99_us": round(p99(times) * 1e6, 1)}


def start_cluster() -> Cluster:
    cluster = Cluster(initialize_head=True, head_node_args={**NODE_ARGS, "include_dashboard": False})
    cluster.add_node(**NODE_ARGS)
    resolve = services.resolve_ip_for_localhost
    services.resolve_ip_for_localhost = lambda host: host  # keep 127.0.0.1 (ray.init rewrites it)
    try:
        ray.init(address=cluster.address, _node_ip_address="127.0.0.1", include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    finally:
        services.resolve_ip_for_localhost = resolve
    return cluster


def latencies(rt, head: str, worker: str, n: int) -> dict[str, dict[str, float]]:
    a = rt.spawn(Echo, "a", node=head)
    near = rt.spawn(Echo, "near", node=head)
    far = rt.spawn(Echo, "far", node=worker)
    ra = RayEcho.options(scheduling_strategy=pin_to(head, soft=False)).remote()
    rnear = RayEcho.options(scheduling_strategy=pin_to(head, soft=False)).remote()
    rfar = RayEcho.options(scheduling_strategy=pin_to(worker, soft=False)).remote()
    out = {
        "runtime->agent (head)": _us(timed(lambda: near.ask(MESSAGE, timeout=60), n)),
        "ray driver->actor (head)": _us(timed(lambda: ray.get(rnear.echo.remote(MESSAGE)), n)),
        "agent->agent within a node": _us(a.proxy().ask_times(near, n).get(timeout=300)),
        "ray actor->actor within a node": _us(ray.get(ra.call_times.remote(rnear, n))),
        "agent->agent across nodes": _us(a.proxy().ask_times(far, n).get(timeout=300)),
        "ray actor->actor across nodes": _us(ray.get(ra.call_times.remote(rfar, n))),
    }
    for actor in (ra, rnear, rfar):
        ray.kill(actor)
    for name in ("a", "near", "far"):
        rt.remove_agent(name)
    return out


def throughput(rt, head: str, worker: str, n: int) -> dict[str, float]:
    for i, node in enumerate((head, head, worker, worker)):
        rt.spawn(Echo, f"m{i}", node=node)
    payloads = list(range(n))
    rt.map("compute", payloads[:200])  # warm
    t = time.perf_counter()
    results = rt.map("compute", payloads)
    framework = n / (time.perf_counter() - t)
    assert [r["output"] for r in results] == payloads
    actors = [RayEcho.options(scheduling_strategy=pin_to(node, soft=False)).remote()
              for node in (head, head, worker, worker)]
    ray.get([actors[i % 4].work.remote(p) for i, p in enumerate(payloads[:200])])
    t = time.perf_counter()
    ray.get([actors[i % 4].work.remote(p) for i, p in enumerate(payloads)])
    plain = n / (time.perf_counter() - t)
    for actor in actors:
        ray.kill(actor)
    for i in range(4):
        rt.remove_agent(f"m{i}")
    return {"map tasks/s (4 agents, 2 per node)": round(framework),
            "ray actor calls/s (4 actors, 2 per node)": round(plain)}


def node_loss(rt, cluster: Cluster, worker_node) -> dict[str, float]:
    refs = [rt.spawn(Echo, f"lost{i}", node=worker_node.node_id) for i in range(3)]
    pending = [ref.ask(("sleep", 300), block=False) for ref in refs]
    time.sleep(0.5)  # let the sleeps begin
    t = time.perf_counter()
    cluster.remove_node(worker_node)
    for future in pending:
        try:
            future.get(timeout=300)
        except ActorDeadError:
            pass
    failed = time.perf_counter() - t
    for ref in refs:
        while True:
            try:
                ref.ask("x", timeout=10)
                break
            except ActorDeadError:
                time.sleep(0.02)
    answered = time.perf_counter() - t
    return {"pending asks failed after s": round(failed, 3), "3 agents answering again after s": round(answered, 3)}


def main() -> None:
    args = parse_args(__doc__)
    n = 200 if args.quick else 2000
    started = time.perf_counter()
    cluster = start_cluster()
    try:
        worker_node = next(iter(cluster.worker_nodes))
        head, worker = cluster.head_node.node_id, worker_node.node_id
        with Runtime(backend="ray") as rt:
            report = {
                "latency": latencies(rt, head, worker, n),
                "throughput": throughput(rt, head, worker, 2000 if args.quick else 20000),
                "node loss": node_loss(rt, cluster, worker_node),
            }
    finally:
        ray.shutdown()
        cluster.shutdown()
    report["wall_s"] = round(time.perf_counter() - started, 1)
    if args.json:
        print(json.dumps(report))
        return
    for section, figures in report.items():
        if isinstance(figures, dict):
            print(f"{section}:")
            for name, value in figures.items():
                print(f"  {name:42} {value}")
    print(f"wall time {report['wall_s']} s")


if __name__ == "__main__":
    main()
