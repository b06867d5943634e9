"""Socket folders of killed runtimes are removed; those of live ones never."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from actors import Agent
from runtime import Runtime
from runtime.local._rundir import LOCK_NAME, PREFIX, RunDir, remove_stale_rundirs

from conftest import pid_of

HOLDER = textwrap.dedent("""
    import sys
    from runtime import Runtime

    rt = Runtime()
    print(rt._rundir, flush=True)
    sys.stdin.read()  # until the test closes stdin (or kills this process)
    rt.shutdown()
""")


@pytest.fixture
def holder(tmp_path):
    """Start a runtime in another process; yields (process, its folder)."""
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=env)
    folder = None
    try:
        folder = proc.stdout.readline().strip()
        assert os.path.isdir(folder)
        yield proc, folder
    finally:
        proc.stdin.close()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()
        if folder:
            shutil.rmtree(folder, ignore_errors=True)


def test_a_killed_runtimes_folder_is_removed_when_a_new_runtime_starts(holder):
    proc, folder = holder
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert os.path.isdir(folder)
    with Runtime():
        assert not os.path.exists(folder)


def test_a_live_runtimes_folder_in_another_process_is_kept(holder):
    proc, folder = holder
    with Runtime():
        assert os.path.isdir(folder) and proc.poll() is None
    assert os.listdir(folder)  # its sockets too


def test_only_the_runtimes_process_holds_its_folders_lock(rt):
    rt.spawn(Agent, "a")
    lock = os.path.join(rt._rundir, LOCK_NAME)
    others = [pid_of(rt, "a"), rt._zygote._proc.pid]
    assert lock in {f.path for f in psutil.Process().open_files()}
    for pid in others:
        assert lock not in {f.path for f in psutil.Process(pid).open_files()}


def test_a_folder_whose_lock_is_free_is_removed_and_a_locked_one_kept(tmp_path):
    dead, live = RunDir(), RunDir()
    try:
        for made in (dead, live):  # moved where only this test looks
            moved = str(tmp_path / os.path.basename(made.path))
            os.rename(made.path, moved)
            made.path = moved
        os.close(dead._lock_fd)  # as when its process died
        dead._lock_fd = -1
        assert remove_stale_rundirs(str(tmp_path)) == [dead.path]
        assert os.path.isdir(live.path) and not os.path.exists(dead.path)
    finally:
        dead.remove()
        live.remove()


def test_a_live_runtimes_folder_in_this_process_is_kept():
    own = RunDir()  # as a second Runtime in this process sees the first's
    try:
        assert own.path not in remove_stale_rundirs()
        assert os.path.isdir(own.path)
    finally:
        own.remove()
    assert not os.path.exists(own.path)


def _old_format(tmp_path, name: str, *, listening: bool = False, pid: int | None = None, age: float = 3600.0,
                extra: str | None = None) -> tuple[str, socket.socket]:
    folder = tmp_path / f"{PREFIX}{name}"
    folder.mkdir(mode=0o700)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(folder / f"{pid or _dead_pid()}-0123abcd.sock"))
    if listening:
        sock.listen(1)
    else:
        sock.close()
    if extra:
        (folder / extra).write_text("")
    then = time.time() - age
    os.utime(folder, (then, then))
    return str(folder), sock


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_old_format_folders_are_removed_only_when_nothing_in_them_can_be_alive(tmp_path):
    dead, _ = _old_format(tmp_path, "dead")
    made = [
        _old_format(tmp_path, "listening", listening=True),
        _old_format(tmp_path, "pidalive", pid=os.getpid()),
        _old_format(tmp_path, "young", age=0),
        _old_format(tmp_path, "notours", extra="notes.txt"),
    ]
    (tmp_path / f"{PREFIX}file").write_text("")
    (tmp_path / "other").mkdir()
    try:
        assert remove_stale_rundirs(str(tmp_path)) == [dead]
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            [f"{PREFIX}file", "other", *(os.path.basename(folder) for folder, _ in made)])
    finally:
        for _, sock in made:
            sock.close()
