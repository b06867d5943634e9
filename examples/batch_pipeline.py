"""A batch pipeline: a few thousand items through a pool of agents.

`rt.map` spreads the items over every capable agent, keeps a bounded
number in flight, shows a progress bar, and returns results in input
order; `rt.imap` does the same lazily for inputs larger than memory.

Run:  python examples/batch_pipeline.py
"""

import hashlib

from actors import Agent
from runtime import Runtime


class Hasher(Agent):
    capabilities = ["hash"]

    def do_work(self, task):
        text = task["payload"]
        return hashlib.sha256(text.encode()).hexdigest()[:12]


if __name__ == "__main__":
    items = [f"document-{i}" for i in range(2000)]
    with Runtime() as rt:
        for i in range(3):
            rt.spawn(Hasher, f"hasher-{i}")
        digests = rt.map("hash", items, progress=True)
        print(f"hashed {len(digests)} items; first {digests[0]}, last {digests[-1]}")
        assert digests[0] == hashlib.sha256(items[0].encode()).hexdigest()[:12]
        lazily = sum(1 for _ in rt.imap("hash", (f"stream-{i}" for i in range(500)), ordered=False))
        print(f"streamed {lazily} more through imap, as they completed")
