"""Durable state: SQLite behind the store, surviving even SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from actors import EventType, NamespacePermissionError
from conftest import wait_for
from runtime import Runtime


def test_a_new_runtime_on_the_same_file_sees_values_versions_history_and_namespaces(tmp_path):
    path = str(tmp_path / "state.db")
    with Runtime(state_path=path) as rt:
        rt.state.create_namespace("team", writers=["boss"])
        rt.state.set("shared", "a", {"n": 1})
        rt.state.set("shared", "a", {"n": 2})
        rt.state.set("team", "plan", "ship it", updater="boss")
        rt.store.set("flat", [1, 2])
        rt.state.set("shared", "gone", 1)
        rt.state.delete("shared", "gone")
    with Runtime(state_path=path) as rt:
        version = rt.state.get_version("shared", "a")
        assert (version.value, version.version, version.updated_by) == ({"n": 2}, 2, "runtime")
        assert rt.state.get("team", "plan") == "ship it"
        assert rt.store.get("flat") == [1, 2]
        assert rt.state.get("shared", "gone") is None
        assert [r["op"] for r in rt.state.history("shared", "gone")] == ["set", "delete"]
        with pytest.raises(NamespacePermissionError):
            rt.state.set("team", "plan", "no", updater="intern")
        assert rt.state.set("shared", "a", {"n": 3}, expected_version=2) is True


def test_a_deleted_keys_version_survives_a_reopen(tmp_path):
    path = str(tmp_path / "state.db")
    with Runtime(state_path=path) as rt:
        rt.state.set("shared", "k", "a")
        rt.state.set("shared", "k", "b")
        rt.state.delete("shared", "k")  # version 3
        rt.store.set("f", 1)
        rt.store.delete("f")  # version 2
        rt.state.set("shared", "back", 1)
        rt.state.delete("shared", "back")
        rt.state.set("shared", "back", 2)  # version 3, its tombstone gone
    with Runtime(state_path=path) as rt:
        assert rt.state.get_version("shared", "k") is None
        assert rt.state.list_keys("shared") == ["back"]
        assert rt.state.set("shared", "k", "stale", expected_version=2) is False
        assert rt.state.set("shared", "k", "c", expected_version=0) is True
        assert rt.state.get_version("shared", "k").version == 4
        assert rt.store.set("f", 2) is True
        assert rt.store.get_version("f").version == 3
        assert rt.state.get_version("shared", "back").version == 3
        rt.state.set("shared", "back", 3)
    with Runtime(state_path=path) as rt:
        assert rt.state.get_version("shared", "back").version == 4


def test_state_changed_is_announced_after_the_commit(tmp_path):
    with Runtime(state_path=str(tmp_path / "s.db")) as rt:
        rt.state.set("shared", "k", 1)
        wait_for(lambda: any(e.payload["key"] == "k" for e in rt.events.get_history(EventType.STATE_CHANGED)))


def test_a_bad_state_path_fails_with_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="can't use .* as a state file"):
        Runtime(state_path=str(tmp_path / "no" / "such" / "dir" / "s.db"))
    with pytest.raises(ValueError, match="synchronous must be one of"):
        Runtime(state_path=str(tmp_path / "s.db"), state_synchronous="SOMETIMES")


def test_every_acknowledged_write_survives_the_runtime_being_killed(tmp_path):
    path = tmp_path / "state.db"
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(f"""
        import os
        from actors import Agent
        from runtime import Runtime

        class Writer(Agent):
            def write(self, n):
                for i in range(n):
                    key = f"{{self.agent_id}}-{{i}}"
                    self.ctx.state.set("shared", key, i)
                    os.write(1, f"acked {{key}}\\n".encode())  # one write: lines never mix

        rt = Runtime(state_path={str(path)!r}, state_synchronous="FULL")
        agents = [rt.spawn(Writer, f"w{{k}}") for k in range(2)]
        for a in agents:
            a.proxy().write.defer(100000)
        for i in range(100000):
            rt.state.set("shared", f"rt-{{i}}", i)
            os.write(1, f"acked rt-{{i}}\\n".encode())
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    acked = []
    try:
        for line in proc.stdout:
            assert line.startswith("acked "), line
            acked.append(line.split()[1])
            if len(acked) >= 600 and any(a.startswith("w") for a in acked):
                break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        rest = proc.stdout.read()
        acked += [line.split()[1] for line in rest.splitlines() if line.startswith("acked")]
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()
    with Runtime(state_path=str(path)) as rt:
        missing = [key for key in acked if rt.state.get("shared", key) is None]
        assert missing == []
        assert rt.state.get_version("shared", acked[0]).version == 1
