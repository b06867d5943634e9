"""The layout keeps its promises: no import cycles, `actors/` on the standard
library and pykka alone, small modules, and each room of `runtime/` says
what it holds.

The import graph is read from the source with `ast` (nothing is imported).
Imports inside functions count (a lazy import is still a dependency);
imports under `if TYPE_CHECKING:` don't (they never run). Run this file as
a script to print the graph's cycles and its deepest import chain.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("actors", "runtime")
MAX_LINES = 450


def module_files() -> dict[str, Path]:
    """Module name -> its file, for every module of our packages."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_names(path: Path, module: str) -> list[str]:
    """Every module name `path` imports when it runs (absolute, dotted)."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.append(base)
            names.extend(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return names


@cache
def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of our packages it imports."""
    modules = module_files()
    graph = {}
    for module, path in modules.items():
        graph[module] = {name for name in imported_names(path, module) if name in modules and name != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return found


def depth(graph: dict[str, set[str]]) -> dict[str, int]:
    """How many levels of our own imports stand under each module (acyclic graph)."""

    @cache
    def level(module: str) -> int:
        return 1 + max((level(dep) for dep in graph[module]), default=0)

    return {module: level(module) for module in graph}


def test_nothing_in_actors_or_runtime_imports_in_a_circle():
    assert cycles(import_graph()) == []


def test_the_local_and_ray_backends_do_not_import_each_other():
    graph = import_graph()
    for module, deps in graph.items():
        if module.startswith("runtime.local"):
            assert not {d for d in deps if d.startswith("runtime.ray")}, module
        if module.startswith("runtime.ray"):
            assert "runtime.local._runtime" not in deps, module


def test_actors_imports_only_the_standard_library_and_pykka():
    allowed = set(sys.stdlib_module_names) | {"pykka", "actors", "__future__"}
    for module, path in module_files().items():
        if module.split(".")[0] != "actors":
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):  # every import, typing-only ones too
            if isinstance(node, ast.Import):
                tops = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                tops = [(node.module or "").split(".")[0]]
            else:
                continue
            assert set(tops) <= allowed, f"{module} imports {tops}"


def test_no_module_is_longer_than_the_limit():
    lengths = {module: len(path.read_text().splitlines()) for module, path in module_files().items()}
    assert {m: n for m, n in lengths.items() if n > MAX_LINES} == {}


def test_each_room_of_runtime_has_a_docstring_and_all():
    rooms = [p for p in (ROOT / "runtime").iterdir() if (p / "__init__.py").is_file()]
    assert {p.name for p in rooms} >= {"wire", "local", "ray", "cli"}
    for room in rooms:
        package = importlib.import_module(f"runtime.{room.name}")
        assert package.__doc__ and package.__doc__.strip(), room
        assert isinstance(package.__all__, list), room


def test_importing_runtime_imports_neither_ray_nor_the_command_line():
    code = "import sys, runtime; print(sorted(m for m in sys.modules if m.startswith(('runtime.ray', 'runtime.cli', 'ray'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, check=True)
    assert out.stdout.strip() == "[]"


if __name__ == "__main__":
    graph = import_graph()
    found = cycles(graph)
    for component in found:
        print("cycle:", " <-> ".join(component))
    if not found:
        levels = depth(graph)
        deepest = max(levels, key=levels.get)
        chain = [deepest]
        while graph[chain[-1]]:
            chain.append(max(graph[chain[-1]], key=levels.get))
        print(f"no cycles in {len(graph)} modules; deepest chain ({levels[deepest]} levels): {' -> '.join(chain)}")
    sys.exit(1 if found else 0)
