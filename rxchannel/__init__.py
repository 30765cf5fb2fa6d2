"""rxchannel: reactive streams over the wire, with demand that travels from sink to source.

The wire protocol is RSocket 1.0. See :mod:`rxchannel.core` for the sans-IO protocol,
:class:`Peer` for the asyncio runtime and :mod:`rxchannel.transports` for transports.

Names are imported lazily, so ``import rxchannel.core`` stays free of asyncio.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._types import ApplicationError, Payload, Request
    from .core import (
        Adaptive,
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

_WHERE = {
    "ApplicationError": "._types",
    "Payload": "._types",
    "Request": "._types",
    "DEFAULT_WINDOW": ".peer",
    "Peer": ".peer",
    "RemoteStream": ".remote",
    "Router": ".router",
    "Server": ".server",
    "connect_tcp": ".server",
    "serve_tcp": ".server",
}
_CORE = [
    "Adaptive",
    "ClosedResourceError",
    "ConnectionConfig",
    "ConnectionLostError",
    "ErrorCode",
    "LimitRate",
    "LocalProtocolError",
    "Manual",
    "RemoteError",
    "RemoteProtocolError",
    "Role",
    "RxChannelError",
    "SetupRejectedError",
    "StreamCancelledError",
    "Window",
]
_WHERE.update(dict.fromkeys(_CORE, ".core"))

__all__ = [
    "Adaptive",
    "ApplicationError",
    "ClosedResourceError",
    "ConnectionConfig",
    "ConnectionLostError",
    "DEFAULT_WINDOW",
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


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'rxchannel' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
