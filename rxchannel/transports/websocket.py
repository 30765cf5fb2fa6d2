"""WebSocket transport (aiohttp): one RSocket frame per binary message (RSocket's WebSocket binding).

Writes go through one writer task so :meth:`write` never blocks; ``buffered_amount`` is
what that task has not yet handed to aiohttp, and aiohttp itself waits for the socket to
drain, so a stalled reader on the far side fills TCP windows, then our queue, then
blocks :meth:`drain`. A text message from the peer is a protocol error.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

from rxchannel._background import background
from rxchannel.core import MAX_FRAME_SIZE, RemoteProtocolError

from ._base import EndOfStream, Transport, TransportLimits, lost

__all__ = ["CLOSE_TIMEOUT", "WebSocketTransport", "connect_websocket_transport"]

_WS = web.WebSocketResponse | aiohttp.ClientWebSocketResponse
#: seconds to wait for the peer to answer our CLOSE before dropping the connection
CLOSE_TIMEOUT = 2.0


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
        self._eof = False
        #: set once the transport is over (closed, broken or ended by the peer)
        self.done = asyncio.Event()
        self._writer = asyncio.ensure_future(self._write_loop())

    @property
    def buffered_amount(self) -> int:
        return self._queued

    def _write(self, frames: list[bytes]) -> None:
        for frame in frames:
            self._queue.append(frame)
            self._queued += len(frame)
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
                self._wake_drain()
        except asyncio.CancelledError:
            raise
        except (ConnectionError, RuntimeError, aiohttp.ClientError) as exc:
            self._set_error(lost(f"the WebSocket broke while sending: {exc}", exc))
            self.done.set()

    async def receive(self) -> list[bytes]:
        self._check_usable()
        if self._eof:
            raise EndOfStream("the peer closed the WebSocket")
        msg = await self._ws.receive()
        if msg.type == WSMsgType.BINARY:
            return [msg.data]
        if msg.type == WSMsgType.TEXT:
            self._set_error(RemoteProtocolError("the peer sent a text message; RSocket over WebSocket is binary only"))
            await self._ws.close(code=aiohttp.WSCloseCode.UNSUPPORTED_DATA, message=b"binary frames only")
            self.done.set()
            raise self._error  # type: ignore[misc]
        self._check_usable()  # closed locally while waiting
        self.done.set()
        code = self._ws.close_code
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED) and code in (1000, 1001):
            self._eof = True
            raise EndOfStream("the peer closed the WebSocket")
        error = lost(f"the WebSocket ended abnormally ({msg.type.name}, close code {code})")
        self._set_error(error)
        raise error

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wake_drain()
        for _ in range(200):  # let queued frames leave (bounded: at most high-water bytes)
            if not self._queue or self._writer.done():
                break
            await asyncio.sleep(0.01)
        self._writer.cancel()
        with contextlib.suppress(ConnectionError, RuntimeError, aiohttp.ClientError):
            await self._ws.close()
        if self._session is not None:
            await self._session.close()
        self.done.set()

    def abort(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.cancel()
        writer: Any = getattr(self._ws, "_writer", None)
        transport = getattr(writer, "transport", None)
        if transport is not None:
            transport.abort()
        if self._session is not None:
            background(self._session.close())
        self._wake_drain()
        self.done.set()


async def connect_websocket_transport(url: str, limits: TransportLimits | None = None) -> WebSocketTransport:
    """Dial a ``ws://`` URL and return the open transport (it owns its HTTP session)."""
    session = aiohttp.ClientSession()
    try:
        ws = await session.ws_connect(
            url, max_msg_size=MAX_FRAME_SIZE + 1024, timeout=aiohttp.ClientWSTimeout(ws_close=CLOSE_TIMEOUT)
        )
    except BaseException:
        await session.close()
        raise
    return WebSocketTransport(ws, limits, session=session)
