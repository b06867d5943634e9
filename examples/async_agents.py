"""The design's walkthrough with async/await: agents that await peers, state and locks.

A Fetcher's `do_work` awaits a (simulated) slow call, counts its work in
shared state, and, holding a lock, awaits a Summarizer peer. Up to 20 of its
tasks interleave at their awaits. The program itself is an asyncio app that
embeds the runtime and awaits it without ever blocking its event loop.

Run:  python examples/async_agents.py
"""

import asyncio
import time

from actors import Agent
from runtime import MultiAgentSystem


class Fetcher(Agent):
    capabilities = ["fetch"]
    max_concurrency = 20  # async handlers in flight at once

    async def do_work(self, task):
        await asyncio.sleep(0.2)  # a model or HTTP call: other tasks run meanwhile
        n = await self.ctx.aio.state.update("shared", "fetched", lambda v: (v or 0) + 1)
        async with self.ctx.aio.sync.get_lock("summary"):
            summary = await self.ctx.aio.peer("summarizer").ask({"text": task["payload"]}, timeout=5)
        return {"status": "completed", "output": summary, "n": n}


class Summarizer(Agent):
    capabilities = ["summarize"]

    async def on_receive(self, message):
        await asyncio.sleep(0.01)
        return message["text"].upper()[:12]


async def main():
    with MultiAgentSystem() as system:
        system.spawn(Fetcher, "fetcher")
        system.spawn(Summarizer, "summarizer")
        aio = system.aio

        start = time.perf_counter()
        fetcher = aio.peer("fetcher").proxy()
        tasks = [{"id": f"page{i}", "type": "fetch", "payload": f"page number {i}"} for i in range(20)]
        results = await asyncio.gather(*(fetcher.execute_task(task) for task in tasks))
        print(f"20 fetches of 0.2 s each took {time.perf_counter() - start:.2f} s")
        print("first result:", results[0]["output"])
        print("fetched:", await aio.state.get("shared", "fetched"))
        print("map:", [r["output"] for r in await aio.map("fetch", ["one", "two"])])

        one = await aio.submit_task({"id": "solo", "type": "fetch", "payload": "a single page"})
        print("submit_task:", one["output"], "| status:", await aio.state.get("shared", "task:solo:status"))

        replies = await asyncio.gather(*(aio.peer("summarizer").ask({"text": f"hello {i}"}) for i in range(3)))
        print("concurrent asks:", replies)
        events = await aio.events.get_history(event_type="task_completed")
        print("tasks completed (events):", len(events))


if __name__ == "__main__":
    asyncio.run(main())
