"""What travels between processes: classes, closures, lambdas, and what can't."""

from __future__ import annotations

import threading

import pytest

from actors import Agent, MessageSerializationError, RemoteError
from runtime.wire._serialization import dumps


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


class AgentOnly(Agent):
    """Uses classes that exist only in its own process: from a module only it
    imports (written to `path`), and from a module it makes up at run time."""

    def __init__(self, path):
        super().__init__()
        self.path = path

    def _module(self):
        import importlib
        import sys

        if self.path not in sys.path:
            sys.path.insert(0, self.path)
        return importlib.import_module("agent_only_mod")

    def _made_up(self):
        import sys
        import types

        module = sys.modules.get("made_up_mod")
        if module is None:
            module = sys.modules["made_up_mod"] = types.ModuleType("made_up_mod")
            module.Boom = type("Boom", (Exception,), {"__module__": "made_up_mod"})
        return module

    def raise_from_module(self):
        raise self._module().Boom("from a module only the agent has")

    def raise_made_up(self):
        raise self._made_up().Boom("from a class made at run time")

    def value_from_module(self):
        return {"result": self._module().Value(3)}

    def ping(self):
        return "pong"


@pytest.fixture
def agent_only_module(tmp_path):
    (tmp_path / "agent_only_mod.py").write_text(
        "class Boom(Exception):\n    pass\n\n\nclass Value:\n    def __init__(self, x):\n        self.x = x\n"
    )
    return str(tmp_path)


@pytest.mark.parametrize("method, remote_type", [("raise_from_module", "agent_only_mod.Boom"),
                                                 ("raise_made_up", "made_up_mod.Boom")])
def test_an_exception_whose_class_only_the_agent_has_arrives_as_remote_error(rt, agent_only_module, method,
                                                                             remote_type):
    agent = rt.spawn(AgentOnly, "only", args=(agent_only_module,))
    with pytest.raises(RemoteError) as info:
        getattr(agent.proxy(), method)().get(timeout=10)
    assert info.value.remote_type == remote_type
    assert "from a" in str(info.value) and "can't be loaded in this process" in str(info.value)
    assert method in info.value.remote_traceback and "Boom: from a" in info.value.remote_traceback
    assert agent.proxy().ping().get(timeout=10) == "pong"  # still running


def test_a_reply_whose_class_only_the_agent_has_arrives_as_remote_error_naming_it(rt, agent_only_module):
    agent = rt.spawn(AgentOnly, "only", args=(agent_only_module,))
    with pytest.raises(RemoteError) as info:
        agent.proxy().value_from_module().get(timeout=10)
    assert info.value.remote_type == "agent_only_mod.Value"
    assert "reply can't be loaded in this process" in str(info.value)
    assert "agent_only_mod" in info.value.remote_traceback
    assert agent.proxy().ping().get(timeout=10) == "pong"


class StartsWithAgentOnlyError(AgentOnly):
    def on_start(self):
        self.raise_from_module()


def test_spawn_raises_remote_error_for_an_on_start_error_only_the_agent_can_load(rt, agent_only_module):
    with pytest.raises(RemoteError) as info:
        rt.spawn(StartsWithAgentOnlyError, "only", args=(agent_only_module,))
    assert info.value.remote_type == "agent_only_mod.Boom" and "on_start" in info.value.remote_traceback


def test_code_carried_by_value_keeps_its_file_name_for_tracebacks():
    import pickle

    fails = lambda: 1 / 0
    copy = pickle.loads(dumps(fails))
    assert copy.__code__.co_filename == __file__
