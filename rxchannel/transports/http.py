"""An HTTP listener (aiohttp) that transports attach their endpoints to.

The WebSocket transport serves ``GET /rsocket`` on it, WebRTC signaling serves
``POST /offer``; an application may add its own routes (the hub's worker page) through
:attr:`HttpListener.app` before :meth:`HttpListener.start`.

It admits connections under :class:`ListenLimits` through an :class:`~.admission.Admission`:
a cap in all and per address where a newcomer evicts the least-proven connection (one
that has not sent a complete request, then one that asked but has no SETUP), deadlines
for a new connection's first request (slow-loris) and for its SETUP that shrink as the cap
fills, a short keep-alive (aiohttp's default is an hour), a deadline for request bodies
(:meth:`HttpListener.read_body`), and a budget for WebSocket messages half-sent.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import secrets
from typing import Any

import aiohttp
from aiohttp import web

from rxchannel.core import RxChannelError

from ._base import KIND_HEADER
from ._limits import ListenLimits
from .addresses import dialable_hosts
from .admission import ASKED, PROVEN, SILENT, ThrottledLog, Ticket, Unfinished

__all__ = [
    "REFUSAL_HEADER",
    "RELAY_HEADER",
    "HttpListener",
    "RequestRefusedError",
    "client_of",
    "refusal",
    "signed_path_of",
]

#: Why a connection was refused before any request (the hub is at its connection cap).
REFUSAL_HEADER = "Rxchannel-Refusal"
#: Which of a hub's processes (``serve --processes``) answered, on every response; a client
#: sends it back when it re-dials, so that a resumed session reaches the process that holds it.
PROCESS_HEADER = "Rxchannel-Process"
#: A request a rendezvous relayed to this process (:mod:`rxchannel.webrtc.rendezvous`) carries
#: ``<relay token> <client address> <path the client signed>``: honoured only with the token,
#: which never leaves the process.
RELAY_HEADER = "Rxchannel-Relay"

log = logging.getLogger("rxchannel.http")


class RequestRefusedError(RxChannelError, ValueError):
    """An HTTP request refused; :attr:`status` is the status to answer with, the message says why."""

    def __init__(self, status: int, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


def refusal(exc: RequestRefusedError) -> web.Response:
    """The JSON answer to a refused request: ``{"error": message, "status": N}`` (+ ``Retry-After``)."""
    headers = {"Retry-After": str(max(1, round(exc.retry_after)))} if exc.retry_after else None
    return web.json_response({"error": exc.message, "status": exc.status}, status=exc.status, headers=headers)


# where a relayed request's client and signed path are kept (typed keys where aiohttp has them)
_KEY: Any = getattr(web, "RequestKey", None)
_CLIENT: Any = _KEY("rxchannel_client", str) if _KEY else "rxchannel_client"
_PATH: Any = _KEY("rxchannel_path", str) if _KEY else "rxchannel_path"


def client_of(request: web.Request) -> str:
    """The address a request came from: the relayed client's for a request a rendezvous relayed."""
    return str(request.get(_CLIENT) or request.remote or "")


def signed_path_of(request: web.Request) -> str:
    """The path the client signed: the rendezvous's ``/hubs/NAME/...`` for a relayed request."""
    return str(request.get(_PATH) or request.path)


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
        self,
        scheme: str,
        path: str = "",
        *,
        kind: str,
        client_max_size: int = 1 << 20,
        limits: ListenLimits | None = None,
    ):
        #: the URL scheme workers dial (``http`` for WebRTC signaling, ``ws`` for WebSockets)
        self.scheme = scheme
        #: the kind of hub (a :data:`~.registry.KINDS` name), sent in every response's ``Rxchannel-Transport``
        self.kind = kind
        self.path = path
        self.limits = limits or ListenLimits()
        self.app = web.Application(client_max_size=client_max_size, middlewares=[self._mark_request])
        self.admission = self.limits.admission("HTTP connections", ThrottledLog(log))
        #: what WebSocket messages not yet received whole hold, on all connections together
        self.unfinished = Unfinished(self.limits.max_unfinished, "WebSocket messages", self.admission.log)
        self.host = ""
        self.port = 0
        #: what a request relayed by this hub's rendezvous link carries (see RELAY_HEADER); the
        #: processes of one hub (``serve --processes``) share it through the environment
        self.relay_token = os.environ.get("RXCHANNEL_RELAY_TOKEN") or secrets.token_urlsafe(24)
        #: this process's number among the hub's processes (``RXCHANNEL_PROCESS``, set by
        #: ``serve --processes`` for each child), or None for a hub of one process
        self.process = os.environ.get("RXCHANNEL_PROCESS") or None
        #: the other processes' private URLs, by number: a request for another process is
        #: passed on to it (set by the parent once every child listens)
        self.siblings: dict[str, str] = {}
        #: this process's private URL (127.0.0.1), where its siblings pass requests on to it
        self.private_url = ""
        self._runner: web.AppRunner | None = None
        #: open connections (aiohttp's handlers) and their places in :attr:`admission`
        self._open: dict[Any, Ticket] = {}

    @web.middleware
    async def _mark_request(self, request: web.Request, handler: Any) -> web.StreamResponse:
        ticket = self._open.get(request.protocol)
        if ticket is not None:  # a complete request: no longer silent, and its deadline starts again
            ticket.advance(ASKED)
            ticket.touch()
        relayed = request.headers.get(RELAY_HEADER, "").split(" ")
        if len(relayed) == 3 and hmac.compare_digest(relayed[0], self.relay_token):
            request[_CLIENT], request[_PATH] = relayed[1], relayed[2]
            if ticket is not None:  # the rendezvous link's connection: counted for the client it relays
                ticket.rekey(relayed[1])
        wanted = request.headers.get(PROCESS_HEADER)
        if wanted and self.process and wanted != self.process and wanted in self.siblings:
            return await _pass_on(request, self.siblings[wanted], self.relay_token)
        try:
            response: web.StreamResponse = await handler(request)
        except web.HTTPException as exc:  # 404s included: a worker that dialed the wrong scheme learns ours
            exc.headers[KIND_HEADER] = self.kind
            raise
        if not response.prepared:
            response.headers.setdefault(KIND_HEADER, self.kind)  # a relayed answer keeps its own
        return response

    def _connection_made(self, handler: Any, transport: asyncio.Transport) -> None:
        peer = transport.get_extra_info("peername")
        address = peer[0] if isinstance(peer, tuple) else None
        ticket = self.admission.admit(address, lambda reason: self._evicted(handler, transport, reason))
        if ticket is None:
            self._busy(transport, self.admission.last_refusal)
            return
        self._open[handler] = ticket

    def _busy(self, transport: asyncio.Transport, why: str) -> None:
        """Answer 503 with the reason, and close after aiohttp's handler task has started
        (closing inside connection_made trips an assertion in it)."""
        reason = f"the hub is busy: {why}; try again later"
        text = reason.encode()
        transport.write(
            b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Type: text/plain; charset=utf-8\r\n"
            + f"{KIND_HEADER}: {self.kind}\r\n{REFUSAL_HEADER}: {reason}\r\n".encode("ascii", "replace")
            + f"Content-Length: {len(text)}\r\nConnection: close\r\n\r\n".encode()
            + text
        )
        asyncio.get_running_loop().call_soon(transport.close)

    def _evicted(self, handler: Any, transport: asyncio.Transport, reason: str) -> None:
        """An eviction (the admission logged why): a connection that sent no request yet and
        made room for a newcomer is answered 503 (a worker that was about to send one learns
        the hub is busy); any other is dropped at once."""
        ticket = self._open.pop(handler, None)
        self.unfinished.forget(handler)
        if ticket is not None and ticket.rank == SILENT and ticket.cause == "full" and not transport.is_closing():
            self._busy(transport, f"this connection {reason}")
        else:
            asyncio.get_running_loop().call_soon(transport.abort)  # not inside aiohttp's own callbacks

    def _connection_lost(self, handler: Any) -> None:
        ticket = self._open.pop(handler, None)
        if ticket is not None:
            ticket.leave()
        self.unfinished.forget(handler)

    def ticket_of(self, request: web.Request) -> Ticket | None:
        """The place in :attr:`admission` of the connection ``request`` came on."""
        return self._open.get(request.protocol)

    def proven(self, request: web.Request) -> None:
        """The connection ``request`` came on proved itself otherwise than by a SETUP (a hub
        registering with the rendezvous's secret): it is no longer evicted for newcomers."""
        ticket = self.ticket_of(request)
        if ticket is not None:
            ticket.advance(PROVEN)

    async def read_body(self, request: web.Request, limit: int, *, hint: str = "") -> bytes:
        """A request's body: at most ``limit`` bytes, arriving within the body timeout.

        Raises:
            RequestRefusedError: 413 when the body is larger (``hint`` says how to raise the
                limit), 408 when it does not arrive in time.
        """
        too_large = RequestRefusedError(413, f"the request body exceeds {limit} bytes{hint}")
        if request.content_length is not None and request.content_length > limit:
            raise too_large
        chunks, size = [], 0
        try:
            async with asyncio.timeout(self.limits.body_timeout):
                while chunk := await request.content.read(64 * 1024):
                    size += len(chunk)
                    if size > limit:
                        raise too_large
                    chunks.append(chunk)
        except TimeoutError:
            raise RequestRefusedError(
                408, f"the request body did not arrive within {self.limits.body_timeout:.0f} s"
            ) from None
        return b"".join(chunks)

    async def _stamp(self, _request: web.Request, response: web.StreamResponse) -> None:
        if self.process:
            response.headers.setdefault(PROCESS_HEADER, self.process)  # a passed-on answer keeps its own

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> None:
        if self.process:
            self.app.on_response_prepare.append(self._stamp)
        self._runner = _GuardedRunner(
            self.app, self, handle_signals=False, access_log=None, keepalive_timeout=self.limits.keepalive_timeout
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port, reuse_port=reuse_port or None).start()
        self.host, self.port = self._runner.addresses[0][:2]
        if self.process:  # one of a hub's processes: a private door for its siblings
            private = web.TCPSite(self._runner, "127.0.0.1", 0)
            await private.start()
            self.private_url = f"http://127.0.0.1:{self._runner.addresses[-1][1]}"

    def _url(self, host: str) -> str:
        host = f"[{host}]" if ":" in host else host
        return f"{self.scheme}://{host}:{self.port}{self.path}"

    @property
    def url(self) -> str:
        """The URL of the bound address (for a wildcard bind, the first of :attr:`urls`)."""
        return self.urls[0]

    @property
    def urls(self) -> list[str]:
        """One dialable URL per address: several for a wildcard bind (0.0.0.0, ::), else one."""
        return [self._url(host) for host in dialable_hosts(self.host)]

    async def close(self) -> None:
        self.admission.close()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()


async def _pass_on(request: web.Request, sibling: str, token: str) -> web.StreamResponse:
    """Pass ``request`` on to a sibling process (the one holding the session it resumes) and
    answer with what it answers; a WebSocket is joined to one opened to the sibling."""
    headers = {k: v for k, v in request.headers.items() if k in ("Authorization", "Content-Type", "Accept")}
    headers[RELAY_HEADER] = f"{token} {client_of(request) or '?'} {signed_path_of(request)}"
    target = sibling + request.path_qs
    async with aiohttp.ClientSession() as session:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            async with session.ws_connect(target, headers=headers, max_msg_size=0) as upstream:
                downstream = web.WebSocketResponse(max_msg_size=0)
                answered_by = getattr(upstream, "_response", None)
                if answered_by is not None and PROCESS_HEADER in answered_by.headers:
                    downstream.headers[PROCESS_HEADER] = answered_by.headers[PROCESS_HEADER]
                await downstream.prepare(request)

                async def pump(source: Any, sink: Any) -> None:
                    async for message in source:
                        if message.type == aiohttp.WSMsgType.BINARY:
                            await sink.send_bytes(message.data)
                        elif message.type == aiohttp.WSMsgType.TEXT:
                            await sink.send_str(message.data)
                    await sink.close()

                await asyncio.gather(pump(downstream, upstream), pump(upstream, downstream), return_exceptions=True)
                return downstream
        body = await request.read()
        async with session.request(request.method, target, data=body or None, headers=headers) as answer:
            content = await answer.read()
            kept = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP}
            return web.Response(status=answer.status, body=content, headers=kept)


#: headers that belong to one hop of HTTP, not to the answer passed on
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "date", "server", "upgrade"}
