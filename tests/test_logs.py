"""Agents' log records and crash tracebacks reach the runtime's `logging`."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from actors import Agent
from conftest import wait_for

ROOT = Path(__file__).resolve().parent.parent


class Chatty(Agent):
    def on_receive(self, message):
        log = logging.getLogger("chatty.work")
        if message == "warn":
            log.warning("disk %s is %d%% full", "/data", 93)
        elif message == "info":
            log.info("just so you know")
        elif message == "raise":
            raise ValueError("a told message that raises")
        elif message == "exit":
            log.error("last words before a hard exit")
            os._exit(7)
        return "ok"


def _records(caplog, agent, text):
    return [r for r in caplog.records if r.name == f"actors.agent.{agent}" and text in r.getMessage()]


def test_an_agents_log_record_is_emitted_in_the_runtimes_process_on_its_logger(rt, caplog):
    caplog.set_level(logging.WARNING)
    ref = rt.spawn(Chatty, "chatty")
    assert ref.ask("warn", timeout=10) == "ok"
    [record] = wait_for(lambda: _records(caplog, "chatty", "disk /data is 93% full"))
    assert record.levelno == logging.WARNING
    assert record.agent_logger == "chatty.work" and record.processName == "chatty"
    assert record.process != os.getpid() and record.pathname == __file__


def test_info_records_are_forwarded_when_the_application_lets_them_through(rt, caplog):
    caplog.set_level(logging.INFO)
    logging.getLogger("actors.agent").setLevel(logging.INFO)
    try:
        ref = rt.spawn(Chatty, "talker")
        ref.ask("info", timeout=10)
        wait_for(lambda: _records(caplog, "talker", "just so you know"))
    finally:
        logging.getLogger("actors.agent").setLevel(logging.NOTSET)


def test_the_traceback_of_a_told_message_that_raises_reaches_the_runtime(rt, caplog):
    caplog.set_level(logging.WARNING)
    ref = rt.spawn(Chatty, "crasher")
    ref.tell("raise")

    def traceback_logged():
        return [r for r in caplog.records if r.name == "actors.agent.crasher" and r.exc_text
                and "ValueError: a told message that raises" in r.exc_text]

    [record] = wait_for(traceback_logged)
    assert record.levelno == logging.ERROR
    assert f'File "{__file__}"' in record.exc_text  # with the agent's own file and line


def test_a_record_logged_just_before_the_process_exits_is_not_lost(rt, caplog):
    caplog.set_level(logging.WARNING)
    ref = rt.spawn(Chatty, "doomed", restart="temporary")
    ref.tell("exit")
    wait_for(lambda: _records(caplog, "doomed", "last words before a hard exit"))


def test_a_class_from_main_keeps_its_file_name_in_the_forwarded_traceback(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent("""
        import logging, time
        from actors import Agent
        from runtime import Runtime

        class Fragile(Agent):
            def on_receive(self, message):
                raise KeyError("from __main__")

        seen = []

        class Keep(logging.Handler):
            def emit(self, record):
                seen.append(record)

        logging.getLogger("actors.agent").addHandler(Keep())
        with Runtime() as rt:
            rt.spawn(Fragile, "fragile").tell("boom")
            deadline = time.monotonic() + 30
            while not any(r.exc_text for r in seen) and time.monotonic() < deadline:
                time.sleep(0.01)
        print(next(r.exc_text for r in seen if r.exc_text))
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert f'File "{script}", line 8, in on_receive' in out.stdout
    assert 'raise KeyError("from __main__")' in out.stdout  # the source line too


def test_actors_run_prints_what_agents_log(tmp_path):
    (tmp_path / "team.py").write_text(textwrap.dedent("""
        import logging
        from actors import Agent

        class Noisy(Agent):
            capabilities = ["noise"]
            def do_work(self, task):
                logging.getLogger("noisy").info("working on %s", task["payload"])
                return "done"
    """))
    (tmp_path / "spec.toml").write_text(
        '[[agents]]\nname = "noisy"\nclass = "team:Noisy"\n\n[[tasks]]\ntype = "noise"\npayload = "p1"\n'
    )
    out = subprocess.run([sys.executable, "-m", "runtime", "run", "spec.toml"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert "log     noisy INFO: working on p1" in out.stderr
