"""Fixtures: transport pairs for the conformance suite, peer pairs over every transport
(the one way tests connect two peers), cleanups, and leak checks. Helpers are in ``support.py``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support import (
    CLEANUPS,
    PEER_TRANSPORTS,
    READER_BACKPRESSURE,
    TRANSPORTS,
    ConnectPeers,
    PairFactory,
    open_peers,
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="the event loop async tests run on (the library must work on both)",
    )


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    """``pytest --loop uvloop`` runs every async test on uvloop."""
    if config.getoption("--loop") == "uvloop":
        import uvloop

        return {"uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}


@pytest.fixture(autouse=True)
async def _run_cleanups() -> AsyncIterator[None]:
    try:
        yield
    finally:
        while CLEANUPS:
            await CLEANUPS.pop()()


@pytest.fixture(params=sorted(TRANSPORTS))
def make_pair(request: pytest.FixtureRequest) -> PairFactory:
    return TRANSPORTS[request.param]


@pytest.fixture(params=READER_BACKPRESSURE)
def make_stallable_pair(request: pytest.FixtureRequest) -> PairFactory:
    return TRANSPORTS[request.param]


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
async def tcp_peers() -> AsyncIterator[tuple[Any, Any, Any]]:
    """(client, server, router): a client peer of a TCP server serving ``router``."""
    import rxchannel as rx

    router = rx.Router()
    server = await rx.serve_tcp(router)
    try:
        client = await rx.connect_tcp("127.0.0.1", server.port)
        try:
            yield client, server, router
        finally:
            await client.close()
    finally:
        await server.close()


@pytest.fixture
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Fail the test if it leaves tasks running (STYLE habit 14): checked once every task
    the test started had the chance to finish, i.e. once the loop has nothing else to do."""
    before = asyncio.all_tasks()
    yield
    leftover: list[asyncio.Task[Any]] = []
    for _ in range(100):
        leftover = [t for t in asyncio.all_tasks() - before if not t.done() and t is not asyncio.current_task()]
        if not leftover:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"tasks left running: {leftover}")
