"""Message transports: one RSocket frame per message, with send-side backpressure."""

from __future__ import annotations

from ._base import EndOfStream, Transport, TransportLimits
from .memory import MemoryTransport, memory_pair
from .tcp import TcpTransport, connect_tcp_transport, start_tcp_server

__all__ = [
    "EndOfStream",
    "MemoryTransport",
    "TcpTransport",
    "Transport",
    "TransportLimits",
    "connect_tcp_transport",
    "memory_pair",
    "start_tcp_server",
]
