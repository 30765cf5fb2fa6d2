"""An HTTP listener (aiohttp) that transports attach their endpoints to.

The WebSocket transport serves ``GET /rsocket`` on it, WebRTC signaling serves
``POST /offer``; an application may add its own routes (the hub's worker page) through
:attr:`HttpListener.app` before :meth:`HttpListener.start`.

It admits connections under :class:`ListenLimits`: a cap in all and per address, a
deadline for a new connection's first request (slow-loris), a short keep-alive (aiohttp's
default is an hour), and a deadline for request bodies (:meth:`HttpListener.read_body`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from ._limits import Admission, ListenLimits, ThrottledLog

__all__ = ["HttpListener"]

log = logging.getLogger("rxchannel.http")


class _GuardedRunner(web.AppRunner):
    """An AppRunner whose server admits connections through an :class:`Admission`."""

    def __init__(self, app: web.Application, listener: HttpListener, **kwargs: Any):
        super().__init__(app, **kwargs)
        self._listener = listener

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        listener = self._listener
        made, lost = server.connection_made, server.connection_lost

        def connection_made(handler: Any, transport: asyncio.Transport) -> None:
            made(handler, transport)
            listener._connection_made(handler, transport)

        def connection_lost(handler: Any, exc: BaseException | None = None) -> None:
            listener._connection_lost(handler)
            lost(handler, exc)

        server.connection_made = connection_made  # type: ignore[method-assign]
        server.connection_lost = connection_lost  # type: ignore[method-assign]
        return server


class HttpListener:
    """One aiohttp application served on ``host:port`` (port 0 picks a free one)."""

    def __init__(
        self, scheme: str, path: str = "", *, client_max_size: int = 1 << 20, limits: ListenLimits | None = None
    ):
        #: the URL scheme workers dial (``http`` for WebRTC signaling, ``ws`` for WebSockets)
        self.scheme = scheme
        self.path = path
        self.limits = limits or ListenLimits()
        self.app = web.Application(client_max_size=client_max_size, middlewares=[self._mark_request])
        self.admission = Admission(self.limits, "HTTP connections", ThrottledLog(log))
        self.host = ""
        self.port = 0
        self._runner: web.AppRunner | None = None
        #: open connections: their address, and whether a request has started on them
        self._open: dict[Any, list[Any]] = {}

    @web.middleware
    async def _mark_request(self, request: web.Request, handler: Any) -> web.StreamResponse:
        entry = self._open.get(request.protocol)
        if entry is not None:
            entry[1] = True
        response: web.StreamResponse = await handler(request)
        return response

    def _connection_made(self, handler: Any, transport: asyncio.Transport) -> None:
        peer = transport.get_extra_info("peername")
        address = peer[0] if isinstance(peer, tuple) else None
        if not self.admission.admit(address):
            transport.abort()
            return
        entry: list[Any] = [address, False, None]
        self._open[handler] = entry
        loop = asyncio.get_running_loop()
        entry[2] = loop.call_later(self.limits.header_timeout, self._header_deadline, handler, transport)

    def _header_deadline(self, handler: Any, transport: asyncio.Transport) -> None:
        entry = self._open.get(handler)
        if entry is not None and not entry[1]:
            self.admission.log.warning(
                "closed an HTTP connection from %s: no request within %.0f s (header timeout)",
                entry[0],
                self.limits.header_timeout,
            )
            transport.abort()

    def _connection_lost(self, handler: Any) -> None:
        entry = self._open.pop(handler, None)
        if entry is not None:
            if entry[2] is not None:
                entry[2].cancel()
            self.admission.leave(entry[0])

    async def read_body(self, request: web.Request, limit: int) -> bytes:
        """A request's body: at most ``limit`` bytes, within the body timeout.

        Raises:
            web.HTTPRequestEntityTooLarge / web.HTTPRequestTimeout: with a message for the client.
        """
        try:
            async with asyncio.timeout(self.limits.body_timeout):
                body = await request.content.read(limit + 1)
        except TimeoutError:
            raise web.HTTPRequestTimeout(
                text=f"the request body did not arrive within {self.limits.body_timeout:.0f} s"
            ) from None
        if len(body) > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(body))
        return body

    async def start(self, host: str, port: int) -> None:
        self._runner = _GuardedRunner(
            self.app, self, handle_signals=False, access_log=None, keepalive_timeout=self.limits.keepalive_timeout
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        self.host, self.port = self._runner.addresses[0][:2]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.path}"

    async def close(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
