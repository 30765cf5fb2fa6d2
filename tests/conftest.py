"""Shared fixtures: transport pairs for the conformance suite, peer pairs over every
transport (the one way tests connect two peers), and leak checks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from rxchannel.transports import Transport, TransportLimits, memory_pair
from rxchannel.transports.tcp import TcpTransport, connect_tcp_transport, start_tcp_server

PairFactory = Callable[[TransportLimits | None], Awaitable[tuple[Transport, Transport]]]


async def _memory(limits: TransportLimits | None) -> tuple[Transport, Transport]:
    return memory_pair(limits=limits, receive_buffer=1 << 20)


async def _memory_shaped(limits: TransportLimits | None) -> tuple[Transport, Transport]:
    return memory_pair(limits=limits, latency=0.005, bandwidth=50e6, receive_buffer=1 << 20)


async def _tcp(limits: TransportLimits | None) -> tuple[Transport, Transport]:
    accepted: asyncio.Future[TcpTransport] = asyncio.get_running_loop().create_future()
    server = await start_tcp_server(lambda t: accepted.set_result(t), "127.0.0.1", 0, limits)
    port = server.sockets[0].getsockname()[1]
    client = await connect_tcp_transport("127.0.0.1", port, limits)
    other = await accepted
    server.close()
    return client, other


async def _datachannel(limits: TransportLimits | None) -> tuple[Transport, Transport]:
    from rxchannel.transports.signaling import datachannel_pair

    return await datachannel_pair(limits=limits)


_CLEANUPS: list[Callable[[], Awaitable[None]]] = []


@pytest.fixture(autouse=True)
async def _run_cleanups() -> AsyncIterator[None]:
    yield
    while _CLEANUPS:
        await _CLEANUPS.pop()()


async def serve_websocket(on_transport: Callable[..., object], limits: TransportLimits | None = None) -> str:
    """An aiohttp server on 127.0.0.1 handing each WebSocket at /rsocket to ``on_transport``; returns its URL."""
    from aiohttp import web

    from rxchannel.transports.websocket import CLOSE_TIMEOUT, WebSocketTransport

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0, timeout=CLOSE_TIMEOUT)
        await ws.prepare(request)
        transport = WebSocketTransport(ws, limits)
        on_transport(transport)
        await transport.done.wait()
        return ws

    app = web.Application()
    app.router.add_get("/rsocket", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    _CLEANUPS.append(runner.cleanup)
    port = runner.addresses[0][1]
    return f"ws://127.0.0.1:{port}/rsocket"


async def _websocket(limits: TransportLimits | None) -> tuple[Transport, Transport]:
    from rxchannel.transports.websocket import connect_websocket_transport

    accepted: asyncio.Future[Transport] = asyncio.get_running_loop().create_future()
    url = await serve_websocket(accepted.set_result, limits)
    client = await connect_websocket_transport(url, limits)
    return client, await accepted


TRANSPORTS: dict[str, PairFactory] = {
    "websocket": _websocket,
    "memory": _memory,
    "memory-shaped": _memory_shaped,
    "tcp": _tcp,
    "datachannel": _datachannel,
}
#: Transports whose sender feels a reader that stops reading. A DataChannel does not:
#: aiortc delivers every message it receives, so there only RSocket credit bounds memory.
READER_BACKPRESSURE = ["memory", "memory-shaped", "tcp", "websocket"]


@pytest.fixture(params=sorted(TRANSPORTS))
def make_pair(request: pytest.FixtureRequest) -> PairFactory:
    return TRANSPORTS[request.param]


@pytest.fixture(params=READER_BACKPRESSURE)
def make_stallable_pair(request: pytest.FixtureRequest) -> PairFactory:
    return TRANSPORTS[request.param]


ConnectPeers = Callable[..., Awaitable[tuple[Any, Any]]]
#: Transports a pair of peers can be joined over (real sockets and real aiortc, or in memory).
PEER_TRANSPORTS = ["memory", "tcp", "websocket", "datachannel"]


async def open_peers(kind: str, router: Any = None, config: Any = None, **pair_options: Any) -> tuple[Any, Any]:
    """A client-role and a server-role peer joined over ``kind``; the server serves ``router``."""
    from rxchannel import Router
    from rxchannel.core import Role
    from rxchannel.runtime import Peer

    if kind == "memory":
        a, b = memory_pair(**pair_options)
    else:
        a, b = await TRANSPORTS[kind](pair_options.get("limits"))
    server = Peer(b, Role.SERVER, router=router or Router(), config=config)
    client = Peer(a, Role.CLIENT, config=config)
    return client, server


@pytest.fixture(params=PEER_TRANSPORTS)
async def connect_peers(request: pytest.FixtureRequest) -> AsyncIterator[ConnectPeers]:
    """``await connect_peers(router, config=None)`` -> (client, server), over each transport;
    both peers are closed when the test ends, whatever happened in it."""
    opened: list[Any] = []

    async def connect(router: Any = None, config: Any = None, **pair_options: Any) -> tuple[Any, Any]:
        client, server = await open_peers(request.param, router, config, **pair_options)
        opened.extend((client, server))
        return client, server

    try:
        yield connect
    finally:
        await asyncio.gather(*(peer.close() for peer in opened), return_exceptions=True)


@pytest.fixture
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Fail the test if it leaves tasks running (STYLE habit 14)."""
    before = asyncio.all_tasks()
    yield
    for _ in range(20):
        leftover = [t for t in asyncio.all_tasks() - before if not t.done() and t is not asyncio.current_task()]
        if not leftover:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"tasks left running: {leftover}")
