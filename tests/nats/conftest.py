"""Fixtures for the JetStream tests: a real nats-server per module (JetStream on, its store in a
temporary directory, a port it picks) and a NATS connection per test on a clean server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.nats.server import NatsServer, nats_server_missing

nats = pytest.importorskip("nats", reason="the [nats] extra (nats-py) is not installed")


@pytest.fixture(scope="module")
def nats_server() -> Iterator[NatsServer]:
    missing = nats_server_missing()
    if missing:
        pytest.skip(missing)
    with NatsServer() as server:
        yield server


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[nats.aio.client.Client]:
    """A connection to the module's server, with no stream left from an earlier test."""
    client = await nats.connect(nats_server.url)
    js = client.jetstream()
    for name in await js.streams_info():
        await js.delete_stream(name.config.name)
    try:
        yield client
    finally:
        await client.close()
