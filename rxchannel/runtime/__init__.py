"""The asyncio runtime: a :class:`Peer` binds one sans-IO connection to one transport.

* :mod:`.peer` — the read loop, flushing, the keepalive timer, event dispatch;
* :mod:`.stream` — :class:`RemoteStream`, our inbound half of a stream as an async iterator;
* :mod:`.producer` — our outbound half: a source pulled within credit and transport room;
* :mod:`.router` — routes, the :class:`Request` handlers see, results and errors;
* :mod:`.server` — serving and dialing by URL;
* :mod:`.broadcast` — one source read once for many subscribers, paced by demand;
* :mod:`.queue` — work balanced by demand (``Router.queue``), at least once; :mod:`.worker` — :func:`work`;
* :mod:`.relay` — serving a stream pulled from another peer, demand kept end to end.
"""

from __future__ import annotations

from .broadcast import JOINED_LATE, LAGGED, Broadcast, JoinedLateError, LaggedError, Subscription
from .peer import Peer
from .queue import ACK_TIMEOUT, DeadLetter, Job, WorkerRecord, WorkQueue
from .relay import Relay, forward, relay
from .router import Handler, Request, Requester, Router
from .server import Server, connect, connect_tcp, serve, serve_tcp
from .sink import RemoteSink
from .stream import RemoteStream
from .values import Payload, as_payload
from .worker import WorkerStats, work

__all__ = [
    "ACK_TIMEOUT",
    "JOINED_LATE",
    "LAGGED",
    "Broadcast",
    "DeadLetter",
    "Handler",
    "Job",
    "JoinedLateError",
    "LaggedError",
    "Payload",
    "Peer",
    "Relay",
    "RemoteSink",
    "RemoteStream",
    "Request",
    "Requester",
    "Router",
    "Server",
    "Subscription",
    "WorkQueue",
    "WorkerRecord",
    "WorkerStats",
    "as_payload",
    "connect",
    "connect_tcp",
    "forward",
    "relay",
    "serve",
    "serve_tcp",
    "work",
]
