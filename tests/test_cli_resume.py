"""`actors run` with a `state_path`: resuming a spec's tasks, and `--fresh`."""

from __future__ import annotations

import textwrap

from test_cli import actors

_TEAM = """
    import os
    from actors import Agent

    class Once(Agent):
        capabilities = ["once"]

        def do_work(self, task):
            with open("executions.log", "a") as f:
                f.write(f"{task['payload']}\\n")
            if task["payload"] == "flaky" and not os.path.exists("healed"):
                raise ValueError("not yet")
            return task["payload"].upper()
"""

_SPEC = """
    [runtime]
    state_path = "state.db"
    preload = ["team"]

    [[agents]]
    name = "o"
    class = "team:Once"

    [[tasks]]
    type = "once"
    payload = "a"

    [[tasks]]
    type = "once"
    payload = "flaky"

    [[tasks]]
    type = "once"
    payload = "b"
"""


def _executions(tmp_path) -> list[str]:
    return sorted((tmp_path / "executions.log").read_text().split())


def test_a_spec_run_again_skips_the_tasks_with_recorded_results_and_fresh_runs_all(tmp_path):
    (tmp_path / "team.py").write_text(textwrap.dedent(_TEAM))
    (tmp_path / "spec.toml").write_text(textwrap.dedent(_SPEC))
    first = actors("run", "spec.toml", cwd=tmp_path)
    assert first.returncode == 1, first.stderr
    assert "failed  task-2 (once): ValueError: not yet" in first.stdout
    assert "skipped" not in first.stdout
    assert _executions(tmp_path) == ["a", "b", "flaky"]

    (tmp_path / "healed").write_text("")
    second = actors("run", "spec.toml", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "skipped 2 tasks" in second.stdout
    assert "result  task-1 (once): A (recorded)" in second.stdout
    assert "result  task-2 (once): FLAKY" in second.stdout
    assert _executions(tmp_path) == ["a", "b", "flaky", "flaky"]  # only the failed one ran again

    third = actors("run", "spec.toml", cwd=tmp_path)
    assert "skipped 3 tasks" in third.stdout
    assert _executions(tmp_path) == ["a", "b", "flaky", "flaky"]

    fresh = actors("run", "spec.toml", "--fresh", cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    assert "skipped" not in fresh.stdout
    assert _executions(tmp_path) == ["a", "a", "b", "b", "flaky", "flaky", "flaky"]


def test_a_changed_spec_is_a_new_run(tmp_path):
    (tmp_path / "team.py").write_text(textwrap.dedent(_TEAM))
    (tmp_path / "healed").write_text("")
    (tmp_path / "spec.toml").write_text(textwrap.dedent(_SPEC))
    assert actors("run", "spec.toml", cwd=tmp_path).returncode == 0
    (tmp_path / "spec.toml").write_text(textwrap.dedent(_SPEC).replace('"b"', '"c"'))
    out = actors("run", "spec.toml", cwd=tmp_path)
    assert "skipped" not in out.stdout
    assert _executions(tmp_path) == ["a", "a", "b", "c", "flaky", "flaky"]
