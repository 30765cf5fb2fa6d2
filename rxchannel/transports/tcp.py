"""TCP transport: RSocket's TCP binding, each frame behind a 24-bit length prefix.

Built on an asyncio ``Protocol`` rather than streams: received bytes are cut into frames
in ``data_received`` and handed over in batches, with no task or queue hop per frame.
When the application stops reading, reading from the socket pauses, so the peer's TCP
window closes and *its* :meth:`drain` blocks: backpressure crosses the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Callable
from typing import cast
from urllib.parse import urlsplit

from rxchannel.core import (
    MAX_FRAME_SIZE,
    LengthPrefixDecoder,
    RemoteProtocolError,
    RxChannelError,
    setup_refusal,
)

from ._base import (
    KIND_HEADER,
    InboxTransport,
    TransportLimits,
    TransportOptions,
    WrongTransportError,
    lost,
    unreachable,
)
from ._limits import ListenLimits
from .addresses import dialable_hosts
from .admission import PROVEN, ThrottledLog, Unfinished

log = logging.getLogger("rxchannel.tcp")

_HTTP_METHODS = (b"GET ", b"POST ", b"PUT ", b"HEAD ", b"OPTIONS ", b"DELETE ", b"PATCH ", b"CONNECT ")
_NOT_HTTP = "This is an rxchannel TCP hub: it speaks RSocket over TCP, not HTTP. Dial it as tcp://HOST:PORT.\n"

__all__ = ["TcpListener", "TcpTransport", "connect_tcp_transport", "dial", "listen", "start_tcp_server"]


class TcpTransport(InboxTransport, asyncio.Protocol):
    """One TCP connection carrying length-prefixed frames."""

    eof_message = "the peer closed the TCP connection"

    def __init__(
        self,
        limits: TransportLimits | None = None,
        *,
        receive_buffer: int = 1 << 20,
        max_message_size: int = MAX_FRAME_SIZE,
        server: bool = False,
    ):
        InboxTransport.__init__(self, limits)
        #: largest frame sent or accepted; a peer announcing more breaks the connection
        self.max_message_size = max_message_size
        self._decoder = LengthPrefixDecoder(max_message_size)
        self._receive_buffer = receive_buffer
        self._paused_reading = False
        self._transport: asyncio.Transport | None = None
        self.connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        #: called once when the connection is gone (a listener counts its connections with it)
        self.on_lost: Callable[[], object] | None = None
        #: the accepting side (answers an HTTP client in HTTP) or the dialing side, and its URL
        self.server = server
        self.url = ""
        #: the first bytes received, until we know they are not HTTP (None once checked)
        self._head: bytes | None = b""
        #: told, after each read that changes it, how many bytes of a frame not yet received
        #: whole are held (a listener's budget for half-sent frames)
        self.on_partial: Callable[[int], object] | None = None
        self._partial = 0

    # ---------------------------------------------------------------- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it: no isinstance check
        self._transport = transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.set_write_buffer_limits(high=self.limits.high_water, low=self.limits.low_water)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.remote = f"[{peer[0]}]:{peer[1]}" if ":" in str(peer[0]) else f"{peer[0]}:{peer[1]}"
        if not self.connected.done():
            self.connected.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self._head is not None:  # the first bytes: an HTTP client (or server) dialed the wrong URL?
            self._head += data
            if len(self._head) < 5:
                return
            data, self._head = self._head, None
            if self._speaks_http(data):
                return
        try:
            frames = self._decoder.feed(data)
        except RemoteProtocolError as exc:
            # an absurd length prefix: the stream is unusable from here on
            self._set_error(lost(f"the peer sent an invalid length prefix: {exc}"))
            self.abort()
            return
        if self.on_partial is not None and self._decoder.buffered != self._partial:
            self._partial = self._decoder.buffered
            self.on_partial(self._partial)
        if frames:
            self._deliver(frames)
            if self._inbox_bytes > self._receive_buffer and not self._paused_reading and self._transport:
                self._paused_reading = True
                self._transport.pause_reading()

    def _speaks_http(self, head: bytes) -> bool:
        """Handle a peer that speaks HTTP (no RSocket frame starts so: its length would be megabytes)."""
        if self.server and head.startswith(_HTTP_METHODS):
            text = _NOT_HTTP.encode()
            assert self._transport is not None
            self._transport.write(
                b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                + f"{KIND_HEADER}: tcp\r\nContent-Length: {len(text)}\r\nConnection: close\r\n\r\n".encode()
                + text
            )
            self._set_error(lost("an HTTP client dialed this TCP hub (it was told to use tcp://)"))
            self._transport.close()
            return True
        if not self.server and head.startswith(b"HTTP/"):
            where = self.url or "this address"
            self._set_error(
                WrongTransportError(
                    f"{where} answered in HTTP: it is not a tcp hub; dial the http:// (WebRTC) or ws:// URL "
                    "its 'rxchannel serve' printed"
                )
            )
            self.abort()
            return True
        return False

    def eof_received(self) -> bool:
        if self._decoder.buffered:
            self._set_error(lost(f"the peer closed mid-frame ({self._decoder.buffered} bytes of a frame unread)"))
        self._eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.on_lost is not None:
            on_lost, self.on_lost = self.on_lost, None
            on_lost()
        if exc is not None:
            self._set_error(lost(f"the TCP connection broke: {exc}", exc))
        elif self._decoder.buffered:
            self._set_error(lost(f"the peer closed mid-frame ({self._decoder.buffered} bytes of a frame unread)"))
        self._eof = True
        self._wake()
        self._wake_drain()

    def pause_writing(self) -> None:
        pass  # buffered_amount is read directly; drain() waits for resume_writing

    def resume_writing(self) -> None:
        self._wake_drain()

    # ---------------------------------------------------------------- Transport

    @property
    def buffered_amount(self) -> int:
        t = self._transport
        return t.get_write_buffer_size() if t is not None else 0

    def _write(self, frames: list[bytes]) -> None:
        assert self._transport is not None
        if self._transport.is_closing():
            raise lost("the TCP connection is closing")
        if len(frames) == 1:
            frame = frames[0]
            self._transport.write(len(frame).to_bytes(3, "big") + frame)
        else:
            self._transport.write(b"".join([part for f in frames for part in (len(f).to_bytes(3, "big"), f)]))

    def _after_receive(self) -> None:
        if self._paused_reading and self._transport is not None and not self._transport.is_closing():
            self._paused_reading = False
            self._transport.resume_reading()

    async def close(self) -> None:
        if not self._first_close():
            return
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()  # flushes what is queued, then FIN
        self._wake()
        self._wake_drain()

    def abort(self) -> None:
        if self._transport is not None:
            sock = self._transport.get_extra_info("socket")
            if sock is not None and not self._transport.is_closing():
                # linger 0: the peer sees a reset, not an orderly close
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self._transport.abort()
        self._closed = True
        self._wake()
        self._wake_drain()

    @property
    def peername(self) -> object:
        return self._transport.get_extra_info("peername") if self._transport else None


async def connect_tcp_transport(
    host: str, port: int, limits: TransportLimits | None = None, *, max_message_size: int = MAX_FRAME_SIZE
) -> TcpTransport:
    """Dial ``host:port`` and return the connected transport."""
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(lambda: TcpTransport(limits, max_message_size=max_message_size), host, port)
    return proto


async def start_tcp_server(
    on_transport: Callable[[TcpTransport], object],
    host: str = "127.0.0.1",
    port: int = 0,
    limits: TransportLimits | None = None,
    *,
    max_message_size: int = MAX_FRAME_SIZE,
    reuse_port: bool = False,
) -> asyncio.Server:
    """Listen on ``host:port``; call ``on_transport(transport)`` (sync) for each accepted connection.
    ``reuse_port``: with ``SO_REUSEPORT``, beside other processes on the same port."""
    loop = asyncio.get_running_loop()

    def factory() -> TcpTransport:
        proto = TcpTransport(limits, max_message_size=max_message_size, server=True)
        proto.connected.add_done_callback(lambda _f: on_transport(proto))
        return proto

    return await loop.create_server(factory, host, port, reuse_port=reuse_port or None)


class TcpListener:
    """A listening TCP socket; each accepted connection becomes a :class:`TcpTransport`.

    Connections are admitted under ``ListenLimits`` through an :class:`~.admission.Admission`:
    when the cap (in all, or for one address) is full, a newcomer evicts the least-proven
    connection (one that has sent no SETUP), and one that has sent no SETUP within the
    header timeout (shorter as the cap fills) is closed; a newcomer is refused, before
    anything is read from it, only when every place is taken by a proven connection.
    Frames half-sent hold at most ``max_unfinished`` bytes on all connections together.
    """

    def __init__(self, limits: ListenLimits | None = None):
        self.limits = limits or ListenLimits()
        self.admission = self.limits.admission("TCP connections", ThrottledLog(log), silent="sent no SETUP")
        #: what frames not yet received whole hold, on all connections together
        self.unfinished = Unfinished(self.limits.max_unfinished, "TCP frames", self.admission.log)
        self.server: asyncio.Server
        self.host, self.port = "", 0

    def accept(self, transport: TcpTransport, on_transport: Callable[[TcpTransport], object]) -> None:
        peer = transport.peername
        address = peer[0] if isinstance(peer, tuple) else None
        ticket = self.admission.admit(address, lambda reason: _evicted(transport, reason))
        if ticket is None:
            # say why before closing (an RSocket client reads it as a refused SETUP), then forget it
            reason = f"the hub is busy: {self.admission.last_refusal}; try again later"
            with contextlib.suppress(RxChannelError):
                transport.write([setup_refusal(reason)])
            transport.on_lost = None
            asyncio.get_running_loop().create_task(transport.close())
            return
        transport.tickets.append(ticket)

        def gone() -> None:
            ticket.leave()
            self.unfinished.forget(transport)

        transport.on_lost = gone
        transport.on_partial = lambda size: self.unfinished.update(transport, size, ticket, transport.abort)
        on_transport(transport)

    @property
    def url(self) -> str:
        """The URL of the bound address (for a wildcard bind, the first of :attr:`urls`)."""
        return self.urls[0]

    @property
    def urls(self) -> list[str]:
        """One dialable URL per address: several for a wildcard bind (0.0.0.0, ::), else one."""
        return [f"tcp://[{h}]:{self.port}" if ":" in h else f"tcp://{h}:{self.port}" for h in dialable_hosts(self.host)]

    async def close(self) -> None:
        self.admission.close()
        self.server.close()
        await self.server.wait_closed()


def _evicted(transport: TcpTransport, reason: str) -> None:
    """Tell an evicted connection why (a client that has not sent its SETUP reads it as a
    refused one), then close it."""
    if transport.tickets and transport.tickets[0].rank < PROVEN:
        with contextlib.suppress(RxChannelError, ValueError):
            transport.write([setup_refusal(f"the hub is busy: this connection {reason}; try again")])
    asyncio.get_running_loop().create_task(transport.close())


async def dial(url: str, options: TransportOptions) -> TcpTransport:
    """Dial ``tcp://host:port``.

    Raises:
        ValueError: the URL has no port.
        ConnectionError: nothing accepts connections there (within ``options.timeout``).
    """
    parts = urlsplit(url)
    if parts.port is None:
        raise ValueError(f"{url}: tcp:// URLs need a port, e.g. tcp://127.0.0.1:8765")
    try:
        async with asyncio.timeout(options.timeout):
            transport = await connect_tcp_transport(
                parts.hostname or "127.0.0.1", parts.port, options.limits, max_message_size=options.max_message_size
            )
    except TimeoutError:
        raise ConnectionError(f"cannot reach {url}: no answer within {options.timeout:g} s") from None
    except OSError as exc:
        raise unreachable(url, exc) from exc
    transport.url = url
    return transport


async def listen(
    host: str, port: int, on_transport: Callable[[TcpTransport], object], options: TransportOptions
) -> TcpListener:
    """Listen on ``host:port`` (port 0 picks a free one), admitting connections under ``options.listen_limits``."""
    listener = TcpListener(options.listen_limits)
    listener.server = await start_tcp_server(
        lambda transport: listener.accept(transport, on_transport),
        host,
        port,
        options.limits,
        max_message_size=options.max_message_size,
        reuse_port=options.reuse_port,
    )
    listener.host, listener.port = listener.server.sockets[0].getsockname()[:2]
    return listener
