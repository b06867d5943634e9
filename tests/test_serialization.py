"""What travels between processes: classes, closures, lambdas, and what can't."""

from __future__ import annotations

import threading

import pytest

from actors import Agent, MessageSerializationError, RemoteError


class Apply(Agent):
    """Applies whatever function it is sent."""

    def __init__(self, offset=0, transform=None):
        super().__init__()
        self.offset = offset
        self.transform = transform or (lambda x: x)

    def on_receive(self, message):
        fn, value = message
        result = fn(value)
        return self.transform(result + self.offset) if self.offset else self.transform(result)


class Point:  # defined in a test module: travels by value or by reference
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, other):
        return (self.x, self.y) == (other.x, other.y)


class Unpicklable(Agent):
    def on_receive(self, message):
        if message == "lock":
            return threading.Lock()
        raise _LocalError(threading.Lock())


class _LocalError(Exception):
    def __init__(self, lock):
        super().__init__("holds a lock")
        self.lock = lock


def test_closures_and_lambdas_travel_as_arguments_and_messages(rt):
    factor = 3
    agent = rt.spawn(Apply, "apply", kwargs={"offset": 1, "transform": lambda v: v * factor})
    assert agent.ask((lambda v: v + 1, 10), timeout=10) == (10 + 1 + 1) * 3


def test_instances_of_test_module_classes_travel_both_ways(rt):
    agent = rt.spawn(Apply, "apply")
    assert agent.ask((lambda p: Point(p.x + 1, p.y), Point(1, 2)), timeout=10) == Point(2, 2)


def test_a_class_defined_in_main_travels(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "main_agent.py"
    script.write_text(
        "from actors import Agent\n"
        "from runtime import Runtime\n"
        "class Local(Agent):\n"
        "    def on_receive(self, m):\n"
        "        return ('local', m)\n"
        "if __name__ == '__main__':\n"
        "    with Runtime() as rt:\n"
        "        print(rt.spawn(Local, 'l').ask(1, timeout=10))\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "('local', 1)"


def test_an_unpicklable_message_fails_in_the_sender_and_nothing_is_sent(rt):
    agent = rt.spawn(Apply, "apply")
    with pytest.raises(MessageSerializationError, match="can't be pickled"):
        agent.ask((lambda v: v, threading.Lock()), timeout=10)
    with pytest.raises(MessageSerializationError):
        agent.tell(threading.Lock())
    assert agent.ask((lambda v: v, 41), timeout=10) == 41  # nothing half-sent


def test_an_unpicklable_reply_reaches_the_asker_as_an_error(rt):
    agent = rt.spawn(Unpicklable, "u")
    with pytest.raises(MessageSerializationError, match="reply can't be pickled"):
        agent.ask("lock", timeout=10)


def test_an_exception_that_cannot_travel_arrives_as_remote_error_with_traceback(rt):
    agent = rt.spawn(Unpicklable, "u")
    with pytest.raises(RemoteError) as info:
        agent.ask("raise", timeout=10)
    assert "_LocalError" in info.value.remote_type
    assert "holds a lock" in str(info.value)
    assert "on_receive" in info.value.remote_traceback
    assert agent.ask("lock", block=False) is not None  # still running


def test_unpicklable_spawn_arguments_fail_before_any_process_starts(rt):
    with pytest.raises(MessageSerializationError, match="agent 'x'"):
        rt.spawn(Apply, "x", args=(threading.Lock(),))
    assert rt.agent_info() == []
