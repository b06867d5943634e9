"""Run some tests in a child pytest process, and read their outcomes here.

For tests whose machinery may end the process running them: the Ray
cluster tests (see `test_ray_cluster`). A Ray driver's process can be
ended by Ray itself (its core worker calls `_exit(1)` when the raylet or
GCS it is connected to is gone; each `ray.cluster_utils.Cluster` node
started in a process leaves a SIGTERM handler there that exits it), so
they run in a child in a session of its own: whatever Ray does to that
process or its process group can't reach the suite's.

Two halves in one module:

- in the child, loaded with `-p child_pytest`: a plugin that appends each
  test phase's outcome to the JSON-lines file named by `CHILD_REPORT`,
  flushed at once, so the outcomes of the tests that ran survive even if
  the child is then ended abruptly;
- in the parent: `run_child_pytest`, which runs the child (bounded in
  time), then ends (by PID) and names any process of the child's session
  still alive, and `ChildRun.outcome(name)` for each test's result.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

__all__ = ["ChildRun", "run_child_pytest", "case_names"]

REPORT_ENV = "CHILD_REPORT"
_HERE = Path(__file__).resolve().parent


# -- in the child: the plugin ------------------------------------------------------

def pytest_runtest_logreport(report) -> None:
    """Runs in the child's main thread after each phase of each test."""
    path = os.environ.get(REPORT_ENV)
    if not path:
        return
    line = {"name": report.nodeid.rsplit("::", 1)[-1], "when": report.when, "outcome": report.outcome,
            "text": report.longreprtext if report.outcome != "passed" else ""}
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")
        out.flush()


# -- in the parent -----------------------------------------------------------------

def case_names(path: Path) -> list[str]:
    """The names of the test functions defined at the top of module `path`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")]


@dataclass
class ChildRun:
    """What a child pytest run left: its exit code, output and outcomes."""

    returncode: int | None  # None: it was ended at the deadline
    output: str
    leftovers: list[str]  # processes of its session that outlived it (ended since)
    phases: dict[str, list[dict[str, str]]] = field(default_factory=dict)  # test name -> its phases' reports

    def outcome(self, name: str) -> tuple[str, str]:
        """("passed" | "failed" | "skipped" | "not run", why) for test `name`."""
        phases = self.phases.get(name)
        if not phases:
            return "not run", f"the child's output ended:\n{self.output[-4000:]}"
        failed = [p for p in phases if p["outcome"] == "failed"]
        if failed:
            return "failed", "\n".join(f"[{p['when']}] {p['text'][-3000:]}" for p in failed)
        if any(p["outcome"] == "skipped" for p in phases):
            return "skipped", next(p["text"] for p in phases if p["outcome"] == "skipped")
        if not any(p["when"] == "teardown" for p in phases):
            return "not run", f"the child ended during the test:\n{self.output[-4000:]}"
        return "passed", ""


def _session_of(pid: int) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != pid and os.getsid(proc.pid) == pid and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (OSError, psutil.Error):
            continue
    return found


def run_child_pytest(path: Path, report: Path, *, timeout: float, grace: float = 10.0) -> ChildRun:
    """Run pytest on test module `path` in a child process, in a new
    session, for at most `timeout` s; then end (SIGKILL, by PID) whatever of
    its session is still there `grace` s after. `report` is where its
    plugin writes outcomes."""
    env = dict(os.environ, **{REPORT_ENV: str(report)})
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_HERE), env.get("PYTHONPATH", "")) if p)
    command = [sys.executable, "-m", "pytest", str(path), "-p", "child_pytest", "-p", "no:cacheprovider",
               "-q", "-rA", "--color=no"]
    output_path = report.with_suffix(".out")
    with open(output_path, "wb") as output:
        child = subprocess.Popen(command, cwd=_HERE.parent, env=env, stdin=subprocess.DEVNULL, stdout=output,
                                 stderr=subprocess.STDOUT, start_new_session=True)
        try:
            returncode: int | None = child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            returncode = None
            child.send_signal(signal.SIGKILL)
            child.wait()
        except BaseException:  # e.g. Ctrl-C here: don't leave the child (it has its own session)
            child.kill()
            child.wait()
            raise
    # What the child started is in its session unless it made its own: e.g.
    # Ray's processes, if the child died before ending them.
    deadline = time.monotonic() + grace
    while (left := _session_of(child.pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    leftovers = []
    for proc in left:
        try:
            leftovers.append(" ".join(proc.cmdline())[:120])
            proc.kill()
            proc.wait(timeout=10)
        except (psutil.Error, psutil.TimeoutExpired):
            continue
    phases: dict[str, list[dict[str, str]]] = {}
    if report.exists():
        for line in report.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            phases.setdefault(entry["name"], []).append(entry)
    return ChildRun(returncode, output_path.read_text(encoding="utf-8", errors="replace"), leftovers, phases)
