"""A hub with an endpoint in front of a real upstream (tests/endpoints/upstream.py), and a
worker connected to it over the hub's direct WebSocket (the path an ``http://`` hub URL
takes by default)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import rxchannel as rx
from rxchannel.hub import EndpointLimits, Hub
from rxchannel.hub.endpoints import Exchange
from tests.endpoints.upstream import Upstream


@dataclass
class World:
    upstream: Upstream
    hub: Hub
    server: rx.Server
    peer: rx.Peer

    def exchange(self) -> Exchange:
        """The one exchange under way."""
        (only,) = self.hub.endpoints.exchanges
        return only


@contextlib.asynccontextmanager
async def world_with(tmp_path: Path, limits: EndpointLimits | None = None, **hub: object) -> AsyncIterator[World]:
    async with Upstream() as upstream:
        root = tmp_path / "root"
        root.mkdir(exist_ok=True)
        service = Hub(root, endpoints={"api": f"{upstream.url}/v1"}, endpoint_limits=limits, **hub)  # type: ignore[arg-type]
        server = await rx.serve(service.router, transport="ws")
        peer = await rx.connect(server.url)
        try:
            yield World(upstream, service, server, peer)
        finally:
            await peer.close()
            await server.close()
            service.close()


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with world_with(tmp_path) as made:
        yield made
