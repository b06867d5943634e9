"""Resumable batches: `map(..., run_id=...)`, `runs()`, `drop_run()`."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import psutil
import pytest

from actors import ActorsError, Agent, RunInProgressError
from runtime import Runtime
from conftest import wait_for


class Squarer(Agent):
    capabilities = ["square"]

    def do_work(self, task):
        n = task["payload"]
        self.ctx.state.update("shared", f"runs:{n}", lambda v: (v or 0) + 1)
        if n < 0:
            raise ValueError(f"negative: {n}")
        return n * n


def _executions(rt, payloads):
    return [rt.state.get("shared", f"runs:{n}") or 0 for n in payloads]


def test_a_run_called_again_returns_every_result_without_running_any_task_again(rt):
    rt.spawn(Squarer, "a")
    rt.spawn(Squarer, "b")
    payloads = list(range(40))
    assert rt.map("square", payloads, run_id="r1") == [n * n for n in payloads]
    assert rt.map("square", payloads, run_id="r1") == [n * n for n in payloads]
    assert list(rt.imap("square", iter(payloads), run_id="r1")) == [n * n for n in payloads]
    assert _executions(rt, payloads) == [1] * 40


def test_a_resumed_run_runs_only_what_has_no_recorded_result(rt):
    rt.spawn(Squarer, "a")
    payloads = [1, -2, 3, -4, 5]
    first = rt.map("square", payloads, run_id="r", return_exceptions=True)
    assert [type(r) for r in first] == [int, ValueError, int, ValueError, int]
    again = rt.map("square", payloads, run_id="r", return_exceptions=True)
    assert [type(r) for r in again] == [int, ValueError, int, ValueError, int]
    assert _executions(rt, payloads) == [1, 2, 1, 2, 1]  # failures are not recorded: they run again


def test_runs_lists_runs_and_drop_run_forgets_one(rt):
    rt.spawn(Squarer, "a")
    before = time.time()
    rt.map("square", range(300), run_id="big")
    rt.map("square", iter([1000, 1001, 1002]), run_id="small")
    rows = {row["run_id"]: row for row in rt.runs()}
    assert rows["big"]["total"] == rows["big"]["done"] == 300
    assert rows["small"]["total"] == rows["small"]["done"] == 3
    assert before <= rows["big"]["created"] <= rows["big"]["updated"] <= time.time()
    assert rt.drop_run("big") is True
    assert rt.drop_run("big") is False
    assert [row["run_id"] for row in rt.runs()] == ["small"]
    assert [key for key in rt.state.list_keys("_runs") if "big" in key] == []
    rt.map("square", range(300), run_id="big")  # starts over
    assert _executions(rt, range(300)) == [2] * 300


def test_a_run_called_with_other_payloads_raises_a_value_error_naming_it(rt):
    rt.spawn(Squarer, "a")
    rt.map("square", [1, 2, 3], run_id="mine")
    with pytest.raises(ValueError, match="'mine'.*payload 1 differs"):
        rt.map("square", iter([1, 7, 3]), run_id="mine")
    with pytest.raises(ValueError, match="'mine'.*3 payloads, not 4"):
        rt.map("square", [1, 2, 3, 4], run_id="mine")
    with pytest.raises(ValueError, match="run_id"):
        rt.map("square", [1], run_id="")


def test_a_second_map_with_a_run_id_in_progress_raises_at_once_and_the_id_is_free_once_the_first_ended(rt):
    rt.spawn(Squarer, "a")
    first = rt.imap("square", [1, 2, 3], run_id="busy")
    started = time.monotonic()
    with pytest.raises(RunInProgressError, match="'busy'") as raised:
        rt.map("square", [1, 2, 3], run_id="busy")
    assert time.monotonic() - started < 5
    assert raised.value.run_id == "busy" and isinstance(raised.value, ActorsError)
    with pytest.raises(RunInProgressError):
        next(rt.imap("square", [1, 2, 3], run_id="busy"))
    assert rt.map("square", [4], run_id="other") == [16]  # other ids run meanwhile
    assert list(first) == [1, 4, 9]
    assert rt.map("square", [1, 2, 3], run_id="busy") == [1, 4, 9]


def test_maps_with_one_run_id_from_two_threads_one_runs_and_the_other_raises(rt):
    class Slow(Agent):
        capabilities = ["slow"]

        def do_work(self, task):
            time.sleep(0.1)
            return task["payload"]

    rt.spawn(Slow, "s")
    outcome = {}
    first = threading.Thread(target=lambda: outcome.setdefault("first", rt.map("slow", range(20), run_id="t")))
    first.start()
    try:
        wait_for(lambda: [row for row in rt.runs() if row["run_id"] == "t"])  # the first has begun (2 s of work)
        with pytest.raises(RunInProgressError):
            rt.map("slow", range(20), run_id="t")
    finally:
        first.join()
    assert outcome["first"] == list(range(20))


def test_a_run_id_is_free_again_after_its_map_raised(rt):
    rt.spawn(Squarer, "a")
    with pytest.raises(ValueError, match="negative"):
        rt.map("square", [1, -2, 3], run_id="r")
    assert rt.map("square", [1, -2, 3], run_id="r", return_exceptions=True)[0] == 1
    with pytest.raises(ValueError, match="payload"):
        rt.map("square", [1, -2, 4], run_id="r")  # refused by its records: the id is freed too
    assert rt.map("square", [1, -2, 3], run_id="r", return_exceptions=True)[2] == 9


def test_a_run_id_is_free_again_once_its_imap_is_closed_or_dropped(rt):
    rt.spawn(Squarer, "a")
    started = rt.imap("square", range(50), run_id="r")
    assert next(started) == 0
    started.close()
    unstarted = rt.imap("square", range(50), run_id="r")
    unstarted.close()
    dropped = rt.imap("square", range(50), run_id="r")
    assert next(dropped) == 0
    del dropped
    gc.collect()
    never_read = rt.imap("square", range(50), run_id="r")
    del never_read
    gc.collect()
    assert rt.map("square", range(50), run_id="r") == [n * n for n in range(50)]


class Doubler(Agent):
    capabilities = ["double"]

    def do_work(self, task):
        return task["payload"] * 2


async def _aio_map_twice(rt, payloads):
    # More payloads than the async view reads ahead (256): the first run
    # can't end before its consumer lets it.
    first = rt.aio.imap("double", payloads, run_id="aio")
    assert await first.__anext__() == 0
    with pytest.raises(RunInProgressError):
        await rt.aio.map("double", payloads, run_id="aio")
    await first.aclose()
    return await rt.aio.map("double", payloads, run_id="aio")


def test_the_aio_views_refuse_a_run_id_in_progress_too(rt):
    rt.spawn(Doubler, "a")
    payloads = list(range(2000))
    assert asyncio.run(_aio_map_twice(rt, payloads)) == [n * 2 for n in payloads]


def test_a_run_resumes_in_a_new_runtime_on_the_same_state_file(tmp_path):
    path = str(tmp_path / "state.db")
    with Runtime(state_path=path) as rt:
        rt.spawn(Squarer, "a")
        assert rt.map("square", [1, 2, 3], run_id="r") == [1, 4, 9]
    with Runtime(state_path=path) as rt:
        rt.spawn(Squarer, "a")
        assert rt.map("square", [1, 2, 3], run_id="r") == [1, 4, 9]
        assert _executions(rt, [1, 2, 3]) == [1, 1, 1]  # the first runtime's updates, none since
        assert [row["done"] for row in rt.runs()] == [3]


_SCRIPT = """
import json, os, sys, time
from actors import Agent
from runtime import Runtime

LOG = sys.argv[2]

class Slow(Agent):
    capabilities = ["slow"]

    def do_work(self, task):
        n = task["payload"]
        time.sleep(0.01)
        fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, f"{n}\\n".encode())
        os.close(fd)
        return n * 3 + 1

with Runtime(state_path=sys.argv[1]) as rt:
    rt.spawn(Slow, "a")
    rt.spawn(Slow, "b")
    results = rt.map("slow", list(range(300)), run_id="crashy")
    print(json.dumps(results))
"""

AGENTS = 2
CHUNK_AT_MOST = 16  # 10 ms tasks get chunks sized to ~50 ms (`_map`): about 5 tasks, 16 with slack
IN_FLIGHT_BOUND = 2 * AGENTS * CHUNK_AT_MOST  # chunks in flight x chunk size (`runtime._runs`)


def _lines(path) -> list[int]:
    try:
        with open(path) as f:
            return [int(line) for line in f.read().split()]
    except FileNotFoundError:
        return []


def test_a_map_in_a_process_sigkilled_three_times_completes_with_each_task_run_about_once(tmp_path):
    script = tmp_path / "batch.py"
    script.write_text(textwrap.dedent(_SCRIPT))
    db, log = str(tmp_path / "state.db"), str(tmp_path / "executions.log")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    for kill in range(3):
        proc = subprocess.Popen([sys.executable, str(script), db, log], env=env, cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        target = len(_lines(log)) + 40
        deadline = time.monotonic() + 60
        while len(_lines(log)) < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, f"finished before kill {kill}: {proc.communicate()}"
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        psutil.wait_procs(children, timeout=20)  # agents and zygote exit by themselves
        assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    out, err = subprocess.Popen([sys.executable, str(script), db, log], env=env, cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE).communicate(timeout=90)
    assert json.loads(out) == [n * 3 + 1 for n in range(300)], err
    executions = _lines(log)
    assert sorted(set(executions)) == list(range(300))
    assert len(executions) <= 300 + 3 * IN_FLIGHT_BOUND
