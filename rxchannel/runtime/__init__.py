"""The asyncio runtime: a :class:`Peer` binds one sans-IO connection to one transport.

* :mod:`.peer` — the read loop, flushing, the keepalive timer, event dispatch;
* :mod:`.stream` — :class:`RemoteStream`, our inbound half of a stream as an async iterator;
* :mod:`.producer` — our outbound half: a source pulled within credit and transport room;
* :mod:`.router` — routes, the :class:`Request` handlers see, results and errors;
* :mod:`.server` — serving and dialing by URL.
"""

from __future__ import annotations

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
