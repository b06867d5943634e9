"""The `actors` command line (also `python -m runtime`)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from actors import Event, EventType, StateFileInUseError
from runtime._runs import RunLog
from runtime.cli._resume import open_run
from runtime.cli._spec import LaunchSpec, SpecError, agent_names, load_spec
from runtime.cli._status import ControlFile, StatusError, run_status
from runtime._tasks import Progress

__all__ = ["main"]

_EPILOG = """examples:
  actors run examples/quickstart.toml     run the agents and tasks of a spec
  actors run my_team:build                call build(runtime) to spawn agents
  actors status                           the process table of the runtime started here
  actors status --watch                   the same, refreshed every second
  python -m runtime --version
"""


def _parser() -> argparse.ArgumentParser:
    from runtime import __version__  # noqa: PLC0415 - runtime imports this module

    parser = argparse.ArgumentParser(
        prog="actors",
        description="Run teams of agents, each in its own process.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"actors {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start the agents of SPEC, run its tasks or serve until stopped")
    run.add_argument("spec", help="a TOML spec file, or module:callable taking the Runtime")
    run.add_argument("--quiet", action="store_true", help="print only task results")
    run.add_argument("--json", action="store_true", help="print JSON lines instead of text")
    run.add_argument("--fresh", action="store_true",
                     help="with a state_path: run every task again, forgetting results an earlier run recorded")
    status = sub.add_parser("status", help="show the processes of the runtime `actors run` started here")
    status.add_argument("--json", action="store_true", help="print the rows as JSON")
    status.add_argument("--address", help="the control file (or its directory) of the runtime to ask")
    status.add_argument("--watch", action="store_true", help="refresh every second, like top")
    return parser


class _Printer:
    def __init__(self, quiet: bool, as_json: bool) -> None:
        self.quiet, self.as_json = quiet, as_json
        self._lock = threading.Lock()

    def line(self, what: str, text: str, **fields: Any) -> None:
        if self.quiet and what not in ("result", "failed"):
            return
        with self._lock:
            if self.as_json:
                print(json.dumps({"event": what, **fields}, default=repr), flush=True)
            else:
                print(text, flush=True)

    def event(self, event: Event) -> None:
        p = event.payload
        if event.type is EventType.AGENT_JOINED:
            restarts = p.get("restarts", 0)
            note = f" (restart {restarts})" if restarts else ""
            self.line("joined", f"joined  {p.get('agent_id')} {p.get('capabilities', [])}{note}", **p)
        elif event.type is EventType.AGENT_LEFT:
            self.line("left", f"left    {p.get('agent_id')}: {p.get('reason')}", **p)


def _run(spec: LaunchSpec, printer: _Printer, fresh: bool = False) -> int:
    from runtime import Runtime  # noqa: PLC0415 - runtime imports this module

    try:
        rt = Runtime(**spec.runtime)
    except (TypeError, ValueError, NotImplementedError, ImportError, OSError, StateFileInUseError) as exc:
        raise SpecError(f"{spec.source} [runtime]: {exc}") from None
    stop = threading.Event()
    running_tasks = False

    def on_signal(*_: Any) -> None:
        stop.set()
        if running_tasks:
            raise KeyboardInterrupt  # abandon the tasks; the with-block shuts down

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    try:
        control: ControlFile | None = ControlFile(rt.control_info())
    except NotImplementedError:  # the Ray backend: Ray's own tools report on it
        control = None
    except (StatusError, OSError) as exc:
        rt.shutdown()
        print(f"actors: error: can't write the control file `actors status` reads: {exc}", file=sys.stderr)
        return 1
    try:
        with rt:
            rt.events.subscribe(EventType.AGENT_JOINED, printer.event)
            rt.events.subscribe(EventType.AGENT_LEFT, printer.event)
            try:
                if spec.setup is not None:
                    spec.setup(rt)
                for agent in spec.agents:
                    for name in agent_names(agent):
                        rt.spawn(agent.cls, name, capabilities=agent.capabilities, **agent.options)
            except Exception as exc:  # noqa: BLE001 - a user's agent failed to start
                print(f"actors: error: {spec.source}: starting the team failed: {type(exc).__name__}: {exc}",
                      file=sys.stderr)
                return 1
            if spec.tasks:
                running_tasks = True
                # With a state file, tasks recorded by an earlier run of this spec are skipped.
                log = open_run(rt, spec.tasks, fresh=fresh) if spec.runtime.get("state_path") else None
                return _run_tasks(rt, spec.tasks, printer, log)
            return _serve(printer, stop)
    finally:
        if control is not None:
            control.remove()


def _run_tasks(rt: Any, tasks: list[dict[str, Any]], printer: _Printer, log: RunLog | None = None) -> int:
    failures = 0
    skipped: list[int] = []

    def one(index_task: tuple[int, dict[str, Any]]) -> None:
        nonlocal failures
        index, table = index_task
        task = {"id": table.get("id", f"task-{index + 1}"), "type": table["type"], "payload": table.get("payload")}
        digests: dict[int, bytes] = {}
        if log is not None:
            found, digests = log.recorded([(index, table)])
            if found:
                skipped.append(index)
                printer.line("result", f"result  {task['id']} ({task['type']}): {found[index]} (recorded)",
                             task_id=task["id"], result=found[index], recorded=True)
                return
        try:
            result = rt.submit_task(task, retries=table.get("retries", 1), timeout=table.get("timeout"))
            if log is not None:
                log.record([(index, digests[index], result)])
        except Exception as exc:  # noqa: BLE001 - reported, counted, not raised
            failures += 1
            printer.line("failed", f"failed  {task['id']} ({task['type']}): {type(exc).__name__}: {exc}",
                         task_id=task["id"], error=f"{type(exc).__name__}: {exc}")
        else:
            printer.line("result", f"result  {task['id']} ({task['type']}): {result}",
                         task_id=task["id"], result=result)

    # On a terminal, many tasks get a progress bar (rate and ETA) on stderr.
    bar = Progress(len(tasks)) if sys.stderr.isatty() and len(tasks) > 1 and not printer.as_json else None

    def tracked(index_task: tuple[int, dict[str, Any]]) -> None:
        one(index_task)
        if bar is not None:
            bar.step()

    with ThreadPoolExecutor(max_workers=max(1, min(len(tasks), 8))) as pool:
        list(pool.map(tracked, enumerate(tasks)))
    if bar is not None:
        bar.close()
    if skipped:
        printer.line("skipped", f"skipped {len(skipped)} tasks whose results an earlier run recorded "
                     "(--fresh runs them again)", skipped=len(skipped))
    printer.line("done", f"done    {len(tasks) - failures}/{len(tasks)} tasks succeeded")
    return 1 if failures else 0


def _serve(printer: _Printer, stop: threading.Event) -> int:
    printer.line("serving", "serving until SIGINT or SIGTERM")
    while not stop.wait(0.5):
        pass
    printer.line("stopping", "stopping")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "status":
        try:
            return run_status(args.address, args.json, args.watch)
        except StatusError as exc:
            print(f"actors: error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 0
    printer = _Printer(args.quiet, args.json)
    try:
        spec = load_spec(args.spec)
        return _run(spec, printer, args.fresh)
    except SpecError as exc:
        print(f"actors: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def entry() -> None:
    sys.exit(main())
