"""`runtime.ray._ref`: refs to actors of a Ray host in the sending process skip Ray."""

from __future__ import annotations

import threading

import pykka
import pytest

from actors import ActorDeadError, AskTimeout
from runtime.ray import _ref
from runtime.ray._host import Host
from runtime.ray._ref import RayRef, register_local_host


RELEASE = threading.Event()  # ends a "block"


class Tally(pykka.ThreadingActor):
    def __init__(self):
        super().__init__()
        self.seen = []

    def on_receive(self, message):
        if message == "seen":
            return list(self.seen)
        if message == "block":
            return RELEASE.wait(timeout=30)
        self.seen.append(message)
        return None


@pytest.fixture
def host(monkeypatch):
    """A `Host` registered as running in this process (as the services host
    does in its own), with Ray made unusable: any message through Ray fails."""
    monkeypatch.setattr(_ref, "_local_hosts", {})

    def no_ray():
        raise AssertionError("the message went through Ray")

    monkeypatch.setattr(_ref, "ray_module", no_ray)
    host = Host("ns-test", "services")
    register_local_host("ns-test", "services", host)
    try:
        yield host
    finally:
        pykka.ActorRegistry.stop_all()


def test_tells_and_asks_to_an_actor_of_a_host_in_this_process_go_straight_to_its_mailbox_in_order(host):
    ref = host.spawn_service(Tally, "tally")
    assert isinstance(ref, RayRef)
    for i in range(100):
        ref.tell(i)
    assert ref.ask("seen", timeout=10) == list(range(100))
    future = ref.ask("seen", block=False)
    assert future.get(timeout=10) == list(range(100))


def test_a_local_ask_times_out_and_a_stopped_actor_is_dead(host):
    ref = host.spawn_service(Tally, "tally")
    with pytest.raises(AskTimeout):
        ref.ask("block", timeout=0.05)
    RELEASE.set()
    host._actors["tally"].stop()
    with pytest.raises(ActorDeadError):
        ref.ask("seen", timeout=10)
    with pytest.raises(ActorDeadError):
        RayRef("nobody", "services", "ns-test").ask("seen", timeout=10)


def test_refs_to_another_host_or_namespace_still_go_through_ray(host):
    for ref in (RayRef("tally", "agent:x:1", "ns-test"), RayRef("tally", "services", "other-ns")):
        with pytest.raises(AssertionError, match="through Ray"):
            ref.tell("x")
