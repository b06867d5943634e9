"""The local backend: agents as OS processes on this machine.

`Runtime()` (backend "local") is `_runtime.LocalRuntime`. A clean zygote
process (`_zygote`) forks every agent, `_launcher` asks it for one and waits
for `on_start`, `_host` is what runs inside the agent's process, the
`_supervisor` notices deaths and applies the restart policy (its rules serve
the Ray backend too), `_inline` runs idle services in the reading thread,
and `_rundir` is the private folder of the runtime's sockets. Change here
for how agent processes start, die, restart and clean up.

Nothing here is public: `runtime` re-exports what users need.
"""

__all__: list[str] = []
