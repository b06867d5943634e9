"""`actors run` resuming the `[[tasks]]` of a spec that has a `state_path`.

The run id is a digest of the spec's tasks, so running the same spec
again finds the results recorded by an earlier run (killed part-way, or
finished) and runs only the tasks without one; `--fresh` drops the
records first. The records are those of `map(..., run_id=...)`
(`runtime._runs`): each task's result is recorded once it succeeded.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from runtime._runs import RunLog

__all__ = ["open_run", "run_id_for"]


def run_id_for(tasks: list[dict[str, Any]]) -> str:
    """The run id of a spec's tasks: the same tasks, in the same order, the same id."""
    text = json.dumps(tasks, sort_keys=True, default=repr)
    return "actors-run:" + hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def open_run(rt: Any, tasks: list[dict[str, Any]], *, fresh: bool) -> RunLog:
    """The records of this spec's tasks in `rt`'s store (dropped first with `fresh`)."""
    run_id = run_id_for(tasks)
    if fresh:
        rt.drop_run(run_id)
    return RunLog(rt.state, run_id, len(tasks))
