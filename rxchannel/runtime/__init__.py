"""The asyncio runtime: a :class:`Peer` binds one sans-IO connection to one transport.

* :mod:`.peer` — the read loop, flushing, the keepalive timer, event dispatch;
* :mod:`.stream` — :class:`RemoteStream`, our inbound half of a stream as an async iterator;
* :mod:`.sink` — :class:`RemoteSink`, our outbound half: a source pulled, or items pushed,
  within the remote's credit and the transport's room;
* :mod:`.link` — the one interface between a stream's adapters and its peer;
* :mod:`.router` — routes, the :class:`Request` handlers see, results and errors;
* :mod:`.server` — serving and dialing by URL.

What serves many peers from one source (broadcast, the work queue, relays) is
:mod:`rxchannel.fanout`, one room up.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

from .peer import Peer
from .router import Handler, Request, Requester, Router
from .server import Server, connect, connect_tcp, serve, serve_tcp
from .sink import RemoteSink
from .stream import RemoteStream
from .values import Payload, as_payload

__all__ = [
    "Handler",
    "Payload",
    "Peer",
    "RemoteSink",
    "RemoteStream",
    "Request",
    "Requester",
    "Router",
    "Server",
    "as_payload",
    "connect",
    "connect_tcp",
    "serve",
    "serve_tcp",
]

#: Names that moved to :mod:`rxchannel.fanout` (kept one release here; they warn).
_MOVED = {
    "ACK_TIMEOUT", "JOINED_LATE", "LAGGED", "Broadcast", "DeadLetter", "Job", "JoinedLateError", "LaggedError",
    "Relay", "Subscription", "WorkQueue", "WorkerRecord", "WorkerStats", "forward", "relay", "work",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        warnings.warn(f"rxchannel.runtime.{name} moved to rxchannel.fanout.{name}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module("rxchannel.fanout"), name)  # a deprecation shim only
    raise AttributeError(f"module 'rxchannel.runtime' has no attribute {name!r}")
