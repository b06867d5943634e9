"""Reading a launch spec: a TOML file or `module:callable`, checked up front.

Every problem becomes one `SpecError` line naming the spec and the field,
so `actors run` never shows a traceback for a bad spec.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from actors import Agent
from runtime.local._supervisor import RESTART_POLICIES

__all__ = ["AgentSpec", "LaunchSpec", "SpecError", "load_spec"]

# Every keyword of Runtime(...), the Ray backend's included.
_RUNTIME_KEYS = {
    "state_path": str, "max_history": int, "backend": str, "start_timeout": (int, float),
    "state_synchronous": str, "address": str, "num_cpus": int, "preload": (list, str),
    "task_records": (int, str),  # an int >= 0, or "all" (TOML has no None)
}
_AGENT_KEYS = {
    "name": str, "class": str, "capabilities": list, "replicas": int, "restart": str,
    "max_restarts": int, "restart_window": (int, float), "args": list, "kwargs": dict,
}
_TASK_KEYS = {"type": str, "payload": object, "id": str, "timeout": (int, float), "retries": int}


class SpecError(Exception):
    """A launch spec that can't be used; the message names the problem."""


@dataclass
class AgentSpec:
    name: str
    cls: type[Agent]
    capabilities: list[str] | None = None
    replicas: int = 1
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class LaunchSpec:
    source: str
    runtime: dict[str, Any] = field(default_factory=dict)
    agents: list[AgentSpec] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    setup: Callable[[Any], Any] | None = None


def _import(target: str, where: str) -> Any:
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise SpecError(f"{where}: {target!r} is not of the form module:name")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # the current directory is importable
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SpecError(f"{where}: can't import module {module_name!r}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - the module itself is broken
        raise SpecError(f"{where}: importing {module_name!r} raised {type(exc).__name__}: {exc}") from None
    try:
        obj = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise SpecError(f"{where}: module {module_name!r} has no {attr!r}") from None
    return obj


def _check_fields(table: Any, allowed: dict[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise SpecError(f"{where}: expected a table, got {type(table).__name__}")
    for key, value in table.items():
        if key not in allowed:
            raise SpecError(f"{where}: unknown field {key!r} (known: {', '.join(sorted(allowed))})")
        expected = allowed[key]
        wrong = not isinstance(value, expected) or (isinstance(value, bool) and expected is int)
        if expected is not object and wrong:
            names = expected.__name__ if isinstance(expected, type) else " or ".join(t.__name__ for t in expected)
            raise SpecError(f"{where}: field {key!r} must be {names}, got {value!r}")
    return table


def load_spec(source: str) -> LaunchSpec:
    """Parse and check `source` (a .toml path or `module:callable`)."""
    if not source.endswith(".toml") and ":" in source and not os.path.exists(source):
        setup = _import(source, source)
        if not callable(setup):
            raise SpecError(f"{source}: {setup!r} is not callable")
        return LaunchSpec(source=source, setup=setup)
    try:
        with open(source, "rb") as handle:
            text = handle.read().decode()
        data = tomllib.loads(text)
    except FileNotFoundError:
        raise SpecError(f"{source}: no such spec file") from None
    except IsADirectoryError:
        raise SpecError(f"{source}: is a directory, not a spec file") from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"{source}: not a UTF-8 text file: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{source}: TOML syntax error: {_toml_error(text, exc)}") from None
    _check_fields(data, {"runtime": dict, "agents": list, "tasks": list}, source)
    runtime = _check_fields(data.get("runtime", {}), _RUNTIME_KEYS, f"{source} [runtime]")
    if "task_records" in runtime:
        keep = runtime["task_records"]
        if keep == "all":
            runtime["task_records"] = None
        elif isinstance(keep, str) or keep < 0:
            raise SpecError(f"{source} [runtime]: field 'task_records' must be an int >= 0 or \"all\", got {keep!r}")
    backend = runtime.get("backend", "local")
    for ray_only in ("address", "num_cpus"):
        if ray_only in runtime and backend != "ray":
            raise SpecError(f"{source} [runtime]: field {ray_only!r} is for backend = \"ray\" only "
                            f"(this spec runs on backend {backend!r})")
    if "start_timeout" in runtime and not runtime["start_timeout"] > 0:
        raise SpecError(f"{source} [runtime]: start_timeout must be positive, got {runtime['start_timeout']!r}")
    spec = LaunchSpec(source=source, runtime=runtime)
    names: set[str] = set()
    for i, table in enumerate(data.get("agents", [])):
        where = f"{source} [[agents]] #{i + 1}"
        _check_fields(table, _AGENT_KEYS, where)
        for required in ("name", "class"):
            if required not in table:
                raise SpecError(f"{where}: missing field {required!r}")
        cls = _import(table["class"], f"{where} class")
        if not (isinstance(cls, type) and issubclass(cls, Agent)):
            raise SpecError(f"{where}: {table['class']!r} is not a subclass of actors.Agent")
        replicas = table.get("replicas", 1)
        if replicas < 1:
            raise SpecError(f"{where}: replicas must be at least 1, got {replicas}")
        if table.get("restart", "permanent") not in RESTART_POLICIES:
            policies = ", ".join(repr(p) for p in RESTART_POLICIES)
            raise SpecError(f"{where}: restart must be one of {policies}, got {table['restart']!r}")
        for count in ("max_restarts", "restart_window"):
            if table.get(count, 0) < 0:
                raise SpecError(f"{where}: {count} can't be negative, got {table[count]!r}")
        caps = table.get("capabilities")
        if caps is not None and not all(isinstance(c, str) for c in caps):
            raise SpecError(f"{where}: capabilities must be a list of strings")
        options = {k: table[k] for k in ("restart", "max_restarts", "restart_window", "kwargs") if k in table}
        if "args" in table:
            options["args"] = tuple(table["args"])
        agent = AgentSpec(table["name"], cls, caps, replicas, options)
        for name in agent_names(agent):
            if name in names:
                raise SpecError(f"{where}: agent name {name!r} is used twice")
            names.add(name)
        spec.agents.append(agent)
    for i, table in enumerate(data.get("tasks", [])):
        where = f"{source} [[tasks]] #{i + 1}"
        _check_fields(table, _TASK_KEYS, where)
        if "type" not in table:
            raise SpecError(f"{where}: missing field 'type'")
        spec.tasks.append(dict(table))
    if not spec.agents:
        raise SpecError(f"{source}: no agents to run (add an [[agents]] table with name and class)")
    return spec


def _toml_error(text: str, exc: tomllib.TOMLDecodeError) -> str:
    """tomllib's message, plus the line an unclosed array or inline table
    began on: tomllib says only where it noticed, often "at end of document"."""
    message = str(exc)
    unclosed = message.startswith(("Unclosed array", "Unclosed inline table"))
    if not (unclosed or "at end of document" in message):
        return message
    lines = text.splitlines()
    noticed = re.search(r"at line (\d+)", message)
    end = int(noticed.group(1)) if noticed else len(lines)
    kinds = [("array", "[", "]"), ("inline table", "{", "}")]
    if message.startswith("Unclosed inline table"):
        kinds.reverse()
    for number in range(min(end, len(lines)), 0, -1):  # the nearest line above that opens more than it closes
        line = lines[number - 1].split("#", 1)[0]
        for kind, opener, closer in kinds:
            if "=" in line and line.count(opener) > line.count(closer):
                return f"{message}: the {kind} opened on line {number} is not closed ({lines[number - 1].strip()})"
    return message


def agent_names(agent: AgentSpec) -> list[str]:
    """The names the agent's replicas run under (`name-0`, `name-1`, ...)."""
    if agent.replicas == 1:
        return [agent.name]
    return [f"{agent.name}-{i}" for i in range(agent.replicas)]
