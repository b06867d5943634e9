"""Embed the runtime in a script: agents in processes, asks, tasks, a batch.

Run:  python examples/embedded.py
"""

import os

from actors import Agent
from runtime import Runtime


class Worker(Agent):
    capabilities = ["compute"]

    def on_start(self):  # runs in the agent's own process
        self.done = 0

    def do_work(self, task):
        self.done += 1
        return {"status": "completed", "output": sum(task["payload"]["data"])}

    def on_receive(self, message):
        return {"echo": message, "pid": os.getpid()}


if __name__ == "__main__":
    with Runtime() as rt:
        w1 = rt.spawn(Worker, "worker_1")
        rt.spawn(Worker, "worker_2")
        print("ask:", w1.ask({"op": "x"}, timeout=5)["echo"])
        print("proxy:", w1.proxy().do_work({"payload": {"data": [1, 2]}}).get(timeout=5)["output"])
        print("task:", rt.submit_task({"id": "t1", "type": "compute", "payload": {"data": [1, 2]}})["output"])
        outputs = [r["output"] for r in rt.map("compute", [{"data": [i, i]} for i in range(10)])]
        print("map:", outputs)
        print("active agents:", rt.state.get("shared", "active_agents"))
        for row in rt.agent_info():
            print(f"  {row['name']}: pid {row['pid']}, {row['rss_bytes'] / 1e6:.1f} MB, mailbox {row['mailbox']}")
