"""Spinning before sleeping: a setting, checked, that never changes what arrives."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

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
    big = bytes(range(256)) * 12_000  # a reply that arrives over many reads
    assert [echo.ask(big, timeout=60) == big for _ in range(3)] == [True] * 3
print("ok")
"""


def run_with_spin(value: str, variable: str = "ACTORS_SPIN_US") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, variable: value, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", PROGRAM], env=env, capture_output=True, text=True, timeout=120, check=False
    )


SETTINGS = ["ACTORS_SPIN_US", "ACTORS_IDLE_SPIN_US"]


@pytest.mark.parametrize("variable", SETTINGS)
@pytest.mark.parametrize("spin", ["0", "200", "2000"], ids=["off", "default", "long"])
def test_asks_are_answered_whatever_the_spin(variable, spin):
    result = run_with_spin(spin, variable)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.mark.parametrize("variable", SETTINGS)
def test_a_spin_setting_that_is_not_a_number_is_named_in_the_error(variable):
    result = run_with_spin("fast", variable)
    assert result.returncode != 0
    assert f"{variable} must be a number of microseconds (0 or more), got 'fast'" in result.stderr


@pytest.mark.parametrize("variable", SETTINGS)
def test_a_negative_spin_setting_is_refused(variable):
    result = run_with_spin("-5", variable)
    assert result.returncode != 0
    assert f"{variable} must be a number of microseconds (0 or more), got '-5'" in result.stderr


def test_one_thread_of_a_process_spins_at_a_time():
    # A second spinner would only take the GIL from the first and from the
    # threads both wait for: it sleeps in its read at once instead.
    from runtime.wire._spin import Backoff

    first_spinning, release_first = threading.Event(), threading.Event()

    def first_probe() -> bool:
        first_spinning.set()
        return release_first.is_set()

    first = threading.Thread(target=Backoff().spin, args=(30.0, first_probe))
    first.start()
    try:
        assert first_spinning.wait(30)
        probed = []
        assert Backoff().spin(30.0, lambda: probed.append(1)) is False
        assert probed == []  # it never polled
    finally:
        release_first.set()
        first.join(30)
    assert Backoff().spin(1.0, lambda: True) is True  # the slot is free again
