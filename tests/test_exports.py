"""The public names of the contract are exported, each once."""

from __future__ import annotations

import pykka

import actors
import runtime


def test_actors_exports_the_contract_names():
    for name in ["Agent", "AgentContext", "Message", "MessagePattern", "Event", "EventType", "StateVersion",
                 "ActorsError", "ActorDeadError", "AskTimeout", "NoCapableAgentError", "UnknownNamespaceError",
                 "NamespacePermissionError", "LockTimeout", "BrokenBarrierError", "MessageSerializationError",
                 "RemoteError"]:
        assert name in actors.__all__ and hasattr(actors, name)
    assert len(actors.__all__) == len(set(actors.__all__))


def test_runtime_exports_the_runtime_and_refs():
    for name in ["Runtime", "MultiAgentSystem", "AgentRef"]:
        assert name in runtime.__all__ and hasattr(runtime, name)


def test_every_error_derives_from_one_root_and_pykka_errors_stay_catchable():
    errors = [getattr(actors, n) for n in actors.__all__ if n.endswith("Error") or n in ("AskTimeout", "LockTimeout")]
    assert all(issubclass(e, actors.ActorsError) for e in errors)
    assert issubclass(actors.ActorDeadError, pykka.ActorDeadError)
    assert issubclass(actors.AskTimeout, pykka.Timeout)
    assert issubclass(actors.UnknownNamespaceError, ValueError)


def test_actors_imports_only_the_standard_library_and_pykka():
    import ast
    import sys
    from pathlib import Path

    allowed = set(sys.stdlib_module_names) | {"pykka", "actors"}
    for path in Path(actors.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"


def test_both_packages_carry_the_same_version():
    import actors
    import runtime

    assert actors.__version__ == runtime.__version__ and actors.__version__.count(".") == 2
