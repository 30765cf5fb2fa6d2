"""The peer as one stream's adapters see it: the one narrow interface between a stream
(:class:`~.stream.RemoteStream` inbound, :class:`~.sink.RemoteSink` outbound) and the
:class:`~.peer.Peer` that owns its connection and transport.

A stream's demand is not here: it is the core's, one handle per stream
(:class:`rxchannel.core.InboundDemand`, :class:`rxchannel.core.SendCredit`).
"""

from __future__ import annotations

from typing import Protocol

from rxchannel.core import Connection

__all__ = ["Link"]


class Link(Protocol):
    """The connection, the loop's clock, room on the transport, flushing, cancelling a stream."""

    @property
    def connection(self) -> Connection: ...
    @property
    def writable(self) -> bool: ...
    def now(self) -> float: ...
    def flush(self) -> None: ...
    def flush_soon(self) -> None: ...
    async def drain(self) -> None: ...
    def cancel(self, stream_id: int) -> None: ...
