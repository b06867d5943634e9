"""What launches agents: the `Runtime`, cross-process refs and the CLI.

Agents run one per OS process (forked by a clean zygote); the runtime's
process hosts the registry, the supervisor and the shared services.
"""

from runtime.local._launcher import PreloadError
from runtime._ref import AgentProxy, AgentRef
from runtime._backends import MultiAgentSystem, Runtime

from actors import __version__  # one version for both packages (setup.cfg reads it here)

__all__ = ["AgentProxy", "AgentRef", "MultiAgentSystem", "PreloadError", "Runtime", "__version__"]
