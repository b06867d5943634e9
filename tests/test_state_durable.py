"""Durable state: SQLite behind the store, surviving even SIGKILL."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap

import psutil
import pytest

from actors import ActorsError, Agent, EventType, NamespacePermissionError, StateFileInUseError
from conftest import stray_processes, wait_for
from runtime import Runtime


class Planner(Agent):
    def plan(self, text):
        return self.ctx.state.set("team", "plan", text)


def test_a_new_runtime_on_the_same_file_sees_values_versions_history_and_namespaces(tmp_path):
    path = str(tmp_path / "state.db")
    with Runtime(state_path=path) as rt:
        rt.state.create_namespace("team", writers=["boss"])
        rt.state.set("shared", "a", {"n": 1})
        rt.state.set("shared", "a", {"n": 2})
        assert rt.spawn(Planner, "boss").proxy().plan("ship it").get(timeout=10) is True
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
        assert rt.state.get_version("team", "plan").updated_by == "boss"
        with pytest.raises(NamespacePermissionError):
            rt.state.set("team", "plan", "no", updater="boss")
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
    db = sqlite3.connect(path)
    try:  # a tombstone leaves the file once its key is set again
        assert db.execute("SELECT key FROM tombstones").fetchall() == []
    finally:
        db.close()


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


def test_the_state_file_and_its_wal_and_shm_are_readable_by_their_owner_only(tmp_path):
    path = tmp_path / "state.db"
    with Runtime(state_path=str(path)) as rt:
        rt.state.set("shared", "secret", "s3cr3t")
        for name in ("state.db", "state.db-wal", "state.db-shm"):
            assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600, name


def test_a_world_readable_state_file_from_before_is_tightened(tmp_path):
    path = tmp_path / "state.db"
    path.touch(mode=0o644)
    os.chmod(path, 0o644)
    with Runtime(state_path=str(path)) as rt:
        rt.state.set("shared", "k", 1)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_a_second_runtime_on_a_file_in_use_fails_naming_it_and_leaves_nothing_behind(tmp_path):
    path = str(tmp_path / "state.db")
    with Runtime(state_path=path) as rt:
        rt.state.set("shared", "k", 1)
        files, children = sorted(os.listdir(tmp_path)), {p.pid for p in stray_processes()}
        in_use = rf"state\.db.*in use by another runtime \(pid {os.getpid()}\)"
        with pytest.raises(StateFileInUseError, match=in_use) as caught:
            Runtime(state_path=os.path.join(str(tmp_path), ".", "state.db"))  # another name, the same file
        assert isinstance(caught.value, ActorsError)
        assert (caught.value.path, caught.value.pid) == (os.path.join(str(tmp_path), ".", "state.db"), os.getpid())
        assert sorted(os.listdir(tmp_path)) == files
        wait_for(lambda: {p.pid for p in stray_processes()} == children)
        assert rt.state.set("shared", "k", 2, expected_version=1) is True  # the holder is unharmed
    with Runtime(state_path=path) as rt:  # released by the shutdown
        assert rt.state.get("shared", "k") == 2
    assert sorted(os.listdir(tmp_path)) == ["state.db"]


def test_no_agent_or_zygote_process_holds_the_state_files_lock(tmp_path):
    with Runtime(state_path=str(tmp_path / "state.db")) as rt:
        rt.spawn(Agent, "a")
        lock = os.path.realpath(tmp_path / "state.db.lock")
        for proc in stray_processes():  # the zygote and the agent
            assert lock not in [f.path for f in proc.open_files()], proc.cmdline()
        assert lock in [f.path for f in psutil.Process().open_files()]


def test_a_lock_left_by_a_killed_runtime_does_not_block_the_next(tmp_path):
    path = tmp_path / "state.db"
    script = tmp_path / "holder.py"
    script.write_text(textwrap.dedent(f"""
        import time
        from actors import Agent
        from runtime import Runtime

        rt = Runtime(state_path={str(path)!r})
        rt.spawn(Agent, "a")
        rt.state.set("shared", "k", "from the killed one")
        print("ready", flush=True)
        time.sleep(120)
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "ready\n"
        with pytest.raises(StateFileInUseError, match=f"pid {proc.pid}"):
            Runtime(state_path=str(path))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()
    with Runtime(state_path=str(path)) as rt:  # at once: only the dead runtime held it
        assert rt.state.get("shared", "k") == "from the killed one"


def test_purged_keys_and_tombstones_stay_gone_after_a_reopen(tmp_path):
    from pykka.messages import ProxyCall

    path = str(tmp_path / "state.db")
    with Runtime(state_path=path) as rt:
        rt.state.set("shared", "gone", 1)
        rt.state.set("shared", "deleted", 1)
        rt.state.delete("shared", "deleted")
        rt.state._ref.ask(ProxyCall(("purge",), ("shared", ["gone", "deleted"], "runtime"), {}), timeout=10)
    with Runtime(state_path=path) as rt:
        assert rt.state.get("shared", "gone") is None
        rt.state.set("shared", "deleted", 2)
        assert rt.state.get_version("shared", "deleted").version == 1


def test_task_records_past_the_window_leave_the_state_file(tmp_path):
    path = str(tmp_path / "state.db")
    with Runtime(state_path=path, task_records=2) as rt:
        rt.add_agent("w", ["generic"])
        for i in range(6):
            rt.submit_task({"id": f"t{i}", "type": "generic"})
    with sqlite3.connect(path) as db:
        keys = sorted(k for (k,) in db.execute("SELECT key FROM kv WHERE key LIKE 'task:%'"))
        assert db.execute("SELECT COUNT(*) FROM tombstones WHERE key LIKE 'task:%'").fetchone() == (0,)
    assert keys == sorted(f"task:{t}:{part}" for t in ("t4", "t5") for part in ("completed", "result", "status"))


_OLD_SCHEMA = """
CREATE TABLE namespaces (ns TEXT PRIMARY KEY, writers BLOB);
CREATE TABLE kv (
    ns TEXT NOT NULL, key TEXT NOT NULL, value BLOB, version INTEGER NOT NULL,
    timestamp REAL NOT NULL, updated_by TEXT NOT NULL, checksum TEXT NOT NULL,
    PRIMARY KEY (ns, key)
);
CREATE TABLE tombstones (
    ns TEXT NOT NULL, key TEXT NOT NULL, version INTEGER NOT NULL, PRIMARY KEY (ns, key)
);
CREATE TABLE history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, ns TEXT NOT NULL, key TEXT NOT NULL, op TEXT NOT NULL,
    version INTEGER NOT NULL, value BLOB, updated_by TEXT NOT NULL, timestamp REAL NOT NULL
);
"""


def test_a_state_file_made_with_rowid_tables_still_works(tmp_path):
    path = str(tmp_path / "state.db")
    db = sqlite3.connect(path)
    db.executescript(_OLD_SCHEMA)
    db.close()
    os.chmod(path, 0o600)
    with Runtime(state_path=path) as rt:
        rt.state.set("shared", "a", 1)
        rt.state.set("shared", "gone", 1)
        rt.state.delete("shared", "gone")
        rt.store.set("flat", 2)
    with Runtime(state_path=path) as rt:
        assert rt.state.get("shared", "a") == 1 and rt.store.get("flat") == 2
        rt.state.set("shared", "gone", 5)
        assert rt.state.get_version("shared", "gone").version == 3
    kinds = sqlite3.connect(path).execute("SELECT sql FROM sqlite_master WHERE name = 'kv'").fetchone()[0]
    assert "WITHOUT ROWID" not in kinds  # its tables were kept as they were


def test_a_new_state_file_keeps_its_keyed_tables_without_rowid(tmp_path):
    path = str(tmp_path / "state.db")
    with Runtime(state_path=path) as rt:
        rt.state.set("shared", "a", 1)
    db = sqlite3.connect(path)
    for table in ("kv", "tombstones"):
        assert "WITHOUT ROWID" in db.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
