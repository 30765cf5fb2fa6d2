"""Serving a router and dialing a peer by URL, over every transport.

URL schemes (DESIGN.md §6): ``http://host:port`` (WebRTC DataChannel, HTTP offer/answer
signaling at ``POST /offer``), ``ws://host:port/rsocket`` (WebSocket) and
``tcp://host:port``. One HTTP service answers both ``/offer`` and ``/rsocket``.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from .core import ConnectionConfig, Role
from .peer import Peer
from .router import Router
from .server import Server, connect_tcp, largest_frame, serve_tcp
from .signaling import accept_offer, ice_hosts_for, offer_json, open_datachannel
from .transports import TransportLimits
from .transports.websocket import CLOSE_TIMEOUT, WebSocketTransport, connect_websocket_transport

__all__ = ["HttpService", "connect", "serve"]

TRANSPORTS = ("webrtc", "ws", "tcp")


class HttpService(Server):
    """An aiohttp service: WebRTC signaling at ``POST /offer`` and WebSockets at ``GET /rsocket``."""

    def __init__(
        self,
        router: Router,
        config: ConnectionConfig | None,
        *,
        ice_servers: Sequence[str] = (),
        limits: TransportLimits | None = None,
        scheme: str = "http",
    ):
        super().__init__(router, config)
        self.ice_servers = tuple(ice_servers)
        self.limits = limits
        self.scheme = scheme
        self.app = web.Application(client_max_size=1 << 20)
        self.app.router.add_post("/offer", self._offer)
        self.app.router.add_get("/rsocket", self._websocket)
        self.app.router.add_get("/", self._static("index.html", "text/html"))
        self.app.router.add_get("/rxchannel.js", self._static("rxchannel.js", "text/javascript"))
        self.app.router.add_post("/report", self._report)
        #: the latest reports browser workers posted (a worker page's results, bounded)
        self.reports: deque[dict[str, Any]] = deque(maxlen=100)
        self.on_report: Callable[[dict[str, Any]], object] | None = None
        self._runner: web.AppRunner | None = None

    @staticmethod
    def _static(name: str, content_type: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        body = (resources.files("rxchannel") / "web" / name).read_bytes()

        async def handler(request: web.Request) -> web.Response:
            return web.Response(body=body, content_type=content_type, headers={"Cache-Control": "no-store"})

        return handler

    async def _report(self, request: web.Request) -> web.Response:
        try:
            report = json.loads(await request.content.read(64 * 1024))
        except ValueError:
            return web.json_response({"error": "expected a JSON object"}, status=400)
        if not isinstance(report, dict):
            return web.json_response({"error": "expected a JSON object"}, status=400)
        self.reports.append(report)
        if self.on_report is not None:
            self.on_report(report)
        return web.json_response({"ok": True})

    async def _offer(self, request: web.Request) -> web.Response:
        try:
            offer = offer_json(await request.read())
            answer = await accept_offer(
                offer,
                self.accept,
                ice_servers=self.ice_servers,
                hosts=ice_hosts_for(self.host),
                limits=self.limits,
            )
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(answer)

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=largest_frame(self.config or ConnectionConfig()), timeout=CLOSE_TIMEOUT)
        await ws.prepare(request)
        transport = WebSocketTransport(ws, self.limits)
        peer = self.accept(transport)
        await peer.wait_closed()
        await transport.done.wait()
        return ws

    async def start(self, host: str, port: int) -> None:
        self._runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.host, self.port = self._runner.addresses[0][:2]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}" + ("/rsocket" if self.scheme == "ws" else "")

    async def close(self) -> None:
        await super().close()
        if self._runner is not None:
            await self._runner.cleanup()


async def serve(
    router: Router,
    *,
    transport: str = "webrtc",
    host: str = "127.0.0.1",
    port: int = 0,
    config: ConnectionConfig | None = None,
    ice_servers: Sequence[str] = (),
    limits: TransportLimits | None = None,
) -> Server:
    """Serve ``router`` over ``transport`` (webrtc, ws or tcp); read ``.url`` for the address to give out."""
    if transport == "tcp":
        return await serve_tcp(router, host, port, config=config, limits=limits)
    if transport not in TRANSPORTS:
        raise ValueError(f"unknown transport {transport!r}: use one of {', '.join(TRANSPORTS)}")
    service = HttpService(
        router, config, ice_servers=ice_servers, limits=limits, scheme="http" if transport == "webrtc" else "ws"
    )
    await service.start(host, port)
    return service


async def connect(
    url: str,
    *,
    router: Router | None = None,
    config: ConnectionConfig | None = None,
    ice_servers: Sequence[str] = (),
    limits: TransportLimits | None = None,
    timeout: float = 20.0,
) -> Peer:
    """Dial ``url`` and return a client-role :class:`Peer`.

    Raises:
        ValueError: an unsupported URL.
        ConnectionError / TimeoutError: the hub is unreachable.
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port
    if parts.scheme == "tcp":
        if port is None:
            raise ValueError(f"{url}: tcp:// URLs need a port")
        return await connect_tcp(host, port, router=router, config=config, limits=limits)
    if parts.scheme in ("ws", "wss"):
        transport: Any = await connect_websocket_transport(url, limits)
        return Peer(transport, Role.CLIENT, router=router, config=config)
    if parts.scheme in ("http", "https"):
        offer_url = url.rstrip("/") + "/offer"

        async def post(offer: dict[str, str]) -> dict[str, str]:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
                session.post(offer_url, json=offer) as response,
            ):
                body = await response.json(content_type=None)
                if response.status != 200:
                    raise ConnectionError(f"the hub refused the offer ({response.status}): {body.get('error')}")
                return dict(body)

        async with asyncio.timeout(timeout):
            transport = await open_datachannel(post, ice_servers=ice_servers, hosts=ice_hosts_for(host), limits=limits)
        return Peer(transport, Role.CLIENT, router=router, config=config)
    raise ValueError(
        f"unsupported URL {url!r}: use http://host:port (WebRTC), ws://host:port/rsocket or tcp://host:port"
    )
