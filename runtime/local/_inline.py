"""Service actors of the runtime's process run a message on the thread that sends it.

A request from an agent to a service (a state write, a lock) used to cost
two wake-ups in the runtime's process: the connection's reader thread, then
the service actor's thread it handed the message to; a call from the
runtime's own thread (`rt.state.get`) cost a wake-up of the service's
thread and one back. When the service is idle (nothing queued, nothing
running), whoever puts a message in its mailbox (a reader thread, the
runtime's thread, another actor, the timer thread) now runs it at once.
Otherwise the message is queued and the actor's own thread takes it, as
before.

Actors are still handled one message at a time, in order: whoever handles
a message of an actor (its own thread, or a reader) holds the actor's
`_run` lock, and the actor's thread takes a message off the queue only
under that lock, so a reader finds the queue empty only when no earlier
message is waiting or in flight.

A request from another process is answered before the tells its handler
sent to other such actors run (`InlineInbox.put_from_reader`): the sync
manager's answer to a task's end goes out, then the reader thread writes
the task's records in the store and its events on the bus, while the
agent already runs its next step. Each tell is in its actor's queue
before the reply leaves, so anything put there later, by anyone, still
comes after it.

A thread may also leave its deferred tells queued past its return (the
task router's end of a task, carried into its next task:
`actors._deferral.carry_deferred`). Whoever next finds the actor idle with
envelopes queued runs them first, so a message put behind them never
waits for the timer that would otherwise run them.

An ask from this process to an idle actor (`InlineInbox.call`) is answered
on the asking thread without a reply future: only a handler that keeps its
reply for later (`_defer_reply`) gets one made.

Only actors that say `runs_inline` are hosted so: their handlers are short
and send nothing to other processes but replies, so which thread ran a
handler changes nothing anybody can see (tells from one actor to another
process would otherwise leave through different connections, in no
guaranteed order). Locks between actors are only ever tried, never waited
for, so running one actor's message inside another's can't deadlock where
the actors themselves wouldn't (two actors asking each other at once).
"""

from __future__ import annotations

import functools
import queue
import sys
import threading
from typing import Any, cast

import pykka
from pykka._envelope import Envelope

from actors._base import Deliver, DequeInbox
from actors._deferral import defer_tells, deferring, run_deferred

__all__ = ["InlineHost", "InlineInbox", "inline_hosted"]

_WAKE = Deliver("", ())  # a message that does nothing: wakes a thread whose actor was stopped inline


class InlineInbox(DequeInbox):
    """The mailbox of an `InlineHost` actor (see the module's docstring).

    Invariants: `_run` is held by whoever is handling a message of the
    actor, and envelopes leave `_queue` only under it; `_ready` holds a
    wake-up token for each envelope the actor's thread must take (a C
    queue: the cheapest way to wake it), and maybe spare ones (for
    envelopes another thread ran itself, see `_run_deferred`); a deferred
    tell has no token until the thread that deferred it finds the actor
    busy; the actor's
    thread exists once a message had to be queued (`_thread`), and not
    before.
    """

    __slots__ = ("_actor", "_holding", "_ready", "_run", "_start_lock", "_thread")

    def __init__(self, actor: InlineHost) -> None:
        super().__init__()
        self._ready: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._run = threading.Lock()
        self._run.acquire()  # until on_start is done: nothing runs before it
        self._holding = False  # whether the actor's thread holds `_run` (released at its next get())
        self._actor = actor
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def started(self) -> None:
        """`on_start` has run: messages may be handled from now on."""
        self._run.release()

    def _enqueue(self, envelope: Any) -> None:
        self._queue.append(envelope)
        self._enqueue_wake()

    def call(self, message: Any) -> tuple[bool, Any] | pykka.Future[Any] | None:
        """A blocking ask from this process, handled here if the actor is idle.

        Its outcome `(ok, value)`; or, if the handler took its reply to
        answer later (`_defer_reply`: a lock that parks, a commit to
        come), the future to wait on; or None if the actor is busy or
        stopped (then the asker asks as usual). What `put` does with an
        ask, without an envelope or a future made for a reply given at once.
        """
        if not self._run.acquire(blocking=False):
            return None
        actor = self._actor
        try:
            if self._queue:
                self._drain(actor)
            if actor.actor_stopped.is_set():
                return None
            asked = _Asked(message, actor)
            self.current = cast("Envelope[Any]", asked)  # what a handler reads of it, `_Asked` has
            try:
                outcome: tuple[bool, Any] = (True, actor._handle_receive(message))
            except Exception as exc:  # noqa: BLE001 - the asker raises it, as `_handle` would have it
                outcome = (False, exc)
            if actor.actor_stopped.is_set() and self._thread is not None:
                self._enqueue(Envelope(_WAKE))  # its thread must leave get() to see it stopped
            return asked.taken or outcome
        finally:
            self._run.release()

    def _drain(self, actor: Any) -> None:
        # Under `_run`, the actor idle: what is queued goes first, here:
        # tells a thread deferred or carried (`actors._deferral`), or
        # envelopes the actor's thread has yet to take (it then finds its
        # tokens spare). A tell carried past its sender's return must not
        # wait for the timer behind a message put now.
        queue = self._queue
        while queue and not actor.actor_stopped.is_set():
            self.current = queued = queue.popleft()  # taken only under `_run`: it is there
            _handle(actor, queued)

    def put(self, envelope: Envelope[Any], /) -> None:
        """Run `envelope` in the calling thread if the actor is idle (after
        what is queued there already, see `_drain`), else queue it.

        A tell from a thread that defers its tells (`defer_tells`: a
        connection's reader running a handler, see `put_from_reader`, or
        the task router sending a chunk) is queued now, in order, and run
        when that thread runs what it deferred."""
        deferred = deferring()
        if deferred is not None and envelope.reply_to is None:
            self._queue.append(envelope)  # no wake-up token: the deferring thread runs it (`_run_deferred`)
            if self not in deferred:
                deferred.append(self)
            return
        if not self._run.acquire(blocking=False):
            self._enqueue(envelope)
            return
        actor = self._actor
        try:
            if self._queue:
                self._drain(actor)
            if actor.actor_stopped.is_set():
                self._enqueue(envelope)  # to be refused: the actor's thread takes it
                return
            self.current = envelope
            _handle(actor, envelope)
            if actor.actor_stopped.is_set() and self._thread is not None:
                self._enqueue(Envelope(_WAKE))  # its thread must leave get() to see it stopped
        finally:
            self._run.release()

    def put_from_reader(self, envelope: Envelope[Any], /) -> None:
        """`put` by a connection's reader thread: the tells the handler
        sends to inline actors (the sync manager's records to the store,
        its events to the bus) run after it returned, so the asker in the
        other process has its reply (written when the handler returned)
        while this process does the rest.

        Nobody can see the difference: each tell is in its actor's queue,
        in order, before the reply leaves, and a message that anyone puts
        in that queue afterwards is queued behind it (`put` finds the queue
        not empty), so whoever acts on the reply reads what the tells
        wrote. An ask a handler sends is never deferred (it would wait for
        itself); it queues behind that actor's deferred tells, if any, and
        the actor's thread takes both.
        """
        if not defer_tells():  # a reader's handler put this (can't be: readers don't nest)
            self.put(envelope)
            return
        try:
            self.put(envelope)
        finally:
            run_deferred()

    def _run_deferred(self) -> None:
        """Run what is queued, here, as `put` does; or, if the actor is
        busy (its thread, or another thread's inline run) or stopped, see
        that its thread takes it."""
        actor = self._actor
        while self._queue:
            if not self._run.acquire(blocking=False):
                # A token for every envelope queued: this thread may have
                # deferred several, and the actor's thread may take the
                # token of an ask behind them for one of them. Spare ones
                # cost the thread a look at an empty queue; one too few
                # would leave an envelope there for good.
                self._enqueue_wake(len(self._queue))
                return
            try:
                if actor.actor_stopped.is_set():
                    self._enqueue_wake(len(self._queue))
                    return
                envelope = self._queue.popleft()  # only ever taken under `_run`: it is there
                self.current = envelope
                _handle(actor, envelope)
            finally:
                self._run.release()

    def _enqueue_wake(self, tokens: int = 1) -> None:
        # Wake-up tokens for what is queued already (`get` skips spare ones).
        for _ in range(tokens):
            self._ready.put(None)
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = self._actor._start_thread()

    def get(self) -> Any:
        """The actor's own thread: the next queued envelope, taken under `_run`.

        A token may outnumber the envelopes (one that another thread ran
        inline, see `_run_deferred`): then the thread waits again."""
        if self._holding:
            self._holding = False
            self._run.release()
        while True:
            if not self._queue:
                self._idle()
            self._ready.get()
            self._run.acquire()
            if self._queue:
                break
            self._run.release()
        self._holding = True
        envelope = self._queue.popleft()
        self.current = envelope
        return envelope


class _Asked:
    """The envelope of an ask handled by `InlineInbox.call`: its reply
    future is made only if the handler takes it (`_defer_reply`), which
    leaves it in `taken`."""

    __slots__ = ("_actor", "_reply", "message", "taken")

    def __init__(self, message: Any, actor: Any) -> None:
        self.message = message
        self._actor = actor
        self._reply: pykka.Future[Any] | None = None
        self.taken: pykka.Future[Any] | None = None

    @property
    def reply_to(self) -> pykka.Future[Any] | None:
        if self._reply is None and self.taken is None:
            self._reply = self._actor._create_future()
        return self._reply

    @reply_to.setter
    def reply_to(self, value: pykka.Future[Any] | None) -> None:
        if value is None:
            self.taken = self._reply
        self._reply = value


def _handle(actor: Any, envelope: Envelope[Any]) -> None:
    # What pykka's actor loop does with one envelope, here in the sending thread.
    try:
        response = actor._handle_receive(envelope.message)
        if envelope.reply_to is not None:
            envelope.reply_to.set(response)
    except Exception:  # noqa: BLE001 - any error goes to the asker, or to the failure hooks
        if envelope.reply_to is not None:
            envelope.reply_to.set_exception()
        else:
            actor._handle_failure(*sys.exc_info())
            try:
                actor.on_failure(*sys.exc_info())
            except Exception:  # noqa: BLE001 - as pykka's loop does
                actor._handle_failure(*sys.exc_info())


class InlineHost(pykka.Actor):
    """Mixin placed before a `runs_inline` service class in the runtime's process.

    `__init__` and `on_start` run in the thread that starts the actor; each
    message in the thread that put it in the mailbox, when the actor is
    idle, or else in the actor's own thread. That thread is started only
    when a message first has to wait: a lock nobody contends for never
    costs one.
    """

    actor_inbox: InlineInbox

    def _create_actor_inbox(self) -> InlineInbox:  # type: ignore[override]
        return InlineInbox(self)

    def _start_actor_loop(self) -> None:
        self._actor_loop_setup()  # on_start, here
        self.actor_inbox.started()

    def _start_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self._thread_loop, name=f"{type(self).__name__}-inline", daemon=True)
        thread.start()
        return thread

    def _thread_loop(self) -> None:
        # pykka's loop, less the setup already done in `_start_actor_loop`.
        self._actor_loop_running()
        self._actor_loop_teardown()


@functools.cache
def inline_hosted(cls: type[pykka.Actor]) -> type[pykka.Actor]:
    """`cls` itself, or `cls` hosted by `InlineHost` if it `runs_inline`."""
    if not getattr(cls, "runs_inline", False):
        return cls
    return type(cls.__name__, (InlineHost, cls), {"__module__": cls.__module__, "__qualname__": cls.__qualname__})
