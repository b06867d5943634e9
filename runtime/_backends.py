"""`Runtime`, the public class, and the backends it chooses from by name.

`Runtime(backend=...)` looks the name up in `BACKENDS` and makes an
instance of that backend's class, which subclasses `Runtime` (so
`isinstance(rt, Runtime)` holds whichever runs the agents). Backends are
named here by import path and imported only when chosen: the local runtime
and the Ray runtime never import each other, nor this module them, and Ray
is imported only by a program that asks for it.
"""

from __future__ import annotations

import importlib
from typing import Any, cast

from runtime._runtime_base import RuntimeBase

__all__ = ["BACKENDS", "MultiAgentSystem", "Runtime", "backend_class"]

# name -> "module:class"; the class subclasses `Runtime`.
BACKENDS: dict[str, str] = {
    "local": "runtime.local._runtime:LocalRuntime",
    "ray": "runtime.ray._runtime:RayRuntime",
}


def backend_class(name: str) -> type[Runtime]:
    """The class that runs agents for backend `name` (imported now)."""
    if not isinstance(name, str) or name not in BACKENDS:
        known = " or ".join(repr(b) for b in BACKENDS)
        msg = f"unknown backend {name!r}; use {known}"
        raise ValueError(msg)
    module, _, cls = BACKENDS[name].partition(":")
    return cast("type[Runtime]", getattr(importlib.import_module(module), cls))


class Runtime(RuntimeBase):
    """A team of agents, each in its own OS process, and their services.

    Use it as a context manager, or call `shutdown()`: either way every
    agent's `on_stop` runs and no agent process is left behind.

    `Runtime(*, state_path=None, max_history=1000, backend="local",
    start_timeout=60.0, state_synchronous="NORMAL", preload=())` runs the
    agents on this machine (`runtime.local`); `backend="ray"` (with
    `address=` and `num_cpus=` for `ray.init`) runs each in a Ray actor
    (`runtime.ray`). Either way the object is an instance of a subclass of
    `Runtime` with the same public surface (see `RuntimeBase`).
    """

    def __new__(cls, *args: Any, backend: str = "local", **kwargs: Any) -> Runtime:
        if cls is Runtime:
            cls = backend_class(backend)
        return super().__new__(cls)


MultiAgentSystem = Runtime
