"""Every Python snippet in the README runs as written.

Each ```python block is run on its own, as a script, from the repository
root; fragments that are not meant to run use other fence languages
(`sh`, `toml`, `text`). A block that uses the Ray backend is skipped when
Ray is not installed, as the README says it needs `pip install '.[ray]'`.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_FENCE = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks() -> list[str]:
    return _FENCE.findall((ROOT / "README.md").read_text())


def test_the_readme_shows_python_snippets():
    assert len(python_blocks()) >= 3


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_snippet_runs_as_written(index, tmp_path):
    code = python_blocks()[index]
    uses_ray = 'backend="ray"' in code
    if uses_ray and importlib.util.find_spec("ray") is None:
        pytest.skip("the snippet needs Ray: pip install '.[ray]'")
    script = tmp_path / f"readme_snippet_{index}.py"
    script.write_text(code)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=ROOT, env=env,
                         timeout=300 if uses_ray else 90)
    assert out.returncode == 0, f"README snippet {index} failed:\n{code}\n--- stderr:\n{out.stderr}"
    assert out.stdout.strip(), "each snippet prints what it shows"
