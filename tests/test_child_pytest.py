"""Tests run in a child pytest process (`child_pytest`, used by the Ray
cluster tests) can't end the suite's process, and are reported here."""

from __future__ import annotations

import textwrap

import psutil

from child_pytest import case_names, run_child_pytest

CHILD_MODULE = '''
import os
import signal
import subprocess
import sys
import time


def test_passes():
    pass


def test_fails():
    assert 1 == 2, "as it should"


def test_ends_its_process_group_leaving_a_process():
    # As Ray's process reaper does (killpg(0, SIGTERM)) when it thinks its
    # parent is gone; the process ignoring SIGTERM outlives the child.
    ready = os.environ["KEEPER_PID"]
    subprocess.Popen([sys.executable, "-c", "import os, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                      "open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(300)", ready])
    deadline = time.monotonic() + 30
    while not (os.path.exists(ready) and open(ready).read()) and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(0, signal.SIGTERM)


def test_never_runs():
    pass
'''


def test_a_child_that_ends_its_process_group_leaves_this_process_running_and_its_tests_reported(
    tmp_path, monkeypatch
):
    module = tmp_path / "child_cases.py"
    module.write_text(textwrap.dedent(CHILD_MODULE))
    monkeypatch.setenv("KEEPER_PID", str(tmp_path / "keeper.pid"))

    run = run_child_pytest(module, tmp_path / "outcomes.jsonl", timeout=60, grace=0.5)

    assert run.returncode == -15  # the child got the SIGTERM; this process did not
    assert run.outcome("test_passes") == ("passed", "")
    outcome, why = run.outcome("test_fails")
    assert outcome == "failed" and "as it should" in why
    assert run.outcome("test_ends_its_process_group_leaving_a_process")[0] == "not run"
    assert run.outcome("test_never_runs")[0] == "not run"
    keeper = int((tmp_path / "keeper.pid").read_text())
    assert len(run.leftovers) == 1 and "SIG_IGN" in run.leftovers[0]
    assert not psutil.pid_exists(keeper) or psutil.Process(keeper).status() == psutil.STATUS_ZOMBIE


def test_case_names_are_a_modules_test_functions(tmp_path):
    module = tmp_path / "child_cases.py"
    module.write_text(textwrap.dedent(CHILD_MODULE))
    assert case_names(module) == ["test_passes", "test_fails", "test_ends_its_process_group_leaving_a_process",
                                  "test_never_runs"]
