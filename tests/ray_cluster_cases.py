"""The Ray backend on a real two-node Ray cluster (`ray.cluster_utils.Cluster`:
two raylets on this machine, bound to 127.0.0.1), and the loss of a node.

Not collected by itself: `test_ray_cluster` runs this module in a child
pytest process (see `child_pytest`), because Ray may end the process of a
driver whose cluster goes away (and a `Cluster` leaves signal handlers in
the process that started it), which must never be the suite's process.

One cluster serves the whole module (starting one takes seconds); it is
shut down after the last test, and no Ray process may outlive it.
"""

from __future__ import annotations

import os
import threading
import time

import psutil
import pytest

from actors import ActorDeadError, Agent, EventType
from conftest import wait_for
from runtime import Runtime

ray = pytest.importorskip("ray", reason="the Ray cluster tests need Ray (pip install ray)")

NODE_ARGS = {"num_cpus": 2, "node_ip_address": "127.0.0.1"}


def _ray_descendants() -> list[psutil.Process]:
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            cmdline = " ".join(proc.cmdline())
            if proc.status() != psutil.STATUS_ZOMBIE and ("/ray/" in cmdline or cmdline.startswith("ray::")):
                found.append(proc)
        except psutil.Error:
            continue
    return found


@pytest.fixture(scope="module")
def cluster():
    """A head node and one worker node, with this process connected to the
    head (as a driver on a real cluster's head node would be)."""
    from ray._private import services
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        pytest.fail("Ray is already initialized in this process: another module's Ray session is still up")
    cluster = Cluster(initialize_head=True, head_node_args={**NODE_ARGS, "include_dashboard": False})
    try:
        cluster.add_node(**NODE_ARGS)
        with pytest.MonkeyPatch.context() as patch:
            # ray.init turns 127.0.0.1 into this machine's outward address,
            # where a cluster bound to 127.0.0.1 does not listen.
            patch.setattr(services, "resolve_ip_for_localhost", lambda host: host)
            ray.init(address=cluster.address, _node_ip_address="127.0.0.1", include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        deadline = time.monotonic() + 30
        while _ray_descendants() and time.monotonic() < deadline:
            time.sleep(0.1)
        left = _ray_descendants()
        for proc in left:  # ours, by PID
            proc.kill()
        assert not left, f"Ray processes outlived the cluster: {[p.cmdline()[:2] for p in left]}"


@pytest.fixture
def worker_node(cluster):
    """The cluster's worker node (a fresh one if a test removed it)."""
    if not cluster.worker_nodes:
        cluster.add_node(**NODE_ARGS)
        cluster.wait_for_nodes()
    return next(iter(cluster.worker_nodes))


@pytest.fixture
def ray_rt(cluster):
    runtime = Runtime(backend="ray")
    try:
        yield runtime
    finally:
        runtime.shutdown()


class Worker(Agent):
    capabilities = ["compute"]

    def on_receive(self, message):
        if message == "node":
            return ray.get_runtime_context().get_node_id()
        if isinstance(message, tuple) and message[0] == "sleep":
            time.sleep(message[1])
            return "slept"
        return {"echo": message}

    def do_work(self, task):
        time.sleep(task["payload"].get("sleep", 0))
        return {"status": "completed", "output": task["payload"]["i"], "by": self.agent_id}

    def ask_peer(self, ref, message):
        return ref.ask(message, timeout=60)

    def hold(self, lock_id, sem_id):
        got_lock = self.ctx.sync.get_lock(lock_id).acquire(timeout=10)
        got_permit = self.ctx.sync.get_semaphore(sem_id, 1).acquire(timeout=10)
        self.ctx.state.set("shared", f"written-by-{self.agent_id}", os.getpid())
        return got_lock and got_permit


def _nodes_of(rt) -> dict[str, str]:
    return {row["name"]: row["node"] for row in rt.agent_info()}


def test_agents_spread_over_both_nodes_and_agent_info_names_each_node(ray_rt, worker_node, cluster):
    head = cluster.head_node.node_id
    assert set(ray_rt.nodes()) == {head, worker_node.node_id}
    refs = [ray_rt.spawn(Worker, f"w{i}") for i in range(4)]
    nodes = _nodes_of(ray_rt)
    assert sorted(nodes.values()) == sorted([head, head, worker_node.node_id, worker_node.node_id])
    for ref in refs:  # what agent_info says is where the agent really runs
        assert ref.ask("node", timeout=60) == nodes[ref.name]


def test_the_services_run_on_the_runtimes_own_node(ray_rt, cluster):
    head = cluster.head_node.node_id
    assert ray_rt.node == ray_rt.services_node == head
    services = ray.get_actor("services", namespace=ray_rt.namespace)
    assert ray.get(services.stats.remote(), timeout=60)["node"] == head


def test_spawn_pins_an_agent_to_a_node_and_refuses_an_unknown_one(ray_rt, worker_node):
    far = ray_rt.spawn(Worker, "far", node=worker_node.node_id)
    assert far.ask("node", timeout=60) == worker_node.node_id == _nodes_of(ray_rt)["far"]
    with pytest.raises(ValueError, match="no live Ray node with id 'nowhere'"):
        ray_rt.spawn(Worker, "lost", node="nowhere")
    with pytest.raises(ValueError, match="resources must map"):
        ray_rt.spawn(Worker, "greedy", resources={"gpu_box": -1})
    assert "lost" not in ray_rt.agents and "greedy" not in ray_rt.agents


def test_agents_on_different_nodes_ask_each_other(ray_rt, worker_node, cluster):
    near = ray_rt.spawn(Worker, "near", node=cluster.head_node.node_id)
    far = ray_rt.spawn(Worker, "far", node=worker_node.node_id)
    assert near.proxy().ask_peer(far, "hi").get(timeout=60) == {"echo": "hi"}
    assert far.proxy().ask_peer(near, "ho").get(timeout=60) == {"echo": "ho"}


def test_losing_a_node_restarts_its_agents_elsewhere_fails_their_asks_and_frees_their_locks(
    ray_rt, worker_node, cluster
):
    """It removes the worker node (`worker_node` adds a fresh one for any later test)."""
    head, lost = cluster.head_node.node_id, worker_node.node_id
    ray_rt.state.set("shared", "before", 42)
    ray_rt.spawn(Worker, "h", node=head, capabilities=["batch"])
    busy = ray_rt.spawn(Worker, "busy", node=lost)
    edge = ray_rt.spawn(Worker, "edge", node=lost, capabilities=["edge"])
    batch = ray_rt.spawn(Worker, "batch", node=lost, capabilities=["batch"])
    ray_rt.spawn(Worker, "once", node=lost, restart="temporary")
    assert busy.proxy().hold("res", "pool").get(timeout=60) is True
    running = busy.ask(("sleep", 300), block=False)
    queued = busy.ask("queued behind it", block=False)
    outcomes: dict[str, object] = {}

    def run(key, fn):
        try:
            outcomes[key] = fn()
        except Exception as exc:  # asserted below
            outcomes[key] = exc

    threads = [
        threading.Thread(target=run, args=("submit", lambda: ray_rt.submit_task(
            {"type": "edge", "payload": {"i": 7, "sleep": 2}}, retries=3))),
        threading.Thread(target=run, args=("map", lambda: ray_rt.map(
            "batch", [{"i": i, "sleep": 0.3} for i in range(8)], retries=3))),
    ]
    for thread in threads:
        thread.start()
    wait_for(lambda: {e.source for e in ray_rt.events.get_history(EventType.TASK_STARTED, limit=1000)}
             >= {"edge", "batch"}, timeout=60)

    start = time.monotonic()
    cluster.remove_node(worker_node)
    for future in (running, queued):
        with pytest.raises(ActorDeadError):
            future.get(timeout=300)
    failed_after = time.monotonic() - start
    assert failed_after < 10, "the asks should fail when the node goes, not at their timeout"

    restarted = ("busy", "edge", "batch")
    for ref in (busy, edge, batch):
        wait_for(lambda ref=ref: _answers(ref), timeout=120, interval=0.05)
    answered_after = time.monotonic() - start
    print(f"\nnode lost -> pending asks failed in {failed_after:.2f} s, "
          f"its 3 agents answering again on the head node in {answered_after:.2f} s")

    for name in (*restarted, "once"):
        left = ray_rt.events.get_history(EventType.AGENT_LEFT, source=name)
        assert left and left[-1].payload["reason"] == f"crashed: node {lost} lost"
    rows = {row["name"]: row for row in ray_rt.agent_info()}
    assert [(rows[name]["node"], rows[name]["restarts"]) for name in restarted] == [(head, 1)] * 3
    assert "once" not in ray_rt.agents  # temporary: not restarted
    assert ray_rt.sync.get_lock("res").acquire("runtime", timeout=10) is True
    assert ray_rt.sync.get_semaphore("pool", 1).available() == 1
    assert ray_rt.state.get("shared", "before") == 42
    assert isinstance(ray_rt.state.get("shared", "written-by-busy"), int)

    for thread in threads:
        thread.join(timeout=120)
    assert outcomes["submit"]["output"] == 7
    assert [r["output"] for r in outcomes["map"]] == list(range(8))


def _answers(ref) -> bool:
    try:
        return ref.ask("node", timeout=10) is not None
    except ActorDeadError:
        return False


def test_losing_the_services_is_logged_and_shutdown_still_ends_every_agent(cluster, caplog):
    """The services can't survive their node (see `runtime.ray._placement`): the
    head node can't be removed under this process, so the services host is
    killed as its node's loss would."""
    rt = Runtime(backend="ray")
    try:
        ref = rt.spawn(Worker, "w")
        host = ray.get_actor(rt._records["w"].host, namespace=rt.namespace)
        ray.kill(ray.get_actor("services", namespace=rt.namespace))
        wait_for(lambda: rt.services_lost, timeout=60)
        assert any("services host died" in r.getMessage() for r in caplog.records if r.levelname == "CRITICAL")
    finally:
        started = time.monotonic()
        rt.shutdown()
    assert time.monotonic() - started < 10
    assert not ref.is_alive()
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(host.alive.remote("w"), timeout=60)
