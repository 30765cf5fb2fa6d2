"""Serving a router and dialing a peer, by URL over any transport.

URL schemes (DESIGN.md §6): ``http://host:port`` (WebRTC DataChannel, HTTP offer/answer
signaling at ``POST /offer``), ``ws://host:port/rsocket`` (WebSocket) and
``tcp://host:port``; the transport registry (:mod:`rxchannel.transports.registry`) maps
them to transports.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

from rxchannel.core import (
    MAX_FRAME_SIZE,
    ConnectionConfig,
    ErrorCode,
    ErrorFrame,
    RemoteProtocolError,
    Role,
    RxChannelError,
    encode_frame,
)
from rxchannel.transports import Listener, ListenLimits, Transport, TransportOptions, dial, listen

from .peer import Peer
from .router import Router

__all__ = ["Server", "connect", "connect_tcp", "largest_frame", "serve", "serve_tcp"]

#: Connections and refused logins, one line each (events ``connection.open``/``close``/``refused``).
log = logging.getLogger("rxchannel.server")
_SETUP_REFUSALS = (ErrorCode.INVALID_SETUP, ErrorCode.UNSUPPORTED_SETUP, ErrorCode.REJECTED_SETUP)


def largest_frame(config: ConnectionConfig | None) -> int:
    """The largest frame worth accepting under ``config``: one whole item plus its metadata.

    A peer announcing more is refused before anything is buffered, so it cannot make us
    hold 16 MiB per connection when our items are small.
    """
    config = config or ConnectionConfig()
    return min(MAX_FRAME_SIZE, config.max_payload_size + config.max_metadata_size + 64)


def _options(options: TransportOptions | None, config: ConnectionConfig | None) -> TransportOptions:
    return dataclasses.replace(options or TransportOptions(), max_message_size=largest_frame(config))


class Server:
    """Accepts transports and runs one server-role :class:`Peer` per connection.

    ``max_peers`` caps open connections whatever their transport (listeners cap their own
    sockets too; a WebRTC connection arrives through signaling, so this is its cap): one
    more is dropped as it arrives.
    """

    def __init__(self, router: Router, config: ConnectionConfig | None = None, *, max_peers: int = 256):
        if max_peers <= 0:
            raise ValueError("max_peers must be positive")
        self.router = router
        self.config = config
        self.max_peers = max_peers
        self.peers: set[Peer] = set()
        self.refused = 0
        self.listener: Listener | None = None
        #: the kind of transport served (for logs)
        self.kind = "?"

    def accept(self, transport: Transport) -> Peer | None:
        """Run a server-role peer on an accepted transport (any kind); None if over ``max_peers``."""
        if len(self.peers) >= self.max_peers:
            self.refused += 1
            reason = f"the hub is busy: {len(self.peers)} connections open (limit {self.max_peers}); try again later"
            log.warning("refused a connection from %s: %s", transport.remote, reason)
            try:  # say why (an RSocket client reads it as a refused SETUP), then close
                transport.write([encode_frame(ErrorFrame(stream_id=0, code=ErrorCode.REJECTED_SETUP, message=reason))])
            except RxChannelError:
                transport.abort()
                return None
            asyncio.get_running_loop().create_task(transport.close())
            return None
        peer = Peer(transport, Role.SERVER, router=self.router, config=self.config)
        self.peers.add(peer)
        remote, opened = transport.remote, time.monotonic()
        log.info(
            "connection from %s (%s)",
            remote,
            self.kind,
            extra={"event": "connection.open", "fields": {"remote": remote, "transport": self.kind}},
        )

        def closed(future: asyncio.Future[RxChannelError | None]) -> None:
            self.peers.discard(peer)
            error = None if future.cancelled() else future.result()
            fields = {"remote": remote, "seconds": round(time.monotonic() - opened, 3)}
            if isinstance(error, RemoteProtocolError) and error.code in _SETUP_REFUSALS:
                log.warning(
                    "refused the connection from %s: %s",
                    remote,
                    error,
                    extra={"event": "connection.refused", "fields": {**fields, "reason": str(error)}},
                )
                return
            why = "closed" if error is None else str(error)
            log.info(
                "connection from %s ended: %s",
                remote,
                why,
                extra={"event": "connection.close", "fields": {**fields, "reason": why}},
            )

        peer.closed.add_done_callback(closed)
        return peer

    @property
    def url(self) -> str:
        """The URL to give to clients."""
        if self.listener is None:
            raise RuntimeError("the server is not listening")
        return self.listener.url

    @property
    def urls(self) -> list[str]:
        """Every URL clients can dial: one per address for a wildcard bind (0.0.0.0, ::), else one."""
        if self.listener is None:
            raise RuntimeError("the server is not listening")
        return list(self.listener.urls)

    @property
    def port(self) -> int:
        return int(getattr(self.listener, "port", 0))

    async def close(self) -> None:
        """Stop listening and close every connection."""
        await asyncio.gather(*(peer.close() for peer in list(self.peers)), return_exceptions=True)
        if self.listener is not None:
            await self.listener.close()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def serve(
    router: Router,
    *,
    transport: str = "tcp",
    host: str = "127.0.0.1",
    port: int = 0,
    config: ConnectionConfig | None = None,
    options: TransportOptions | None = None,
) -> Server:
    """Serve ``router`` over ``transport`` (``webrtc``, ``ws`` or ``tcp``) on ``host:port``.

    Read ``server.url`` for the address to give out. Port 0 picks a free one. The
    connection cap is ``options.listen_limits.max_connections`` (256 by default).

    Raises:
        ValueError: an unknown transport.
        OSError: the address cannot be bound.
    """
    limits = (options.listen_limits if options is not None else None) or ListenLimits()
    server = Server(router, config, max_peers=limits.max_connections)
    server.kind = transport
    server.listener = await listen(transport, host, port, lambda t: server.accept(t), _options(options, config))
    return server


async def connect(
    url: str,
    *,
    router: Router | None = None,
    config: ConnectionConfig | None = None,
    options: TransportOptions | None = None,
) -> Peer:
    """Dial ``url`` and return a client-role :class:`Peer` (its SETUP is on its way).

    Raises:
        ValueError: an unsupported URL.
        ConnectionError / TimeoutError: the hub is unreachable.
    """
    transport = await dial(url, _options(options, config))
    return Peer(transport, Role.CLIENT, router=router, config=config)


async def serve_tcp(
    router: Router, host: str = "127.0.0.1", port: int = 0, *, config: ConnectionConfig | None = None
) -> Server:
    """Listen for TCP connections on ``host:port`` (port 0 picks a free one; read ``server.port``)."""
    return await serve(router, transport="tcp", host=host, port=port, config=config)


async def connect_tcp(
    host: str, port: int, *, router: Router | None = None, config: ConnectionConfig | None = None
) -> Peer:
    """Dial ``host:port`` over TCP and return a client-role :class:`Peer`."""
    bracketed = f"[{host}]" if ":" in host else host
    return await connect(f"tcp://{bracketed}:{port}", router=router, config=config)
