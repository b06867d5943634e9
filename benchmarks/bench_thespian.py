"""The Thespian actor used by bench_all.py (in a module of its own, so
Thespian's processes can import it)."""

import os

from thespian.actors import Actor


class TEcho(Actor):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.count = 0

    def receiveMessage(self, message, sender):
        if message == "pid":
            self.send(sender, os.getpid())
        elif message == "count":
            self.send(sender, self.count)
        elif isinstance(message, dict) and message.get("oneway"):
            self.count += 1
        elif isinstance(message, dict):
            self.send(sender, message)
