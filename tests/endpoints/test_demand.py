"""Demand through an endpoint, measured against a real upstream (issue 27, "What it must show").

* a 64 MiB body read by a slow worker: the hub never reads the upstream further than the
  worker has taken + its window + aiohttp's buffer + one socket read, and the upstream
  itself never gets further than that + the two kernel buffers between them (sampled at
  every chunk and after every pause of the worker);
* the same check fails for a hub that reads ahead (aiohttp's pause disabled): the
  negative control that shows the check can fail;
* server-sent events pass through one by one (upstream and worker in lockstep: an event
  the hub held back would stall the test), and ``take(10)`` on the worker aborts the
  upstream request;
* a 32 MiB upload on a request-channel: the worker's source is pulled only as the hub
  writes upstream, and the upstream's digest matches.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from reactivex import operators as ops

from rxchannel.hub import EndpointLimits, endpoints, request_endpoint
from rxchannel.hub.endpoints import Exchange
from rxchannel.reactive.endpoints import endpoint as rx_endpoint
from tests.endpoints.conftest import World, world_with
from tests.endpoints.upstream import BLOCK, block, blocks, expected
from tests.support import eventually

#: bytes per item (the hub's read size, EndpointLimits.read_size)
READ = 64 * 1024
#: the most asyncio reads from a socket in one go (selector transports' max_size): what can
#: arrive in the one data_received that crosses aiohttp's high-water mark
ONE_RECV = 256 * 1024


def _buffer(sock: socket.socket | None, option: int) -> int:
    if sock is None or sock.fileno() < 0:
        return 0
    return sock.getsockopt(socket.SOL_SOCKET, option)


@dataclass
class Samples:
    """What a slow read saw: the worst of each bound's margin (negative: within it)."""

    count: int = 0
    hub_ahead: int = 0  # most the hub had read past what the worker had taken
    upstream_ahead: int = 0  # most the upstream had written past what the worker had taken
    hub_excess: int = -(1 << 62)  # most past the hub's bound
    upstream_excess: int = -(1 << 62)  # most past the upstream's bound
    buffers: dict[str, int] = field(default_factory=dict)

    def sample(self, world: World, exchange: Exchange, taken: int, window: int) -> None:
        hub_read, produced = exchange.bytes_read, world.upstream.produced
        hub_rcvbuf = _buffer(exchange.upstream_socket, socket.SO_RCVBUF)
        self.buffers["hub SO_RCVBUF"] = max(self.buffers.get("hub SO_RCVBUF", 0), hub_rcvbuf)
        self.buffers["upstream SO_SNDBUF"] = world.upstream.send_buffer
        # the hub: the window's credit (+1 pulled ahead), aiohttp's buffer (twice read_size), one socket read
        hub_bound = taken + (window + 1) * READ + 2 * READ + ONE_RECV
        # the upstream: what the hub read + both kernel buffers (one segment over each, as Linux
        # allows) + aiohttp's writer and the transport on the upstream
        kernel = self.buffers["hub SO_RCVBUF"] + world.upstream.send_buffer + 2 * READ
        upstream_bound = hub_read + kernel + 2 * READ
        self.count += 1
        self.hub_ahead = max(self.hub_ahead, hub_read - taken)
        self.upstream_ahead = max(self.upstream_ahead, produced - taken)
        self.hub_excess = max(self.hub_excess, hub_read - hub_bound)
        self.upstream_excess = max(self.upstream_excess, produced - upstream_bound)


async def slow_read(
    world: World, size: int, *, window: int, pause_every: int, pause: float, chunked: bool = False
) -> tuple[str, Samples]:
    """Read ``/v1/big`` of ``size`` bytes (``chunked``: without a Content-Length), stopping for
    ``pause`` seconds every ``pause_every`` bytes (meanwhile the hub and the upstream run as
    they like); sample at every chunk."""
    path = f"big?size={size}" + ("&chunked=1" if chunked else "")
    response = await request_endpoint(world.peer, "api", path, window=window)
    assert response.status == 200 and response.size == (None if chunked else size)
    exchange = world.exchange()
    samples = Samples()
    digest = hashlib.sha256()
    taken = 0
    async for chunk in response:
        taken += len(chunk)
        digest.update(chunk)
        samples.sample(world, exchange, taken, window)
        if taken // pause_every != (taken - len(chunk)) // pause_every:
            await asyncio.sleep(pause)  # the slow worker; the bounds do not depend on how long
            samples.sample(world, exchange, taken, window)
    assert taken == size
    return digest.hexdigest(), samples


async def test_a_64_mib_body_is_read_from_the_upstream_only_as_a_slow_worker_takes_it(world: World) -> None:
    size = 64 << 20
    digest, samples = await slow_read(world, size, window=8, pause_every=4 << 20, pause=0.05)
    assert digest == expected(size)
    print(f"\n64 MiB, window 8: {samples}")
    assert samples.count > 1000
    assert samples.hub_excess <= 0, f"the hub read {samples.hub_excess} bytes past its bound: {samples}"
    assert samples.upstream_excess <= 0, f"the upstream got {samples.upstream_excess} bytes past its bound: {samples}"
    # and the bound is a bound, not a formality: far less than the body
    assert samples.upstream_ahead < 4 << 20, samples
    await eventually(lambda: not world.hub.endpoints.exchanges, what="the exchange to be over")


async def test_a_chunked_body_of_unknown_length_is_read_with_the_same_demand(world: World) -> None:
    """No Content-Length: the end is found by one read past the credit (the +1 of the bound)."""
    size = 16 << 20
    digest, samples = await slow_read(world, size, window=8, pause_every=2 << 20, pause=0.05, chunked=True)
    assert digest == expected(size)
    print(f"\n16 MiB chunked, window 8: {samples}")
    assert samples.hub_excess <= 0, f"the hub read {samples.hub_excess} bytes past its bound: {samples}"
    assert samples.upstream_excess <= 0, f"the upstream got {samples.upstream_excess} bytes past its bound: {samples}"


async def test_the_bound_check_fails_for_a_hub_that_reads_ahead(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The negative control: with aiohttp's pause disabled the hub reads all the upstream
    sends, and the same samples show it."""
    opened = Exchange.open

    async def eager(self: Exchange, body: Any) -> Any:
        response = await opened(self, body)
        response.content._high_water = 1 << 40  # never pause the socket
        return response

    monkeypatch.setattr(Exchange, "open", eager)
    size = 16 << 20
    digest, samples = await slow_read(world, size, window=8, pause_every=2 << 20, pause=0.05)
    assert digest == expected(size)
    assert samples.hub_excess > 1 << 20, f"reading ahead went unnoticed: {samples}"


async def test_server_sent_events_pass_through_one_by_one_and_take_10_aborts_the_upstream(world: World) -> None:
    got: list[bytes] = []
    finished = asyncio.Event()

    async def in_step(index: int) -> None:
        # the next event is written only once the worker has this one: an event the hub
        # kept back (to fill a chunk, or until the end) would stop the test here
        if finished.is_set():
            await asyncio.sleep(0.005)  # the worker is gone: let the abort catch up with the writes
            return
        await eventually(lambda: len(got) > index or finished.is_set(), what=f"event {index} at the worker")

    world.upstream.event_gate = in_step
    response = await rx_endpoint(world.peer, "api", "events?count=1000", headers={"accept": "text/event-stream"})
    assert response.status == 200 and response.headers["content-type"] == "text/event-stream"
    assert response.size is None  # no Content-Length: the body's end is found by reading
    response.body.pipe(ops.take(10)).subscribe(
        on_next=got.append, on_error=lambda e: finished.set(), on_completed=finished.set
    )
    await asyncio.wait_for(finished.wait(), 10)
    assert got == [f"id: {i}\ndata: event {i}\n\n".encode() for i in range(10)]
    await asyncio.wait_for(world.upstream.aborted.wait(), 10)
    assert world.upstream.events < 1000, "the upstream wrote every event: its request was not aborted"
    await eventually(lambda: not world.hub.endpoints.exchanges, what="the exchange to be over")


async def upload(world: World, size: int) -> dict[str, int]:
    """POST ``size`` generated bytes to ``/v1/upload`` through the hub, the upstream reading
    slowly; returns the worst margin of each bound (negative: within it) and what was seen."""
    window = world.hub.endpoints.limits.upload_window  # the hub's credit for an upload
    pulled = 0
    worst = {"credit": -(1 << 62), "total": -(1 << 62), "ahead": 0, "hub SO_SNDBUF": 0}
    exchange: list[Exchange] = []

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled
        for index, length in blocks(size):
            if not exchange:
                await eventually(lambda: bool(world.hub.endpoints.exchanges), what="the exchange")
                exchange.append(world.exchange())
            ex = exchange[0]
            # the worker sends within the hub's credit: what the hub wrote upstream + its window (+1 held)
            worst["credit"] = max(worst["credit"], pulled - ex.sent - (window + 1) * BLOCK)
            # and the hub writes only as the upstream reads: its own buffers (aiohttp's writer and
            # the transport: twice 64 KiB), the two kernel buffers (one segment over each, as
            # Linux allows), the upstream's read buffer (twice 64 KiB + one socket read)
            worst["hub SO_SNDBUF"] = max(worst["hub SO_SNDBUF"], _buffer(ex.upstream_socket, socket.SO_SNDBUF))
            kernel = worst["hub SO_SNDBUF"] + world.upstream.receive_buffer + 2 * BLOCK
            allowed = (window + 1) * BLOCK + 2 * BLOCK + kernel + 2 * BLOCK + ONE_RECV
            worst["total"] = max(worst["total"], pulled - world.upstream.received - allowed)
            worst["ahead"] = max(worst["ahead"], pulled - world.upstream.received)
            pulled += length
            yield block(index, length)

    async def slow(received: int) -> None:
        if received // (2 << 20) != (received - BLOCK) // (2 << 20):
            await asyncio.sleep(0.05)  # a slow upstream: the bounds do not depend on how long

    world.upstream.upload_gate = slow
    response = await request_endpoint(world.peer, "api", "upload", body=body())
    reply = await response.json()
    assert response.status == 200
    assert reply == {"sha256": expected(size), "bytes": size, "chunked": True, "length": None}
    return worst


@pytest.mark.parametrize("socket_buffer", [None, 256 * 1024], ids=["kernel-buffers", "fixed-buffers"])
async def test_a_32_mib_upload_is_pulled_from_the_worker_only_as_the_hub_writes_it_upstream(
    tmp_path: Path, socket_buffer: int | None
) -> None:
    async with world_with(tmp_path, EndpointLimits(socket_buffer=socket_buffer)) as world:
        worst = await upload(world, 32 << 20)
    print(f"\n32 MiB upload, socket_buffer={socket_buffer}: {worst}")
    assert worst["credit"] <= 0, worst
    assert worst["total"] <= 0, worst


async def test_the_upload_check_fails_for_a_hub_that_takes_the_upload_ahead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The negative control: a hub that drains the worker's upload into memory as fast as it
    comes (whatever the upstream takes) is caught by the same samples."""

    async def eager(first: bytes, rest: Any) -> AsyncIterator[Any]:
        taken: asyncio.Queue[Any] = asyncio.Queue()

        async def drain() -> None:
            async for item in rest:
                taken.put_nowait(item)
            taken.put_nowait(None)

        task = asyncio.ensure_future(drain())
        try:
            while (item := await taken.get()) is not None:
                yield item
        finally:
            task.cancel()

    monkeypatch.setattr(endpoints, "_first_then", eager)
    async with world_with(tmp_path, EndpointLimits(socket_buffer=128 * 1024)) as world:
        worst = await upload(world, 8 << 20)
    assert worst["credit"] > 0 and worst["total"] > 0, f"taking the upload ahead went unnoticed: {worst}"
