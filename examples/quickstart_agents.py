"""Agents for examples/quickstart.toml: a small team sharing state."""

from actors import Agent


class Summer(Agent):
    """Adds numbers, and keeps a running total in shared state."""

    capabilities = ["compute"]

    def on_start(self):
        self.ctx.state.update("shared", "sum_runs", lambda n: (n or 0))

    def do_work(self, task):
        total = sum(task["payload"]["data"])
        runs = self.ctx.state.update("shared", "sum_runs", lambda n: (n or 0) + 1)
        return {"status": "completed", "output": total, "by": self.agent_id, "runs_so_far": runs}


class Writer(Agent):
    """Turns words into a title, asking a compute peer to count them."""

    capabilities = ["text"]

    def do_work(self, task):
        words = task["payload"]["words"]
        counted = self.request_peer(
            "summer-0", "execute_task",
            {"id": f"{task['id']}-count", "type": "compute", "payload": {"data": [len(w) for w in words]}},
        )
        return {"status": "completed", "output": " ".join(w.title() for w in words), "letters": counted["output"]}
