"""Shared fixtures: transport pairs for the conformance suite, and leak checks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

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
    from rxchannel.signaling import datachannel_pair

    return await datachannel_pair(limits=limits)


TRANSPORTS: dict[str, PairFactory] = {
    "memory": _memory,
    "memory-shaped": _memory_shaped,
    "tcp": _tcp,
    "datachannel": _datachannel,
}
#: Transports whose sender feels a reader that stops reading. A DataChannel does not:
#: aiortc delivers every message it receives, so there only RSocket credit bounds memory.
READER_BACKPRESSURE = ["memory", "memory-shaped", "tcp"]


@pytest.fixture(params=sorted(TRANSPORTS))
def make_pair(request: pytest.FixtureRequest) -> PairFactory:
    return TRANSPORTS[request.param]


@pytest.fixture(params=READER_BACKPRESSURE)
def make_stallable_pair(request: pytest.FixtureRequest) -> PairFactory:
    return TRANSPORTS[request.param]


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
