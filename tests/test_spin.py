"""Spinning before sleeping: a setting, checked, that never changes what arrives."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROGRAM = """
from actors import Agent
from runtime import Runtime

class Echo(Agent):
    def on_receive(self, message):
        return message

with Runtime() as rt:
    echo = rt.spawn(Echo, "echo")
    assert [echo.ask(i, timeout=30) for i in range(300)] == list(range(300))
print("ok")
"""


def run_with_spin(value: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ACTORS_SPIN_US": value, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", PROGRAM], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_asks_are_answered_with_spinning_turned_off():
    result = run_with_spin("0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_asks_are_answered_with_a_long_spin():
    result = run_with_spin("2000")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_a_spin_setting_that_is_not_a_number_is_named_in_the_error():
    result = run_with_spin("fast")
    assert result.returncode != 0
    assert "ACTORS_SPIN_US must be a number of microseconds, got 'fast'" in result.stderr


def test_a_negative_spin_setting_is_refused():
    result = run_with_spin("-5")
    assert result.returncode != 0
    assert "ACTORS_SPIN_US must not be negative" in result.stderr
