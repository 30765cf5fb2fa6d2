"""rxchannel: reactive streams over the wire, with demand that travels from sink to source.

The wire protocol is RSocket 1.0. Layers, bottom up (``docs/architecture.md``):
:mod:`rxchannel.core` (sans-IO protocol), :mod:`rxchannel.transports`,
:mod:`rxchannel.webrtc`, :mod:`rxchannel.runtime` (:class:`Peer`), :mod:`rxchannel.files`,
:mod:`rxchannel.pipes`, :mod:`rxchannel.fanout`, :mod:`rxchannel.hub` (the file-sharing
application), and the facades :mod:`rxchannel.reactive` + :mod:`rxchannel.operators` (ReactiveX),
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
        ConnectFailedError,
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
        WindowSpec,
    )
    from .runtime import (
        Payload,
        Peer,
        RemoteSink,
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

#: The public names, written once: the lazy loader below and tests/test_api.py read this list
#: (the TYPE_CHECKING imports above give type checkers the same names; the test holds them equal).
__all__ = [
    "DEFAULT_WINDOW",
    "Adaptive",
    "ApplicationError",
    "ClosedResourceError",
    "ConnectFailedError",
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
    "RemoteSink",
    "RemoteStream",
    "Request",
    "Role",
    "Router",
    "RxChannelError",
    "Server",
    "SetupRejectedError",
    "StreamCancelledError",
    "Window",
    "WindowSpec",
    "connect",
    "connect_tcp",
    "serve",
    "serve_tcp",
]

#: Where the names live, cheapest first: the sans-IO core never pulls in asyncio.
_LAYERS = (".core", ".runtime")


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'rxchannel' has no attribute {name!r}")
    for layer in _LAYERS:
        module = importlib.import_module(layer, __name__)
        if name in module.__all__:
            value = getattr(module, name)
            globals()[name] = value
            return value
    raise AttributeError(f"rxchannel.{name} is listed in __all__ but no layer exports it")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
