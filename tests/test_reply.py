"""Replies: an asker that doesn't read its replies can't stall who answers it."""

from __future__ import annotations

import threading

from actors import Agent

BIG = "x" * 4000


class Answerer(Agent):
    def big(self):
        return BIG

    def on_receive(self, message):
        return message


def ask_from_another_thread(ref, message):
    answer = []
    thread = threading.Thread(target=lambda: answer.append(ref.ask(message, timeout=30)))
    thread.start()
    thread.join(60)
    return answer


def test_replies_nobody_reads_yet_do_not_stall_the_agent_answering_them(rt):
    a = rt.spawn(Answerer, "a")
    proxy = a.proxy()
    unread = [proxy.big() for _ in range(500)]  # 2 MB of replies this thread doesn't read yet
    assert ask_from_another_thread(a, "still there?") == ["still there?"]
    assert [f.get(timeout=60) for f in unread] == [BIG] * 500  # and none of them was lost
