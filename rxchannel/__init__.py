"""rxchannel: reactive streams over the wire, with demand that travels from sink to source.

The wire protocol is RSocket 1.0. See :mod:`rxchannel.core` for the sans-IO protocol,
:class:`Peer` for the asyncio runtime and :mod:`rxchannel.transports` for transports.
"""

from __future__ import annotations

from ._types import ApplicationError, Payload, Request
from .core import (
    ClosedResourceError,
    ConnectionConfig,
    ConnectionLostError,
    ErrorCode,
    LimitRate,
    LocalProtocolError,
    Manual,
    RemoteError,
    RemoteProtocolError,
    Role,
    RxChannelError,
    SetupRejectedError,
    StreamCancelledError,
    Window,
)
from .peer import DEFAULT_WINDOW, Peer
from .remote import RemoteStream
from .router import Router
from .server import Server, connect_tcp, serve_tcp

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_WINDOW",
    "ApplicationError",
    "ClosedResourceError",
    "ConnectionConfig",
    "ConnectionLostError",
    "ErrorCode",
    "LimitRate",
    "LocalProtocolError",
    "Manual",
    "Payload",
    "Peer",
    "RemoteError",
    "RemoteProtocolError",
    "RemoteStream",
    "Request",
    "Role",
    "Router",
    "RxChannelError",
    "Server",
    "SetupRejectedError",
    "StreamCancelledError",
    "Window",
    "connect_tcp",
    "serve_tcp",
]
