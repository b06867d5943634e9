"""The `actors` command line (also `python -m runtime`)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

from actors import Event, EventType, StateFileInUseError
from runtime._runs import RunLog
from runtime.cli._resume import open_run
from runtime.cli._spec import LaunchSpec, SpecError, agent_names, load_spec
from runtime.cli._status import ControlFile, StatusError, run_status
from runtime._progress import Progress
from runtime.wire._spin import check_environment

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
                     help="with a state_path: run every task again, ignoring results an earlier run recorded")
    status = sub.add_parser("status", help="show the processes of the runtime `actors run` started here")
    status.add_argument("--json", action="store_true", help="print the rows as JSON")
    status.add_argument("--address", help="the control file (or its directory) of the runtime to ask")
    status.add_argument("--watch", action="store_true", help="refresh every second, like top")
    return parser


class _Printer:
    """Lines on stdout, from any thread; above the progress bar while one is drawn."""

    def __init__(self, quiet: bool, as_json: bool) -> None:
        self.quiet, self.as_json = quiet, as_json
        self.lock = threading.Lock()
        self.bar: Progress | None = None

    def line(self, what: str, text: str, **fields: Any) -> None:
        if self.quiet and what not in ("result", "failed"):
            return
        with self.lock:
            out = json.dumps({"event": what, **fields}, default=repr) if self.as_json else text
            if self.bar is not None:
                self.bar.print_above(out)
            else:
                print(out, flush=True)

    def log(self, record: logging.LogRecord) -> None:
        """An agent's forwarded log record: on stderr (JSON lines: on stdout)."""
        agent = getattr(record, "agent", record.name.rpartition(".")[2])
        text = record.getMessage()
        if record.exc_text:
            text = f"{text}\n{record.exc_text}"
        with self.lock:
            if self.as_json:
                out = json.dumps({"event": "log", "agent": agent, "level": record.levelname,
                                  "logger": getattr(record, "agent_logger", record.name), "message": text})
                stream = sys.stdout
            else:
                out, stream = f"log     {agent} {record.levelname}: {text}", sys.stderr
            if self.bar is not None:
                self.bar.print_above(out, stream)
            else:
                print(out, file=stream, flush=True)

    def event(self, event: Event) -> None:
        p = event.payload
        if event.type is EventType.AGENT_JOINED:
            restarts = p.get("restarts", 0)
            note = f" (restart {restarts})" if restarts else ""
            self.line("joined", f"joined  {p.get('agent_id')} {p.get('capabilities', [])}{note}", **p)
        elif event.type is EventType.AGENT_LEFT:
            self.line("left", f"left    {p.get('agent_id')}: {p.get('reason')}", **p)


class _Signals:
    """SIGINT and SIGTERM while `actors run` runs: noted, never raised.

    The handler only records the signal (a handler that raised could do so
    anywhere, e.g. inside a lock or the shutdown itself: the traceback of a
    second Ctrl-C); the main thread looks at `received` between short waits.
    A second signal while stopping is told it is under way, nothing more.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._old = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self.received is not None:
            os.write(2, b"actors: stopping already (agents are ending their tasks)\n")
            return
        self.received = signum

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process it ended (130, 143)."""
        return 128 + (self.received or 0)

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class _LogLines(logging.Handler):
    """Prints the agents' log records (logger `actors.agent`) through the printer."""

    def __init__(self, printer: _Printer) -> None:
        super().__init__()
        self.printer = printer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.printer.log(record)
        except Exception:  # noqa: BLE001 - e.g. a closed stdout: logging's own way
            self.handleError(record)


def _run(spec: LaunchSpec, printer: _Printer, fresh: bool = False) -> int:
    from runtime import Runtime  # noqa: PLC0415 - runtime imports this module

    signals = _Signals()
    agents_log = logging.getLogger("actors.agent")
    handler = _LogLines(printer)
    agents_log.addHandler(handler)
    agents_log.propagate = False  # printed here, not again by logging's last resort
    if agents_log.level == logging.NOTSET:
        agents_log.setLevel(logging.WARNING if printer.quiet else logging.INFO)
    try:
        return _run_with(spec, printer, signals, Runtime, fresh)
    finally:
        signals.restore()
        agents_log.removeHandler(handler)


def _run_with(spec: LaunchSpec, printer: _Printer, signals: _Signals, runtime_cls: Any, fresh: bool = False) -> int:
    try:
        rt = runtime_cls(**spec.runtime)
    except (TypeError, ValueError, NotImplementedError, ImportError, OSError, StateFileInUseError) as exc:
        raise SpecError(f"{spec.source} [runtime]: {exc}") from None
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
            try:
                code = _start_and_run(rt, spec, printer, signals, fresh)
            finally:
                if signals.received is not None:
                    rt._interrupting = True  # stop the agents now, not after their tasks
            return code
    finally:
        if control is not None:
            control.remove()


def _start_and_run(rt: Any, spec: LaunchSpec, printer: _Printer, signals: _Signals, fresh: bool = False) -> int:
    rt.events.subscribe(EventType.AGENT_JOINED, printer.event)
    rt.events.subscribe(EventType.AGENT_LEFT, printer.event)
    try:
        if spec.setup is not None:
            spec.setup(rt)
        for agent in spec.agents:
            for name in agent_names(agent):
                if signals.received is not None:
                    break
                rt.spawn(agent.cls, name, capabilities=agent.capabilities, **agent.options)
    except Exception as exc:  # noqa: BLE001 - a user's agent failed to start
        print(f"actors: error: {spec.source}: starting the team failed: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return 1
    if signals.received is not None and spec.tasks:  # the batch was cut short before it began
        printer.line("stopping", "stopping", signal=signal.Signals(signals.received).name)
        return signals.exit_code
    if spec.tasks:
        # With a state file, tasks recorded by an earlier run of this spec are skipped.
        log = open_run(rt, spec.tasks, fresh=fresh) if spec.runtime.get("state_path") else None
        return _run_tasks(rt, spec.tasks, printer, signals, log)
    return _serve(printer, signals)


def _run_tasks(
    rt: Any, tasks: list[dict[str, Any]], printer: _Printer, signals: _Signals, log: RunLog | None = None
) -> int:
    """Run the spec's tasks, eight at a time; on SIGINT/SIGTERM hand out no more.

    Worker threads take the next task only while no signal came; the main
    thread waits in short steps so it sees a signal at once, and returns
    without waiting for the tasks in flight (the runtime's interrupted
    shutdown stops their agents). Their threads are daemons: nothing waits
    for them at exit.
    """
    counts = {"ok": 0, "failed": 0, "skipped": 0}
    lock = threading.Lock()
    pending = iter(enumerate(tasks))
    # On a terminal, many tasks get a progress bar (rate and ETA) on stderr.
    bar = Progress(len(tasks)) if len(tasks) > 1 and not printer.as_json else None  # drawn on a terminal only
    printer.bar = bar

    def one(index: int, table: dict[str, Any]) -> None:
        task = {"id": table.get("id", f"task-{index + 1}"), "type": table["type"], "payload": table.get("payload")}
        digests: dict[int, bytes] = {}
        if log is not None:
            found, digests = log.recorded([(index, table)])
            if found:
                with lock:
                    counts["ok"] += 1
                    counts["skipped"] += 1
                printer.line("result", f"result  {task['id']} ({task['type']}): {found[index]} (recorded)",
                             task_id=task["id"], result=found[index], recorded=True)
                return
        try:
            result = rt.submit_task(task, retries=table.get("retries", 1), timeout=table.get("timeout"))
            if log is not None:
                log.record([(index, digests[index], result)])
        except Exception as exc:  # noqa: BLE001 - reported, counted, not raised
            if signals.received is not None:
                return  # ended by the interrupt: not the task's failure
            with lock:
                counts["failed"] += 1
            printer.line("failed", f"failed  {task['id']} ({task['type']}): {type(exc).__name__}: {exc}",
                         task_id=task["id"], error=f"{type(exc).__name__}: {exc}")
        else:
            with lock:
                counts["ok"] += 1
            printer.line("result", f"result  {task['id']} ({task['type']}): {result}",
                         task_id=task["id"], result=result)
        if bar is not None:
            with printer.lock:
                bar.step()

    def worker() -> None:
        while signals.received is None:
            with lock:
                item = next(pending, None)
            if item is None:
                return
            one(*item)

    threads = [threading.Thread(target=worker, name=f"task-{i}", daemon=True)
               for i in range(max(1, min(len(tasks), 8)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive() and signals.received is None:
            thread.join(0.1)
    printer.bar = None
    if bar is not None:
        bar.close()
    total, ok, failed = len(tasks), counts["ok"], counts["failed"]
    if signals.received is not None:
        name = signal.Signals(signals.received).name
        printer.line("stopping", f"stopping on {name}: {ok + failed}/{total} tasks done, the rest not sent",
                     signal=name, ok=ok, failed=failed, total=total)
        return signals.exit_code
    if counts["skipped"]:
        printer.line("skipped", f"skipped {counts['skipped']} tasks whose results an earlier run recorded "
                     "(--fresh runs them again)", skipped=counts["skipped"])
    printer.line("done", f"done    {ok}/{total} tasks succeeded", ok=ok, failed=failed, total=total)
    return 1 if failed else 0


def _serve(printer: _Printer, signals: _Signals) -> int:
    """Serve until SIGINT or SIGTERM: the normal end of a run without tasks, exit 0."""
    if signals.received is None:
        printer.line("serving", "serving until SIGINT or SIGTERM")
    while signals.received is None:
        time.sleep(0.1)  # the handler only notes the signal (see `_Signals`)
    printer.line("stopping", "stopping", signal=signal.Signals(signals.received).name)
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        check_environment()
    except ValueError as exc:
        print(f"actors: error: {exc}", file=sys.stderr)
        return 2
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
