"""Every example runs as written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULES = {"quickstart_agents.py"}  # imported by a spec, not run on their own
SCRIPTS = sorted(p.name for p in (ROOT / "examples").glob("*.py") if not p.name.startswith("_") and p.name not in MODULES)


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_script_runs(script):
    out = subprocess.run(
        [sys.executable, f"examples/{script}"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()
