"""Serving and dialing over TCP: ``serve_tcp`` for the accepting side, ``connect_tcp`` for the dialing side."""

from __future__ import annotations

import asyncio

from rxchannel.core import MAX_FRAME_SIZE, ConnectionConfig, Role

from .peer import Peer
from .router import Router
from .transports import TransportLimits, connect_tcp_transport, start_tcp_server
from .transports._base import Transport

__all__ = ["Server", "connect_tcp", "largest_frame", "serve_tcp"]


class Server:
    """Accepts connections and runs one server-role :class:`Peer` per connection."""

    def __init__(self, router: Router, config: ConnectionConfig | None = None):
        self.router = router
        self.config = config
        self.peers: set[Peer] = set()
        self._server: asyncio.Server | None = None
        self.host = ""
        self.port = 0

    def accept(self, transport: Transport) -> Peer:
        """Run a server-role peer on an accepted transport (any kind)."""
        peer = Peer(transport, Role.SERVER, router=self.router, config=self.config)
        self.peers.add(peer)
        peer.closed.add_done_callback(lambda _f: self.peers.discard(peer))
        return peer

    @property
    def url(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    async def close(self) -> None:
        """Stop listening and close every connection."""
        if self._server is not None:
            self._server.close()
        await asyncio.gather(*(peer.close() for peer in list(self.peers)), return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def largest_frame(config: ConnectionConfig) -> int:
    """The largest frame worth accepting under ``config``: one whole item plus its metadata.

    A length prefix announcing more is refused before anything is buffered, so a peer
    cannot make us hold 16 MiB per connection when our items are small.
    """
    return min(MAX_FRAME_SIZE, config.max_payload_size + config.max_metadata_size + 64)


async def serve_tcp(
    router: Router,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    config: ConnectionConfig | None = None,
    limits: TransportLimits | None = None,
) -> Server:
    """Listen on ``host:port`` (port 0 picks a free one; read ``server.port``)."""
    server = Server(router, config)
    server._server = await start_tcp_server(
        server.accept, host, port, limits, max_message_size=largest_frame(config or ConnectionConfig())
    )
    sockname = server._server.sockets[0].getsockname()
    server.host, server.port = sockname[0], sockname[1]
    return server


async def connect_tcp(
    host: str,
    port: int,
    *,
    router: Router | None = None,
    config: ConnectionConfig | None = None,
    limits: TransportLimits | None = None,
) -> Peer:
    """Dial ``host:port`` and return a client-role :class:`Peer` (SETUP already sent)."""
    transport = await connect_tcp_transport(
        host, port, limits, max_message_size=largest_frame(config or ConnectionConfig())
    )
    return Peer(transport, Role.CLIENT, router=router, config=config)
