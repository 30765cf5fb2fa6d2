"""Message transports: one RSocket frame per message, with send-side backpressure.

``memory`` (in-process pairs, optionally shaped) and ``tcp`` are imported here; the
WebSocket (aiohttp) and WebRTC DataChannel (aiortc) transports load when used, through
the registry (:func:`dial`, :func:`listen`) or their modules.
"""

from __future__ import annotations

from ._base import (
    KIND_HEADER,
    EndOfStream,
    HostNotFoundError,
    InboxTransport,
    Listener,
    Transport,
    TransportLimits,
    TransportOptions,
    WrongTransportError,
)
from ._limits import ListenLimits
from .memory import MemoryTransport, memory_pair
from .registry import KINDS, dial, hub_url, kind_of, listen
from .tcp import TcpTransport, connect_tcp_transport, start_tcp_server

__all__ = [
    "KINDS",
    "KIND_HEADER",
    "EndOfStream",
    "HostNotFoundError",
    "InboxTransport",
    "ListenLimits",
    "Listener",
    "MemoryTransport",
    "TcpTransport",
    "Transport",
    "TransportLimits",
    "TransportOptions",
    "WrongTransportError",
    "connect_tcp_transport",
    "dial",
    "hub_url",
    "kind_of",
    "listen",
    "memory_pair",
    "start_tcp_server",
]
