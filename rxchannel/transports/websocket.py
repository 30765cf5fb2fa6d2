"""WebSocket transport (aiohttp): one RSocket frame per binary message (RSocket's WebSocket binding).

Writes go through one writer task so :meth:`write` never blocks; ``buffered_amount`` is
what that task has not yet handed to aiohttp, and aiohttp itself waits for the socket to
drain, so a stalled reader on the far side fills TCP windows, then our queue, then
blocks :meth:`drain`. A text message from the peer is a protocol error.

URLs: ``ws://host:port/rsocket`` (a bare ``ws://host:port`` or a trailing ``/`` means
``/rsocket``); :func:`listen_ws` serves that path and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from aiohttp import WSMsgType, web

from rxchannel.core import MAX_FRAME_SIZE, ClosedResourceError, ConnectFailedError, RemoteProtocolError, RxChannelError

from ._base import KIND_HEADER, EndOfStream, Transport, TransportLimits, TransportOptions, lost, unreachable
from ._limits import ListenLimits
from .http import PROCESS_HEADER, REFUSAL_HEADER, HttpListener, RequestRefusedError, refusal
from .registry import wrong_transport

__all__ = [
    "CLOSE_TIMEOUT",
    "PATH",
    "WebSocketRefusedError",
    "WebSocketTransport",
    "add_websocket_route",
    "connect_websocket_transport",
    "dial",
    "listen",
    "listen_ws",
]

#: Where a WebSocket hub accepts RSocket connections.
PATH = "/rsocket"

_WS = web.WebSocketResponse | aiohttp.ClientWebSocketResponse
#: seconds to wait for the peer to answer our CLOSE before dropping the connection
CLOSE_TIMEOUT = 2.0


class WebSocketRefusedError(ConnectFailedError):
    """The server answered the WebSocket handshake with an HTTP error (:attr:`status`)."""

    status: int


class WebSocketTransport(Transport):
    """An open aiohttp WebSocket (server or client side)."""

    def __init__(
        self,
        ws: _WS,
        limits: TransportLimits | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        max_message_size: int = MAX_FRAME_SIZE,
    ):
        super().__init__(limits)
        self.max_message_size = max_message_size
        self._ws = ws
        self._session = session
        self._queue: deque[bytes] = deque()
        self._queued = 0
        self._has_work = asyncio.Event()
        self._idle = asyncio.Event()  # set while nothing is queued
        self._idle.set()
        self._closing: asyncio.Task[None] | None = None
        #: the error that ended sending, if that is what ended it (reading goes on to the close)
        self._send_error: RxChannelError | None = None
        #: aiohttp's pending receive(), kept across a cancelled read (see :meth:`receive`)
        self._receiving: asyncio.Future[aiohttp.WSMessage] | None = None
        self._eof = False
        #: set once the transport is over (closed, broken or ended by the peer)
        self.done = asyncio.Event()
        self._writer = asyncio.ensure_future(self._write_loop())
        #: which of a hub's processes took this WebSocket (its ``Rxchannel-Process``), if it said
        self.process: str | None = None

    @property
    def buffered_amount(self) -> int:
        return self._queued

    def _write(self, frames: list[bytes]) -> None:
        for frame in frames:
            self._queue.append(frame)
            self._queued += len(frame)
        self._idle.clear()
        self._has_work.set()

    async def _write_loop(self) -> None:
        try:
            while True:
                await self._has_work.wait()
                while self._queue:
                    frame = self._queue[0]
                    await self._ws.send_bytes(frame)
                    self._queue.popleft()
                    self._queued -= len(frame)
                    if self._queued <= self.limits.low_water:
                        self._wake_drain()
                self._has_work.clear()
                self._idle.set()
                self._wake_drain()
        except asyncio.CancelledError:
            raise
        except (ConnectionError, RuntimeError, aiohttp.ClientError) as exc:
            self._send_error = lost(f"the WebSocket broke while sending: {exc}", exc)
            self._set_error(self._send_error)

    def _check_readable(self) -> None:
        # a send that broke does not stop us reading what the peer sent before it went (a
        # CANCEL, an ERROR before its close): aiohttp hands those over first, then the close
        if self._error is not None and self._error is not self._send_error:
            raise self._error
        if self._closed:
            raise ClosedResourceError("the transport was closed by this side")

    async def receive(self) -> list[bytes]:
        self._check_readable()
        if self._eof:
            raise EndOfStream("the peer closed the WebSocket")
        # aiohttp's receive() must not be cancelled: a cancelled one marks the connection
        # abnormal, and close() then drops TCP without the closing handshake, so a peer may
        # lose what we sent last (a CANCEL, the ERROR that ends a resumable session). A read
        # loop that is cancelled leaves it running; the next receive() or close() takes it.
        if self._receiving is None:
            self._receiving = asyncio.ensure_future(self._ws.receive())
        try:
            msg = await asyncio.shield(self._receiving)
        finally:
            if self._receiving is not None and self._receiving.done():
                self._receiving = None  # taken, whatever its outcome (an error's frames hold this transport)
        if msg.type == WSMsgType.BINARY:
            return [msg.data]
        if msg.type == WSMsgType.TEXT:
            self._set_error(RemoteProtocolError("the peer sent a text message; RSocket over WebSocket is binary only"))
            await self._ws.close(code=aiohttp.WSCloseCode.UNSUPPORTED_DATA, message=b"binary frames only")
            self.done.set()
            raise self._error  # type: ignore[misc]
        self._check_readable()  # closed locally while waiting
        self.done.set()
        # the peer's own code is the CLOSE message's (aiohttp's close_code becomes 1006 when its
        # reply to that CLOSE cannot be written, the peer having gone as it may)
        code = msg.data if msg.type == WSMsgType.CLOSE else self._ws.close_code
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED) and code in (1000, 1001):
            self._eof = True
            raise EndOfStream("the peer closed the WebSocket")
        error = lost(f"the WebSocket ended abnormally ({msg.type.name}, close code {code})")
        self._set_error(error)
        raise error

    async def close(self) -> None:
        if not self._first_close():
            return
        self._wake_drain()
        if not self._writer.done():  # let queued frames leave (bounded: at most high-water bytes)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await self._idle.wait()
        self._writer.cancel()
        with contextlib.suppress(ConnectionError, RuntimeError, aiohttp.ClientError):
            await self._ws.close()  # ends a pending receive() first (it answers CLOSING), then the handshake
        self._drop_receiving()
        if self._session is not None:
            await self._session.close()
        self.done.set()

    def _drop_receiving(self) -> None:
        receiving, self._receiving = self._receiving, None
        if receiving is not None:
            receiving.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved: not logged
            receiving.cancel()

    def abort(self) -> None:
        if not self._first_close():
            return
        self._writer.cancel()
        writer: Any = getattr(self._ws, "_writer", None)
        transport = getattr(writer, "transport", None)
        if transport is not None:
            transport.abort()
        if self._receiving is not None:  # it ends with the connection: a read loop waiting on it sees why
            self._receiving.add_done_callback(lambda f: f.cancelled() or f.exception())
        if self._session is not None:
            self._closing = asyncio.ensure_future(self._session.close())  # kept referenced until done
        self._wake_drain()
        self.done.set()


class _MessageMeter:
    """Stands in front of aiohttp's WebSocket reader (which buffers a whole message, up to
    ``max_msg_size``, before delivering it) and follows the frame headers going by, so that
    what the message not yet received whole holds is known after every read
    (RFC 6455 §5.2: the header, an extended length, the mask, the payload)."""

    __slots__ = ("_counting", "_fin", "_header", "_left", "_message", "_reader", "_report", "_reported")

    def __init__(self, reader: Any, report: Callable[[int], None]):
        self._reader = reader
        self._report = report
        self._header = bytearray()
        self._left = 0  # payload bytes of the current frame still to come
        self._counting = False  # the current frame belongs to a data message
        self._fin = True  # ... and is its last
        self._message = 0  # bytes of the current data message received so far
        self._reported = 0

    def feed_eof(self) -> Any:
        return self._reader.feed_eof()

    def feed_data(self, data: bytes) -> Any:
        self._scan(data)
        size = self._message + len(self._header)
        if size != self._reported:
            self._reported = size
            self._report(size)
        return self._reader.feed_data(data)

    def _scan(self, data: bytes) -> None:
        i, n = 0, len(data)
        while i < n:
            if self._left:
                take = min(self._left, n - i)
                self._left -= take
                i += take
                if self._counting:
                    self._message += take
                    if not self._left and self._fin:
                        self._message = 0
                continue
            header = self._header
            need = 2
            if len(header) >= 2:
                length7 = header[1] & 0x7F
                need += (2 if length7 == 126 else 8 if length7 == 127 else 0) + (4 if header[1] & 0x80 else 0)
            if len(header) < need:
                take = min(need - len(header), n - i)
                header += data[i : i + take]
                i += take
                if len(header) < need or len(header) == 2:
                    continue  # the first two bytes say how long the rest of the header is
            length = header[1] & 0x7F
            if length == 126:
                length = int.from_bytes(header[2:4], "big")
            elif length == 127:
                length = int.from_bytes(header[2:10], "big")
            self._counting = not header[0] & 0x08  # continuation, text, binary; not close, ping, pong
            if self._counting:
                self._fin = bool(header[0] & 0x80)
            self._header = bytearray()
            self._left = length
            if not length and self._counting and self._fin:
                self._message = 0


class _MeteredResponse(web.WebSocketResponse):
    """A server WebSocket whose unfinished message is measured (:class:`_MessageMeter`)."""

    report: Callable[[int], None] | None = None

    def _post_start(self, request: Any, protocol: Any, writer: Any) -> None:
        handler = request.protocol
        report = self.report
        tail = b""
        if report is not None:  # what arrived behind the upgrade request goes through the meter too
            with contextlib.suppress(AttributeError):
                tail, handler._message_tail = handler._message_tail, b""
        super()._post_start(request, protocol, writer)
        reader = getattr(handler, "_payload_parser", None)
        if report is None or reader is None:
            return
        meter = _MessageMeter(reader, report)
        handler._payload_parser = meter
        if tail:
            meter.feed_data(tail)


def websocket_url(url: str) -> str:
    """``url`` with the default path filled in (``ws://h:p``, ``ws://h:p/`` and ``.../rsocket/`` mean ``/rsocket``)."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/") or PATH
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


async def connect_websocket_transport(
    url: str,
    limits: TransportLimits | None = None,
    *,
    max_message_size: int = MAX_FRAME_SIZE,
    timeout: float = 20.0,
    headers: dict[str, str] | None = None,
) -> WebSocketTransport:
    """Dial a ``ws://`` URL and return the open transport (it owns its HTTP session).

    Raises:
        WrongTransportError: what answered is a hub of another kind (the message says which URL to use).
        WebSocketRefusedError: the server refused the handshake (its HTTP status and reason).
        ConnectionError: nothing answers (``ConnectionRefusedError`` when nothing listens),
            or the handshake did not finish within ``timeout`` seconds.
    """
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeout))
    try:
        async with asyncio.timeout(timeout):
            ws = await session.ws_connect(
                websocket_url(url),
                max_msg_size=max_message_size + 1024,
                timeout=aiohttp.ClientWSTimeout(ws_close=CLOSE_TIMEOUT),
                headers=headers,
            )
    except TimeoutError:
        await session.close()
        raise ConnectionError(
            f"{url} accepted the connection but did not answer the WebSocket handshake within {timeout:g} s"
        ) from None
    except aiohttp.WSServerHandshakeError as exc:
        await session.close()
        kind = exc.headers.get(KIND_HEADER) if exc.headers else None
        if kind is not None and kind != "ws":
            raise wrong_transport(url, kind) from None
        refusal = exc.headers.get(REFUSAL_HEADER) if exc.headers else None
        if refusal:
            raise WebSocketRefusedError(f"{url}: {refusal}", exc.status) from None
        raise WebSocketRefusedError(
            f"{url} did not accept a WebSocket ({exc.status} {exc.message}): is it a ws:// hub?", exc.status
        ) from None
    except (aiohttp.ClientConnectorError, OSError) as exc:
        await session.close()
        raise unreachable(url, exc) from None
    except aiohttp.ClientError as exc:
        await session.close()
        raise ConnectionError(f"cannot reach {url}: {exc}") from None
    except BaseException:
        await session.close()
        raise
    transport = WebSocketTransport(ws, limits, session=session, max_message_size=max_message_size)
    answer = getattr(ws, "_response", None)
    transport.process = answer.headers.get(PROCESS_HEADER) if answer is not None else None
    return transport


async def listen_ws(
    host: str,
    port: int,
    on_transport: Callable[[WebSocketTransport], object],
    limits: TransportLimits | None = None,
    *,
    max_message_size: int = MAX_FRAME_SIZE,
    listen_limits: ListenLimits | None = None,
    reuse_port: bool = False,
) -> HttpListener:
    """Serve WebSockets at ``ws://host:port/rsocket``; each one is handed to ``on_transport``."""
    listener = HttpListener("ws", PATH, kind="ws", limits=listen_limits)
    add_websocket_route(listener, on_transport, limits, max_message_size=max_message_size)
    await listener.start(host, port, reuse_port=reuse_port)
    return listener


def add_websocket_route(
    listener: HttpListener,
    on_transport: Callable[[WebSocketTransport], object],
    limits: TransportLimits | None = None,
    *,
    max_message_size: int = MAX_FRAME_SIZE,
    check: Callable[[web.Request], None] | None = None,
) -> None:
    """Serve RSocket over WebSockets at ``PATH`` on ``listener`` (a WebSocket hub's only
    route; on a WebRTC hub, its direct path). ``check(request)`` may refuse an upgrade
    before it happens by raising :class:`~.http.RequestRefusedError` (the hub's secret)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if check is not None:
            try:
                check(request)
            except RequestRefusedError as exc:
                return refusal(exc)
        ws = _MeteredResponse(max_msg_size=max_message_size, timeout=CLOSE_TIMEOUT)
        ticket = listener.ticket_of(request)
        handler = request.protocol
        connection = request.transport

        def drop() -> None:
            if connection is not None:
                connection.abort()

        ws.report = lambda size: listener.unfinished.update(handler, size, ticket, drop)
        try:
            await ws.prepare(request)
        except ConnectionError:  # evicted, or gone, before its upgrade was answered: nothing to log
            return web.Response(status=499)
        transport = WebSocketTransport(ws, limits, max_message_size=max_message_size)
        transport.remote = request.remote or "?"
        if ticket is not None:
            transport.tickets.append(ticket)
        on_transport(transport)
        await transport.done.wait()  # the response lives as long as the connection
        return ws

    listener.app.router.add_get(PATH, handler)


async def dial(url: str, options: TransportOptions) -> WebSocketTransport:
    """Dial ``ws://host:port[/rsocket]``."""
    return await connect_websocket_transport(
        url, options.limits, max_message_size=options.max_message_size, timeout=options.timeout
    )


async def listen(
    host: str, port: int, on_transport: Callable[[WebSocketTransport], object], options: TransportOptions
) -> HttpListener:
    """Serve ``ws://host:port/rsocket``."""
    return await listen_ws(
        host,
        port,
        on_transport,
        options.limits,
        max_message_size=options.max_message_size,
        listen_limits=options.listen_limits,
        reuse_port=options.reuse_port,
    )
