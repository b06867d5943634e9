"""Users' type checkers see the library's types: `mypy --strict` on a script
using the public API reports nothing (both packages ship `py.typed`), and
the library itself passes `mypy --strict` (pyproject.toml's `[tool.mypy]`)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

_SCRIPT = """
    from __future__ import annotations

    from typing import Any

    from actors import Agent, EventType, Message, StateVersion
    from runtime import AgentRef, Runtime


    class Worker(Agent):
        capabilities = ["compute"]

        def on_start(self) -> None:
            self.done = 0

        def do_work(self, task: dict[str, Any]) -> dict[str, Any]:
            self.done += 1
            self.ctx.state.set("shared", "last", task["id"])
            return {"status": "completed", "output": sum(task["payload"]["data"])}

        def handle_request(self, message: Message) -> Any:
            return super().handle_request(message)


    def main() -> None:
        with Runtime() as rt:
            ref: AgentRef = rt.spawn(Worker, "w", restart="transient")
            print(ref.ask({"op": "x"}, timeout=5), ref.proxy())
            rt.state.set("shared", "k", 1)
            version: StateVersion | None = rt.state.get_version("shared", "k")
            print(version, rt.state.get("shared", "k"), rt.store.list_keys())
            results: list[Any] = rt.map("compute", [{"data": [1, 2]}])
            print(results, rt.submit_task({"type": "compute", "payload": {"data": [3]}}))
            with rt.sync.get_lock("l"):
                pass
            rt.events.emit("me", EventType.ERROR_OCCURRED, {"x": 1})
            print(rt.agent_info(), rt.agents)
"""


def test_packages_ship_py_typed_markers():
    assert (ROOT / "actors" / "py.typed").is_file() and (ROOT / "runtime" / "py.typed").is_file()
    assert "py.typed" in (ROOT / "setup.cfg").read_text()


def _needs_mypy() -> None:
    pytest.importorskip("mypy", reason="mypy is not installed (pip install '.[test]' brings it)")


def test_mypy_strict_on_a_user_script_reports_no_error(tmp_path):
    _needs_mypy()
    (tmp_path / "user.py").write_text(textwrap.dedent(_SCRIPT))
    (tmp_path / "mypy.ini").write_text("[mypy]\nstrict = True\n")
    # As an installed package: found on the path, typed only through py.typed,
    # and errors inside the library are not the user's to see.
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "--cache-dir", str(tmp_path / ".cache"),
         "user.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=110, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Success: no issues found" in out.stdout


def test_mypy_strict_on_the_library_reports_no_error(tmp_path):
    _needs_mypy()
    # From the repository root, so pyproject.toml's [tool.mypy] applies (its
    # per-module allowances for third-party packages without types).
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / ".cache"),
         "-p", "actors", "-p", "runtime"],
        cwd=ROOT, capture_output=True, text=True, timeout=110, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Success: no issues found" in out.stdout, out.stdout + out.stderr
