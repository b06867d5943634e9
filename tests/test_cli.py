"""The `actors` command line: run a spec, refuse bad ones in one line."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def actors(*args, cwd=ROOT, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "runtime", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout
    )


def test_quickstart_runs_its_tasks_prints_results_and_exits_zero():
    out = actors("run", "examples/quickstart.toml")
    assert out.returncode == 0, out.stderr
    assert "result  task-1 (compute)" in out.stdout and "'output': 6" in out.stdout
    assert "'output': 'Actors In Processes'" in out.stdout
    assert "done    3/3 tasks succeeded" in out.stdout
    assert "joined  summer-0" in out.stdout and "left    writer: stopped" in out.stdout


def test_json_lines_for_machines():
    out = actors("run", "--json", "--quiet", "examples/quickstart.toml")
    assert out.returncode == 0, out.stderr
    import json

    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert sorted(r["task_id"] for r in rows) == ["task-1", "task-2", "task-3"]


def test_version_and_help():
    assert actors("--version").stdout.startswith("actors ")
    helped = actors("--help")
    assert helped.returncode == 0 and "actors run examples/quickstart.toml" in helped.stdout


_AGENT = '\n\n[[agents]]\nname = "a"\nclass = "actors:Agent"\n'


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("missing.toml", "no such spec file"),
        ("[[agents]\nname = 1", "TOML syntax error"),
        ('[[agents]]\nname = "a"\nclass = "nowhere_module:X"', "can't import module 'nowhere_module'"),
        ('[[agents]]\nname = "a"\nclass = "json:Nope"', "module 'json' has no 'Nope'"),
        ('[[agents]]\nname = "a"\nclass = "json:JSONDecoder"', "is not a subclass of actors.Agent"),
        ('[[agents]]\nname = "a"\nclass = "actors:Agent"\ncolour = "red"', "unknown field 'colour'"),
        ('[[agents]]\nname = "a"\nclass = "actors:Agent"\nreplicas = "two"', "field 'replicas' must be int"),
        ('[[tasks]]\npayload = 1', "missing field 'type'"),
        ('[runtime]\nbackend = "mars"' + _AGENT, "unknown backend 'mars'"),
        ('[runtime]\naddress = "10.0.0.1:6379"' + _AGENT, "field 'address' is for backend = \"ray\" only"),
        ('[runtime]\nnum_cpus = 4' + _AGENT, "field 'num_cpus' is for backend = \"ray\" only"),
        ('[runtime]\npreload = ["nowhere_module"]' + _AGENT, "preloading 'nowhere_module' for the agents failed"),
        ('[runtime]\nstart_timeout = 0' + _AGENT, "start_timeout must be positive"),
        ('[[agents]]\nname = "a"\nclass = "actors:Agent"\nrestart = "sometimes"',
         "restart must be one of 'permanent', 'transient', 'temporary', got 'sometimes'"),
        ('[[agents]]\nname = "a"\nclass = "actors:Agent"\nmax_restarts = -1', "max_restarts can't be negative"),
        ('[[agents]]\nname = "a"\nclass = "actors:Agent"\nrestart_window = -0.5',
         "restart_window can't be negative"),
        ('[[agents]]\nname = "a"\nclass = "actors:Agent"\ncapabilities = ["x", "y"\n\n[[tasks]]\ntype = "x"\n',
         "Unclosed array (at line 6, column 1): the array opened on line 4 is not closed"),
        ('[[agents]]\nname = "a"\nclass = "actors:Agent"\ncapabilities = ["x",\n',
         "(at end of document): the array opened on line 4 is not closed"),
        ("", "no agents to run"),
        ('[runtime]\nmax_history = 10\n', "no agents to run"),
        ('[runtime]\ntask_records = -3' + _AGENT, "field 'task_records' must be an int >= 0 or \"all\""),
        ('[runtime]\ntask_records = "some"' + _AGENT, "field 'task_records' must be an int >= 0 or \"all\""),
    ],
)
def test_a_bad_spec_gets_one_clear_line_and_exit_code_2(tmp_path, spec, expected):
    path = tmp_path / "spec.toml"
    if spec != "missing.toml":
        path.write_text(spec)
    out = actors("run", str(path), cwd=tmp_path)
    assert out.returncode == 2
    assert expected in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_a_failing_task_makes_the_exit_code_non_zero(tmp_path):
    (tmp_path / "team.py").write_text(textwrap.dedent("""
        from actors import Agent

        class Picky(Agent):
            capabilities = ["pick"]
            def do_work(self, task):
                if task["payload"] == "bad":
                    raise ValueError("won't")
                return task["payload"]
    """))
    (tmp_path / "spec.toml").write_text(textwrap.dedent("""
        [runtime]
        preload = ["team"]

        [[agents]]
        name = "p"
        class = "team:Picky"

        [[tasks]]
        type = "pick"
        payload = "good"

        [[tasks]]
        type = "pick"
        payload = "bad"
    """))
    out = actors("run", "spec.toml", cwd=tmp_path)
    assert out.returncode == 1
    assert "result  task-1 (pick): good" in out.stdout
    assert "failed  task-2 (pick): ValueError: won't" in out.stdout


@pytest.mark.parametrize("to_group", [False, True], ids=["to-the-runtime", "to-its-process-group"])
def test_without_tasks_it_serves_until_sigterm_then_stops_cleanly(tmp_path, to_group):
    # A SIGTERM to the whole group (as `kill %1` or `timeout` send) reaches
    # only the runtime: agents, in groups of their own, are stopped by it.
    (tmp_path / "team.py").write_text(textwrap.dedent("""
        from actors import Agent

        class Idle(Agent):
            def on_stop(self):
                print("on_stop ran", flush=True)
    """))
    (tmp_path / "spec.toml").write_text('[[agents]]\nname = "idle"\nclass = "team:Idle"\n')
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime", "run", "spec.toml"], start_new_session=to_group,
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        for line in proc.stdout:
            if line.startswith("serving"):
                break
        if to_group:
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            proc.send_signal(signal.SIGTERM)
        rest, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait(10)
    assert proc.returncode == 0, err
    assert "on_stop ran" in rest and "left    idle: stopped" in rest


def test_a_module_callable_spec_spawns_into_the_runtime(tmp_path):
    (tmp_path / "build.py").write_text(textwrap.dedent("""
        import os, signal
        from actors import Agent

        class Hello(Agent):
            def on_receive(self, message):
                return "hello " + message

        def team(rt):
            rt.spawn(Hello, "hello")
            print(rt.agents["hello"].ask("world", timeout=10), flush=True)
            os.kill(os.getpid(), signal.SIGTERM)
    """))
    out = actors("run", "build:team", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "hello world" in out.stdout


def _serve_in(tmp_path):
    (tmp_path / "team.py").write_text(textwrap.dedent("""
        from actors import Agent

        class Idle(Agent):
            capabilities = ["idle"]
    """))
    (tmp_path / "spec.toml").write_text('[[agents]]\nname = "idle"\nclass = "team:Idle"\nreplicas = 2\n')
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime", "run", "spec.toml"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    for line in proc.stdout:
        if line.startswith("serving"):
            return proc
    raise AssertionError(proc.stderr.read())


def test_status_shows_the_process_table_of_the_runtime_started_here(tmp_path):
    proc = _serve_in(tmp_path)
    try:
        [control] = (tmp_path / ".actors").glob("control-*.json")
        assert control.name == f"control-{proc.pid}.json"
        assert (control.stat().st_mode & 0o777) == 0o600
        table = actors("status", cwd=tmp_path)
        assert table.returncode == 0, table.stderr
        lines = table.stdout.splitlines()
        assert lines[0].split()[:4] == ["NAME", "KIND", "PID", "ALIVE"]
        assert sorted(line.split()[0] for line in lines[1:]) == ["idle-0", "idle-1"]
        import json

        rows = json.loads(actors("status", "--json", "--address", str(control)).stdout)
        assert {r["name"] for r in rows} == {"idle-0", "idle-1"} and all(r["alive"] for r in rows)
        assert all(r["capabilities"] == ["idle"] and r["rss_bytes"] > 0 for r in rows)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert not control.exists()
    assert not (tmp_path / ".actors").exists()  # no empty folder left behind


def test_status_without_a_runtime_says_so(tmp_path):
    out = actors("status", cwd=tmp_path)
    assert out.returncode == 1 and "no running runtime found" in out.stderr


def test_status_with_a_wrong_key_is_refused(tmp_path):
    proc = _serve_in(tmp_path)
    try:
        import json

        [control] = (tmp_path / ".actors").glob("control-*.json")
        info = json.loads(control.read_text())
        forged = tmp_path / "forged.json"
        forged.write_text(json.dumps({**info, "key": "00" * 32}))
        out = actors("status", "--address", str(forged), cwd=tmp_path)
        assert out.returncode == 1 and "not answering" in out.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)


def test_status_refuses_a_control_file_others_may_write_in_one_line(tmp_path):
    import json

    (tmp_path / ".actors").mkdir(mode=0o700)
    control = tmp_path / ".actors" / "control.json"
    control.write_text(json.dumps({"address": "/nowhere.sock", "key": "00" * 32, "pid": 1}))
    os.chmod(control, 0o666)
    out = actors("status", cwd=tmp_path)
    assert out.returncode == 1
    [line] = out.stderr.splitlines()
    assert line.startswith("actors: error: refusing control file ")
    assert line.endswith(".actors/control.json: it is writable by group and others (mode 666)")


def test_an_agent_failing_to_start_is_one_line_and_exit_1(tmp_path):
    (tmp_path / "team.py").write_text(textwrap.dedent("""
        from actors import Agent

        class Broken(Agent):
            def on_start(self):
                raise RuntimeError("no config")
    """))
    (tmp_path / "spec.toml").write_text('[[agents]]\nname = "b"\nclass = "team:Broken"\n')
    out = actors("run", "spec.toml", cwd=tmp_path)
    assert out.returncode == 1
    # One line of the command's own; the agent's traceback arrives as its log record (`log     b ERROR: ...`).
    own = [line for line in out.stderr.splitlines() if line.startswith("actors: ")]
    assert own == ["actors: error: spec.toml: starting the team failed: RuntimeError: no config"]
    assert "log     b ERROR" in out.stderr


def test_status_watch_refreshes_in_place(tmp_path):
    proc = _serve_in(tmp_path)
    try:
        watch = subprocess.Popen([sys.executable, "-m", "runtime", "status", "--watch"], cwd=tmp_path,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        screens = 0
        try:
            for line in watch.stdout:
                screens += line.count("\033[H\033[2J")
                if screens >= 2:
                    break
        finally:
            watch.send_signal(signal.SIGINT)
            _out, err = watch.communicate(timeout=30)
        assert screens >= 2
        assert watch.returncode == 0, err
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)


def test_a_spec_sets_the_task_records_window(tmp_path):
    from runtime.cli._spec import load_spec

    for value, expected in (("1000", 1000), ('"all"', None)):
        path = tmp_path / "spec.toml"
        path.write_text(f"[runtime]\ntask_records = {value}\n" + _AGENT)
        assert load_spec(str(path)).runtime == {"task_records": expected}


_SLOW_TEAM = """
    import os, time
    from actors import Agent

    class Slow(Agent):
        capabilities = ["slow"]

        def do_work(self, task):
            print(f"working {os.getpid()}", flush=True)
            time.sleep(60)
            return "late"

        def on_stop(self):
            print(f"on_stop ran {os.getpid()}", flush=True)
"""


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_a_batch_of_long_tasks_stops_it_within_seconds(tmp_path, sig, code):
    import psutil

    (tmp_path / "team.py").write_text(textwrap.dedent(_SLOW_TEAM))
    tasks = '\n[[tasks]]\ntype = "slow"\npayload = 1\n' * 6
    (tmp_path / "spec.toml").write_text('[[agents]]\nname = "s"\nclass = "team:Slow"\nreplicas = 2\n' + tasks)
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime", "run", "spec.toml"], cwd=tmp_path, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        working = set()
        for line in proc.stdout:
            # Two agents print to one pipe: their lines may interleave.
            working.update(int(pid) for pid in re.findall(r"working (\d+)", line))
            if len(working) == 2:
                break
        proc.send_signal(sig)
        proc.send_signal(sig)  # a second one, as an impatient user's: no traceback
        started = time.monotonic()
        rest, err = proc.communicate(timeout=60)
        took = time.monotonic() - started
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == code, err
    assert took < 10, f"took {took:.1f} s to stop"
    assert "Traceback" not in err
    assert {int(pid) for pid in re.findall(r"on_stop ran (\d+)", rest)} == working
    assert "result" not in rest and "working" not in rest  # nothing more was sent
    assert not [pid for pid in working if psutil.pid_exists(pid)]


def test_on_a_terminal_results_print_above_the_progress_bar_never_on_its_line(tmp_path):
    import pty

    (tmp_path / "team.py").write_text(textwrap.dedent("""
        import time
        from actors import Agent

        class Nap(Agent):
            capabilities = ["nap"]
            def do_work(self, task):
                time.sleep(0.05)
                return task["payload"]
    """))
    tasks = "".join(f'\n[[tasks]]\ntype = "nap"\npayload = {i}\n' for i in range(30))
    (tmp_path / "spec.toml").write_text('[[agents]]\nname = "n"\nclass = "team:Nap"\nreplicas = 2\n' + tasks)
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "runtime", "run", "--quiet", "spec.toml"], cwd=tmp_path,
                            stdout=follower, stderr=follower, env={**os.environ, "PYTHONPATH": str(ROOT)})
    os.close(follower)
    screen = b""
    try:
        while True:
            try:
                chunk = os.read(leader, 1 << 16)
            except OSError:  # EIO: the terminal's last writer exited
                break
            if not chunk:
                break
            screen += chunk
    finally:
        os.close(leader)
        proc.wait(60)
    assert proc.returncode == 0
    text = screen.decode().replace("\r\n", "\n")  # the terminal ends lines with CR LF
    assert "30/30" in text  # the bar was drawn
    # What a terminal shows of each line: the text after its last carriage return.
    shown = [line.rsplit("\r", 1)[-1].replace("\033[K", "") for line in text.split("\n")]
    results = [line for line in text.split("\n") if "result  task-" in line]
    assert len(results) == 30
    assert sum(line.startswith("result  task-") for line in shown) == 30


def test_status_takes_the_actors_folder_as_its_address(tmp_path):
    proc = _serve_in(tmp_path)
    try:
        out = actors("status", "--address", ".actors", cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert sorted(line.split()[0] for line in out.stdout.splitlines()[1:]) == ["idle-0", "idle-1"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)


def test_two_runs_in_one_folder_each_keep_a_control_file_and_status_names_both(tmp_path):
    first = _serve_in(tmp_path)
    second = None
    try:
        second = _serve_in(tmp_path)
        files = sorted((tmp_path / ".actors").glob("control-*.json"))
        assert [f.name for f in files] == sorted(f"control-{p.pid}.json" for p in (first, second))
        out = actors("status", cwd=tmp_path)
        assert out.returncode == 1
        [line] = out.stderr.splitlines()
        assert "2 runtimes run from" in line and "--address" in line
        assert f"pid {first.pid}" in line and f"pid {second.pid}" in line
        for proc in (first, second):
            picked = actors("status", "--json", "--address", f".actors/control-{proc.pid}.json", cwd=tmp_path)
            assert picked.returncode == 0, picked.stderr
        second.send_signal(signal.SIGTERM)
        second.communicate(timeout=60)
        out = actors("status", cwd=tmp_path)  # one left: used without asking
        assert out.returncode == 0, out.stderr
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.communicate(timeout=60)
    assert not (tmp_path / ".actors").exists()


def test_a_bad_spin_budget_in_the_environment_is_one_line_and_exit_2():
    out = subprocess.run([sys.executable, "-m", "runtime", "--version"], capture_output=True, text=True,
                         cwd=ROOT, timeout=60, env={**os.environ, "ACTORS_SPIN_US": "abc"})
    assert out.returncode == 2
    assert out.stderr.strip() == "actors: error: ACTORS_SPIN_US must be a number of microseconds (0 or more), got 'abc'"


def test_the_json_done_event_carries_the_counts_and_no_empty_folder_is_left(tmp_path):
    import json

    (tmp_path / "team.py").write_text(textwrap.dedent("""
        from actors import Agent

        class Picky(Agent):
            capabilities = ["pick"]
            def do_work(self, task):
                if task["payload"] == "bad":
                    raise ValueError("won't")
                return task["payload"]
    """))
    tasks = "".join(f'\n[[tasks]]\ntype = "pick"\npayload = "{p}"\n' for p in ("good", "bad", "good"))
    (tmp_path / "spec.toml").write_text('[[agents]]\nname = "p"\nclass = "team:Picky"\n' + tasks)
    out = actors("run", "--json", "spec.toml", cwd=tmp_path)
    assert out.returncode == 1, out.stderr
    [done] = [row for row in map(json.loads, out.stdout.splitlines()) if row["event"] == "done"]
    assert (done["ok"], done["failed"], done["total"]) == (2, 1, 3)
    assert not (tmp_path / ".actors").exists()


def test_an_agent_that_misses_its_start_timeout_ends_the_run_promptly(tmp_path):
    (tmp_path / "team.py").write_text(textwrap.dedent("""
        import time
        from actors import Agent

        class Sleepy(Agent):
            def on_start(self):
                time.sleep(60)
    """))
    (tmp_path / "spec.toml").write_text('[runtime]\nstart_timeout = 1\n\n[[agents]]\nname = "s"\nclass = "team:Sleepy"\n')
    started = time.monotonic()
    out = actors("run", "spec.toml", cwd=tmp_path)
    took = time.monotonic() - started
    assert out.returncode == 1
    assert "did not finish on_start within 1 s" in out.stderr
    assert took < 1 + 4, f"took {took:.1f} s"  # the timeout, an interpreter start, a shutdown
