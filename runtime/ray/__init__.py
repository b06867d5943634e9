"""The Ray backend: `Runtime(backend="ray")`, agents in Ray actors.

`_runtime.RayRuntime` places each agent in a Ray actor of its own (`_host`)
and reaches it through `_ref.RayRef`; the services, task routing and the
supervisor's rules are the local backend's and the neutral runtime's own
code. Imported only when that backend is chosen, so Ray stays optional.

Nothing here is public: `runtime` re-exports what users need.
"""

__all__: list[str] = []
