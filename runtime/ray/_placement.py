"""Where the Ray backend puts its actors, and how it tells a node was lost.

Agents are spread over the cluster's live nodes: each new host goes to the
node running the fewest of this runtime's agents (Ray's own "SPREAD" counts
resources, and an agent's host reserves none, so it piles them up on one
node). `spawn(..., node=...)` pins an agent to one node, `resources=` asks
for Ray custom resources (then Ray picks among the nodes that have them).
A restart after the agent's node was lost goes to the least loaded
surviving node. The node is always chosen here and given to Ray as a hard
affinity: Ray's soft affinity is not kept for actors that reserve no
resources (it sends some elsewhere even when the node is there).

The services host is pinned (hard affinity) to the node of the runtime's
own process: the two share fate, and the runtime's many calls to its
services stay on one machine.

Runs in the runtime's process only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Placement", "alive_nodes", "check_placement", "lost_node_reason", "services_options"]


def alive_nodes(ray: Any) -> list[str]:
    """Ids of the cluster's live nodes, in Ray's order (one call to the GCS)."""
    return [n["NodeID"] for n in ray.nodes() if n.get("Alive")]


def _affinity(ray: Any, node: str, *, soft: bool) -> Any:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # noqa: PLC0415 - Ray is optional

    return NodeAffinitySchedulingStrategy(node_id=node, soft=soft)


def services_options(ray: Any) -> dict[str, Any]:
    """Ray actor options pinning the services host to this process's node."""
    return {"scheduling_strategy": _affinity(ray, ray.get_runtime_context().get_node_id(), soft=False)}


@dataclass(frozen=True)
class Placement:
    """Where one agent's hosts go: a node (pinned), custom resources, or spread."""

    node: str | None = None
    resources: Mapping[str, float] | None = None

    def options(self, ray: Any, busy: Iterable[str], *, restart: bool) -> dict[str, Any]:
        """Ray actor options for the agent's next host.

        `busy`: the nodes of this runtime's running agents, one entry per
        agent. `restart`: the previous host ended, perhaps with its node.
        """
        opts: dict[str, Any] = {}
        if self.resources:
            opts["resources"] = dict(self.resources)
            if self.node is None:
                opts["scheduling_strategy"] = "SPREAD"  # only Ray knows which nodes have them
                return opts
        nodes = alive_nodes(ray)
        if self.node is not None and (not restart or self.node in nodes):
            target = self.node
        elif nodes:
            load = Counter(busy)
            target = min(nodes, key=lambda n: load[n])
        else:
            return opts  # the GCS knows no live node: let Ray decide
        opts["scheduling_strategy"] = _affinity(ray, target, soft=False)
        return opts


def check_placement(ray: Any, node: str | None, resources: Mapping[str, float] | None) -> Placement:
    """Validate `spawn`'s placement arguments; `node` must be a live node's id."""
    if node is not None:
        if not isinstance(node, str):
            msg = f"node must be a Ray node id (str), got {node!r}"
            raise TypeError(msg)
        alive = alive_nodes(ray)
        if node not in alive:
            msg = f"no live Ray node with id {node!r}; live nodes: {', '.join(alive)}"
            raise ValueError(msg)
    if resources is not None:
        if not isinstance(resources, Mapping) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and v > 0 for k, v in resources.items()
        ):
            msg = f"resources must map Ray resource names (str) to positive amounts, got {resources!r}"
            raise ValueError(msg)
        resources = dict(resources)
    return Placement(node, resources)


def lost_node_reason(ray: Any, node: str | None, error: BaseException | None) -> str | None:
    """"crashed: node <id> lost" if the host ended because `node` is gone, else None.

    Ray's own error says so when it knows (`ActorDiedError`: "its node has
    died"); else the node table is asked."""
    if node is None:
        return None
    if error is not None and "node has died" in str(error):
        return f"crashed: node {node} lost"
    try:
        if node not in alive_nodes(ray):
            return f"crashed: node {node} lost"
    except Exception:  # noqa: BLE001 - the GCS is unreachable: say nothing more
        pass
    return None
