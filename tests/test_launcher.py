"""Agents are forked by the runtime's zygote; `preload` warms it up."""

from __future__ import annotations

import textwrap

import psutil
import pytest

from runtime import PreloadError, Runtime

WHERE = textwrap.dedent("""
    import os

    from actors import Agent

    IMPORTED_IN = os.getpid()


    class Where(Agent):
        def on_receive(self, message):
            return {"imported_in": IMPORTED_IN, "pid": os.getpid()}
""")


@pytest.fixture
def where_module(tmp_path, monkeypatch):
    (tmp_path / "where_agents.py").write_text(WHERE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "where_agents"
    import sys

    sys.modules.pop("where_agents", None)


def test_a_preloaded_module_is_imported_once_before_any_agent_is_forked(where_module):
    import where_agents

    with Runtime(preload=[where_module]) as rt:
        answers = [rt.spawn(where_agents.Where, f"w{i}").ask("where?", timeout=30) for i in range(2)]
    assert all(a["imported_in"] != a["pid"] for a in answers)
    assert answers[0]["imported_in"] == answers[1]["imported_in"]  # the zygote's import, shared


def test_without_preload_each_agent_imports_its_module_itself(where_module):
    import where_agents

    with Runtime() as rt:
        answer = rt.spawn(where_agents.Where, "w").ask("where?", timeout=30)
    assert answer["imported_in"] == answer["pid"]


def test_a_module_that_fails_to_preload_is_named_and_nothing_is_left_running(tmp_path, monkeypatch):
    (tmp_path / "broken_agents.py").write_text("raise RuntimeError('no model file')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with pytest.raises(PreloadError, match="'broken_agents'.*RuntimeError: no model file") as caught:
        Runtime(preload=["broken_agents"])
    assert isinstance(caught.value, ImportError) and caught.value.module == "broken_agents"
    assert {p.pid for p in psutil.Process().children(recursive=True)} - before == set()


@pytest.mark.parametrize(("preload", "error", "message"), [
    ([3], TypeError, "list of module names"),
    (["not a module"], ValueError, "'not a module' is not a module name"),
])
def test_preload_names_a_bad_entry(preload, error, message):
    with pytest.raises(error, match=message):
        Runtime(preload=preload)
