"""Services run a message on the thread that read it when idle: still one at a time, in order."""

from __future__ import annotations

import threading

import pytest
from pykka import ThreadingFuture
from pykka._envelope import Envelope
from pykka.messages import ProxyCall

from actors import Agent, AskTimeout, EventType
from conftest import wait_for
from actors._base import ActorBase
import actors._deferral
from actors._deferral import carry_deferred, defer_tells, run_deferred
from runtime.local._inline import inline_hosted
from runtime.wire._future import local_waiter


class Worker(Agent):
    def bump(self, key, n):
        for _ in range(n):
            self.ctx.state.update("shared", key, lambda v: (v or 0) + 1)
        return n

    def take_and_give(self, sem_id, n):
        semaphore = self.ctx.sync.get_semaphore(sem_id, 1)
        taken = 0
        for _ in range(n):
            # release is a tell: were it overtaken by the next acquire, the
            # permit would still be held and acquire(timeout=0) would fail.
            taken += semaphore.acquire(timeout=0)
            semaphore.release()
        return taken


def test_a_senders_tell_is_never_overtaken_by_its_next_ask(rt):
    worker = rt.spawn(Worker, "w")
    assert worker.proxy().take_and_give("one", 300).get(timeout=120) == 300


def test_agents_and_the_runtimes_own_threads_updating_at_once_lose_nothing(rt):
    # Agents' requests may run in the runtime's reader threads, the runtime's
    # own calls in the store's thread: both must see every other write.
    workers = [rt.spawn(Worker, f"w{i}") for i in range(3)]
    futures = [w.proxy().bump("shared-count", 150) for w in workers]

    def bump_here():
        for _ in range(150):
            rt.state.update("shared", "shared-count", lambda v: (v or 0) + 1)

    threads = [threading.Thread(target=bump_here) for _ in range(2)]
    for thread in threads:
        thread.start()
    assert [f.get(timeout=120) for f in futures] == [150] * 3
    for thread in threads:
        thread.join(120)
    assert rt.state.get("shared", "shared-count") == 5 * 150


def test_locks_nobody_contends_for_cost_no_thread(rt):
    before = threading.active_count()
    for i in range(50):
        with rt.sync.get_lock(f"lone-{i}"):
            pass
    assert threading.active_count() - before < 10  # not one per lock


def test_a_contended_lock_queues_its_waiters_and_grants_each_in_turn(rt):
    lock = rt.sync.get_lock("contended")
    assert lock.acquire("first", timeout=5)
    granted = []

    def take_turn(name):
        if lock.acquire(name, timeout=60):
            granted.append(name)
            lock.release(name)

    waiters = [threading.Thread(target=take_turn, args=(f"w{i}",)) for i in range(3)]
    for waiter in waiters:
        waiter.start()
    lock.release("first")
    for waiter in waiters:
        waiter.join(90)
    assert sorted(granted) == ["w0", "w1", "w2"]
    assert lock.holder() is None


class Recorder(ActorBase):
    """A service whose `note` can be held up (`gate`) while a test looks."""

    runs_inline = True

    def __init__(self, gate: threading.Event) -> None:
        super().__init__()
        self.gate = gate
        self.notes: list[str] = []

    def note(self, text):
        self.gate.wait(60)
        self.notes.append(text)

    def read(self):
        return list(self.notes)


class Front(ActorBase):
    """A service whose handler tells the recorder, then answers."""

    runs_inline = True

    def __init__(self, recorder) -> None:
        super().__init__()
        self.recorder = recorder

    def handle(self, text):
        self.recorder.tell(ProxyCall(("note",), (text,), {}))
        return f"handled {text}"


def test_a_reader_answers_before_the_tells_its_handler_sent_and_later_asks_still_see_them():
    gate = threading.Event()
    recorder = inline_hosted(Recorder).start(gate)
    front = inline_hosted(Front).start(recorder)
    try:
        reply = ThreadingFuture()
        reader = threading.Thread(  # as a connection's reader thread delivers an ask from another process
            target=front.actor_inbox.put_from_reader,
            args=(Envelope(ProxyCall(("handle",), ("first",), {}), reply_to=reply),))
        reader.start()
        assert reply.get(timeout=30) == "handled first"  # answered while the recorder is held up
        asked_later = recorder.ask(ProxyCall(("read",), (), {}), block=False)
        gate.set()
        assert asked_later.get(timeout=30) == ["first"]  # queued behind the deferred tell
        reader.join(30)
        for n in range(5):  # a spare wake-up token left behind is harmless
            recorder.tell(ProxyCall(("note",), (f"more {n}",), {}))
        assert recorder.ask(ProxyCall(("read",), (), {}), timeout=30) == ["first"] + [f"more {n}" for n in range(5)]
    finally:
        front.stop()
        recorder.stop()


class Finisher(Agent):
    capabilities = ["work"]

    def do_work(self, task):
        return task["payload"] * 2

    def run(self, task_id, n):
        return self.execute_task({"id": task_id, "type": "work", "payload": n})


def test_a_tasks_records_and_events_are_there_as_soon_as_its_agent_answers(rt):
    # The sync manager answers an agent's task end before the store and the
    # bus handle its records and events (`put_from_reader`): whoever hears
    # from the agent next must still find them.
    agent = rt.spawn(Finisher, "finisher").proxy()
    for n in range(200):
        assert agent.run(f"quick-{n}", n).get(timeout=30) == 2 * n
        assert rt.state.get("shared", f"task:quick-{n}:result") == 2 * n
        assert rt.state.get("shared", f"task:quick-{n}:status") == "completed"
        [last] = rt.events.get_history(event_type=EventType.TASK_COMPLETED, limit=1)
        assert last.payload == {"task_id": f"quick-{n}", "result": 2 * n}


class Note(ActorBase):
    """A service that appends to a list its test reads directly."""

    runs_inline = True

    def __init__(self, notes: list) -> None:
        super().__init__()
        self.notes = notes

    def note(self, text):
        self.notes.append(text)


class Parker(ActorBase):
    """A service that tells `Note`, then keeps its reply for later."""

    runs_inline = True

    def __init__(self, note) -> None:
        super().__init__()
        self.note = note
        self.reply = None

    def handle(self, text):
        self.note.tell(ProxyCall(("note",), (text,), {}))
        self.reply = self._defer_reply()

    def answer(self):
        self.reply.set("answered")


def test_a_thread_deferring_its_tells_runs_them_before_it_waits_for_an_answer():
    notes = []
    note = inline_hosted(Note).start(notes)
    parker = inline_hosted(Parker).start(note)
    try:
        assert defer_tells()
        pending = parker.ask(ProxyCall(("handle",), ("started",), {}), block=False)
        assert notes == []  # queued, not run: the thread could send something else first
        with pytest.raises(AskTimeout):
            local_waiter(pending, "parker")(0.01)  # ran what it deferred before it waited
        assert notes == ["started"]
        run_deferred()
        parker.tell(ProxyCall(("answer",), (), {}))
        assert local_waiter(pending, "parker")(30) == "answered"
    finally:
        run_deferred()
        parker.stop()
        note.stop()


def test_tells_deferred_while_the_actor_is_busy_never_strand_an_ask_queued_behind_them():
    # The actor's thread takes a token for whatever is first in the queue:
    # the ask's token may go to a deferred tell, so the deferring thread,
    # finding the actor busy, must leave a token for each envelope queued.
    gate = threading.Event()
    recorder = inline_hosted(Recorder).start(gate)
    try:
        holder = threading.Thread(target=lambda: recorder.ask(ProxyCall(("note",), ("held",), {}), timeout=60))
        holder.start()  # runs inline in that thread, and waits for the gate
        wait_for(lambda: recorder.actor_inbox._run.locked())
        assert defer_tells()
        recorder.tell(ProxyCall(("note",), ("first",), {}))
        recorder.tell(ProxyCall(("note",), ("second",), {}))
        asked = recorder.ask(ProxyCall(("read",), (), {}), block=False)  # queued behind them, with its token
        run_deferred()  # the recorder is busy: its thread must take all three
        gate.set()
        assert asked.get(timeout=30) == ["held", "first", "second"]
        holder.join(30)
    finally:
        run_deferred()
        gate.set()
        recorder.stop()


def test_an_idle_service_answers_an_ask_of_its_own_process_on_the_asking_thread():
    recorder = inline_hosted(Recorder).start(threading.Event())
    try:
        inbox = recorder.actor_inbox
        assert inbox.call(ProxyCall(("read",), (), {})) == (True, [])
        ok, error = inbox.call(ProxyCall(("no_such_method",), (), {}))
        assert not ok and isinstance(error, AttributeError)
    finally:
        recorder.stop()


def test_an_ask_answered_later_gives_its_future_and_a_busy_service_leaves_the_ask_to_its_mailbox():
    notes = []
    note = inline_hosted(Note).start(notes)
    parker = inline_hosted(Parker).start(note)
    gate = threading.Event()
    recorder = inline_hosted(Recorder).start(gate)
    try:
        pending = parker.actor_inbox.call(ProxyCall(("handle",), ("parked",), {}))
        parker.tell(ProxyCall(("answer",), (), {}))
        assert local_waiter(pending, "parker")(30) == "answered"
        holder = threading.Thread(target=lambda: recorder.ask(ProxyCall(("note",), ("held",), {}), timeout=60))
        holder.start()
        wait_for(lambda: recorder.actor_inbox._run.locked())
        assert recorder.actor_inbox.call(ProxyCall(("read",), (), {})) is None  # busy: ask as usual
        gate.set()
        holder.join(30)
    finally:
        gate.set()
        for ref in (parker, note, recorder):
            ref.stop()


def carry_a_note(ref, text):
    """Tell `ref` to note `text` from a thread that defers it, then carries it."""
    assert defer_tells()
    ref.tell(ProxyCall(("note",), (text,), {}))
    carry_deferred()


def test_tells_a_thread_carried_are_run_by_the_timer_if_it_does_not_come_back():
    notes = []
    note = inline_hosted(Note).start(notes)
    try:
        carry_a_note(note, "carried")
        wait_for(lambda: notes == ["carried"])
    finally:
        note.stop()


def test_a_message_put_behind_carried_tells_runs_them_first(monkeypatch):
    monkeypatch.setattr(actors._deferral, "CARRY", 60.0)  # only the put may run them
    gate = threading.Event()
    gate.set()
    recorder = inline_hosted(Recorder).start(gate)
    try:
        carry_a_note(recorder, "carried")
        read = []
        reader = threading.Thread(target=lambda: read.append(recorder.ask(ProxyCall(("read",), (), {}), timeout=30)))
        reader.start()
        reader.join(30)
        assert read == [["carried"]]
    finally:
        recorder.stop()


def test_a_thread_takes_up_its_carried_tells_when_it_defers_again(monkeypatch):
    monkeypatch.setattr(actors._deferral, "CARRY", 60.0)
    notes = []
    note = inline_hosted(Note).start(notes)
    try:
        carry_a_note(note, "first")
        assert defer_tells()
        note.tell(ProxyCall(("note",), ("second",), {}))
        assert notes == []
        run_deferred()
        assert notes == ["first", "second"]
    finally:
        run_deferred()
        note.stop()
