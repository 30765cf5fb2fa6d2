"""rxchannel: reactive streams over the wire, with demand that travels from sink to source.

The wire protocol is RSocket 1.0. Layers, bottom up (``docs/architecture.md``):
:mod:`rxchannel.core` (sans-IO protocol), :mod:`rxchannel.transports`,
:mod:`rxchannel.runtime` (:class:`Peer`), :mod:`rxchannel.files` (sources, sinks, the hub),
and the facades :mod:`rxchannel.reactive` + :mod:`rxchannel.operators` (ReactiveX),
:mod:`rxchannel.aio` and :mod:`rxchannel.aiostream`.

Names are imported lazily, so ``import rxchannel.core`` stays free of asyncio.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .core import (
        DEFAULT_WINDOW,
        Adaptive,
        ApplicationError,
        ClosedResourceError,
        ConnectionConfig,
        ConnectionLostError,
        ErrorCode,
        InboundDemand,
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
    from .runtime import (
        Payload,
        Peer,
        RemoteStream,
        Request,
        Router,
        Server,
        connect,
        connect_tcp,
        serve,
        serve_tcp,
    )

__version__ = "0.2.0"

_CORE = [
    "DEFAULT_WINDOW",
    "Adaptive",
    "ApplicationError",
    "ClosedResourceError",
    "ConnectionConfig",
    "ConnectionLostError",
    "ErrorCode",
    "InboundDemand",
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
_RUNTIME = [
    "Payload",
    "Peer",
    "RemoteStream",
    "Request",
    "Router",
    "Server",
    "connect",
    "connect_tcp",
    "serve",
    "serve_tcp",
]
_WHERE = dict.fromkeys(_CORE, ".core") | dict.fromkeys(_RUNTIME, ".runtime")

__all__ = [
    "DEFAULT_WINDOW",
    "Adaptive",
    "ApplicationError",
    "ClosedResourceError",
    "ConnectionConfig",
    "ConnectionLostError",
    "ErrorCode",
    "InboundDemand",
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
    "connect",
    "connect_tcp",
    "serve",
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
