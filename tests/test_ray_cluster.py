"""The Ray backend on a real two-node Ray cluster, and the loss of a node:
the tests of `ray_cluster_cases`, run in a child pytest process.

Why a child: a Ray driver's process is Ray's to end. Its core worker
calls `_exit(1)` when the raylet or GCS it talks to is gone, and every
`ray.cluster_utils.Cluster` node started in a process installs a SIGTERM
handler there (kill the node's processes, then `sys.exit(1)`) that stays
after the cluster is shut down. Once, in a full CI run, the suite's
process ended with code 1 and no report during this module's teardown;
in a child in a session of its own, whatever Ray does can end only the
child, and a failure is reported here like any other.

Each test of `ray_cluster_cases` is a test here (its outcome and error
text come from the child); one more checks that the child ended cleanly
and left no process behind.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from child_pytest import ChildRun, case_names, run_child_pytest

pytest.importorskip("ray", reason="the Ray cluster tests need Ray (pip install ray)")

CASES = Path(__file__).with_name("ray_cluster_cases.py")
CHILD_TIMEOUT = 420.0  # the whole child run (~25 s here); far above any normal run

# The first test waits for the whole child run.
pytestmark = pytest.mark.timeout(CHILD_TIMEOUT + 60)


@pytest.fixture(scope="module")
def child_run(tmp_path_factory) -> ChildRun:
    report = tmp_path_factory.mktemp("ray-cluster") / "outcomes.jsonl"
    return run_child_pytest(CASES, report, timeout=CHILD_TIMEOUT)


@pytest.mark.parametrize("case", case_names(CASES))
def test_on_a_two_node_ray_cluster(child_run, case):
    outcome, why = child_run.outcome(case)
    if outcome == "skipped":
        pytest.skip(why)
    assert outcome == "passed", f"{case} {outcome} (in the child pytest process):\n{why}"


def test_the_cluster_tests_process_ends_cleanly_and_leaves_no_process(child_run):
    assert child_run.returncode is not None, f"the child ran over {CHILD_TIMEOUT} s:\n{child_run.output[-4000:]}"
    assert child_run.returncode == 0, f"the child exited with {child_run.returncode}:\n{child_run.output[-4000:]}"
    assert not child_run.leftovers, f"processes outlived the child (ended since): {child_run.leftovers}"
