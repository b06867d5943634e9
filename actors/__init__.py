"""What agent code imports: the agent base, records, services and errors.

Imports only the standard library and pykka; how agents get processes lives
in the `runtime` package.
"""

from actors import _aio  # noqa: F401 - registers `AgentContext.aio`
from actors._agent import Agent
from actors._base import ActorBase
from actors._context import AgentContext, current_agent_id
from actors._errors import (
    ActorDeadError,
    ActorsError,
    AgentStartError,
    AskTimeout,
    BrokenBarrierError,
    DeadlockError,
    LockTimeout,
    MessageSerializationError,
    NamespacePermissionError,
    NoCapableAgentError,
    QuorumNotReachedError,
    RemoteError,
    RunInProgressError,
    StateFileInUseError,
    StreamClosedError,
    UnknownNamespaceError,
    UnknownStreamError,
)
from actors._types import Event, EventType, Message, MessagePattern, StateVersion

__version__ = "0.1.0"  # the distribution's (actors-runtime) version; `runtime.__version__` is this one

__all__ = [
    "ActorBase",
    "ActorDeadError",
    "ActorsError",
    "Agent",
    "AgentContext",
    "AgentStartError",
    "AskTimeout",
    "BrokenBarrierError",
    "DeadlockError",
    "Event",
    "EventType",
    "LockTimeout",
    "Message",
    "MessagePattern",
    "MessageSerializationError",
    "NamespacePermissionError",
    "NoCapableAgentError",
    "QuorumNotReachedError",
    "RemoteError",
    "RunInProgressError",
    "StateFileInUseError",
    "StateVersion",
    "StreamClosedError",
    "UnknownNamespaceError",
    "UnknownStreamError",
    "__version__",
    "current_agent_id",
]
