"""The design's multi-agent walkthrough, in this framework.

Agents with capabilities join a MultiAgentSystem, tasks are routed to
capable agents, an agent asks a peer for its status, one agent is removed,
and shared state and the event history show what happened.

Run:  python examples/seed_chapter.py
"""

from actors import Agent, EventType
from runtime import MultiAgentSystem


class Analyst(Agent):
    """A coordinated agent whose work is real: it sums and averages data."""

    def do_work(self, task):
        data = task["payload"]["data"]
        return {"status": "completed", "output": {"sum": sum(data), "mean": sum(data) / len(data)}}


def main():
    with MultiAgentSystem() as system:
        print("=== Multi-agent system ===")
        system.add_agent("agent_1", ["compute", "analysis"], agent_cls=Analyst)
        system.add_agent("agent_2", ["compute"])
        system.add_agent("agent_3", ["storage"])
        for agent_id in system.agents:
            status = system.agents[agent_id].proxy().get_status().get(timeout=10)
            print(f"Added agent {agent_id} with capabilities {status['capabilities']}")

        print("\n=== Task submission ===")
        tasks = [
            {"id": "task_1", "type": "analysis", "payload": {"data": [1, 2, 3, 4]}},
            {"id": "task_2", "type": "compute", "payload": {"data": [10, 20]}},
            {"id": "task_3", "type": "storage", "payload": {"data": [7]}},
        ]
        for task in tasks:
            result = system.submit_task(task)
            completed = system.state.get("shared", f"task:{task['id']}:completed")
            print(f"{task['id']} ({task['type']}): {result['status']} -> {result['output']} (completed={completed})")

        print("\n=== Peer status request ===")
        peer_status = system.agents["agent_1"].proxy().request_peer("agent_2", "get_status").get(timeout=10)
        print(f"agent_1 asked agent_2: {peer_status}")

        print("\n=== Removing an agent ===")
        print(f"Active agents: {system.state.get('shared', 'active_agents')}")
        system.remove_agent("agent_3")
        print("Removed agent_3")
        print(f"Remaining agents: {sorted(system.agents)}")

        print("\n=== Event history ===")
        for event_type in (EventType.AGENT_JOINED, EventType.TASK_COMPLETED, EventType.AGENT_LEFT):
            events = system.events.get_history(event_type)
            print(f"{event_type.name}: {len(events)} event(s) from {sorted({e.source for e in events})}")


if __name__ == "__main__":
    main()
