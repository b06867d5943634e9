"""Frames on the wire between processes.

A frame is ``kind (1 byte) | request id (8) | name length (2) | name | body``
where body is one pickle. The header stays outside the pickle so a body that
can't be unpickled can still be answered (with the error) by request id.
"""

from __future__ import annotations

import struct
from typing import Any

from runtime._serialization import loads

__all__ = ["ASK", "LOOKUP", "REPLY", "STATS", "TELL", "decode", "decode_header", "encode"]

TELL = 1  # deliver body to the named actor; no reply
ASK = 2  # deliver body with a reply future; a REPLY frame answers
REPLY = 3  # body is (ok, value) for the request id
LOOKUP = 4  # registry: where does the named actor live? body unused
STATS = 5  # host: mailbox depths of the actors hosted here

_HEADER = struct.Struct("<BQH")
HEADER_SIZE = _HEADER.size


def encode(kind: int, request_id: int, name: str, body: bytes) -> bytes:
    name_bytes = name.encode()
    return b"".join((_HEADER.pack(kind, request_id, len(name_bytes)), name_bytes, body))


def decode_header(frame: bytes) -> tuple[int, int, str, memoryview]:
    """Split a frame into kind, request id, name and the (still pickled) body."""
    kind, request_id, name_len = _HEADER.unpack_from(frame)
    end = HEADER_SIZE + name_len
    view = memoryview(frame)
    return kind, request_id, bytes(view[HEADER_SIZE:end]).decode(), view[end:]


def decode(frame: bytes) -> tuple[int, int, str, Any]:
    kind, request_id, name, body = decode_header(frame)
    return kind, request_id, name, loads(body)
