"""The wire: how bytes and messages travel between this project's processes.

Backend-neutral plumbing under every ref: frames and their kinds
(`_frames`), pickling with cloudpickle (`_serialization`), a socket
connection with its asks in flight (`_channel`), replies (`_reply`), the
spin-then-sleep waits (`_spin`), waits of the main thread that see signals
(`_signals`), batched tells (`_batching`), the node each process runs to
listen, connect and route (`_node`; its accept-side guard `_handshake`, its
threads' connections out `_outbound`), and an agent's mailbox that reads
its own sockets (`_reactor`). Change here when a message's path or cost
changes.

Nothing here is public: `runtime` re-exports what users need.
"""

__all__: list[str] = []
