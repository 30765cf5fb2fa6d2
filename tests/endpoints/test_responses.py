"""What a worker gets from an endpoint: statuses passed through, the upstream's failures as
clear stream errors (never a hang), the limits, and the type every stream announces."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest

import rxchannel as rx
from rxchannel.core import ErrorCode, RemoteError, parse_request_metadata
from rxchannel.files._common import item_info
from rxchannel.hub import EndpointLimits, EndpointStatusError, Hub, request_endpoint
from rxchannel.hub.endpoints import ENDPOINT_FAILED
from tests.endpoints.conftest import World, world_with
from tests.support import collect, eventually, make_file


@pytest.mark.parametrize("code, reason", [(404, "Not Found"), (500, "Internal Server Error")])
async def test_an_error_status_is_passed_through_with_its_page(world: World, code: int, reason: str) -> None:
    response = await request_endpoint(world.peer, "api", f"status/{code}")
    assert (response.status, response.reason, response.ok) == (code, reason, False)
    assert response.headers["content-type"].startswith("text/plain")
    assert await response.text() == f"status {code}: the service says no\nsecond line\n"
    again = await request_endpoint(world.peer, "api", f"status/{code}")
    with pytest.raises(EndpointStatusError) as caught:
        await again.raise_for_status()
    assert str(caught.value) == f"HTTP {code} {reason}: status {code}: the service says no"
    # request-response: the same status in the one item's metadata
    reply = await world.peer.request_response(f"endpoints/api/status/{code}")
    _, info = parse_request_metadata(reply.metadata)
    assert info["type"] == "endpoint" and info["status"] == code and reply.data.startswith(b"status")


async def test_a_refused_connection_is_a_clear_stream_error(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    hub = Hub(tmp_path, endpoints={"down": f"http://127.0.0.1:{port}/"})
    server = await rx.serve(hub.router, transport="ws")
    try:
        async with await rx.connect(server.url) as peer:
            with pytest.raises(RemoteError) as caught:
                await request_endpoint(peer, "down", "x")
            assert caught.value.code == ENDPOINT_FAILED
            assert caught.value.message == "endpoint 'down': cannot connect to its upstream (connection refused)"
            assert str(port) not in caught.value.message  # the upstream's address stays on the hub
            assert not hub.endpoints.exchanges
    finally:
        await server.close()
        hub.close()


async def test_an_upstream_dying_mid_body_is_a_clear_error_at_the_worker_not_a_hang(world: World) -> None:
    response = await request_endpoint(world.peer, "api", "die?after=200000")
    assert response.size == 1 << 20
    got = 0
    with pytest.raises(RemoteError) as caught:
        async with asyncio.timeout(10):
            async for chunk in response:
                got += len(chunk)
    assert caught.value.code == ENDPOINT_FAILED
    assert "the connection to its upstream broke after" in caught.value.message
    assert got <= 200_000
    await eventually(lambda: not world.hub.endpoints.exchanges, what="the exchange to be over")


async def test_an_upstream_that_never_answers_or_goes_silent_times_out(tmp_path: Path) -> None:
    limits = EndpointLimits(response_timeout=0.3, idle_timeout=0.3)
    async with world_with(tmp_path, limits) as world:
        with pytest.raises(RemoteError) as caught:
            await request_endpoint(world.peer, "api", "never")
        assert caught.value.code == ENDPOINT_FAILED
        assert caught.value.message == "endpoint 'api': its upstream sent no response within 0.3 s"
        response = await request_endpoint(world.peer, "api", "silent")
        with pytest.raises(RemoteError) as caught:
            await response.read()
        silent = "endpoint 'api': its upstream sent nothing for 0.3 s (after 10 bytes of the body)"
        assert caught.value.message == silent
        await eventually(lambda: not world.hub.endpoints.exchanges, what="the exchanges to be over")


async def test_request_and_response_sizes_are_limited(tmp_path: Path) -> None:
    limits = EndpointLimits(max_request_body=1024, max_response_body=100_000, max_buffered_response=50_000)
    async with world_with(tmp_path, limits) as world:
        with pytest.raises(RemoteError, match="the request body is 2048 bytes; endpoints take at most 1024"):
            await request_endpoint(world.peer, "api", "upload", method="POST", body=b"x" * 2048)
        with pytest.raises(RemoteError, match="larger than 1024 bytes"):
            response = await request_endpoint(world.peer, "api", "upload", body=(b"y" * 512 for _ in range(4)))
            await response.read()
        with pytest.raises(RemoteError, match="the 100 bytes announced") as caught:
            response = await request_endpoint(world.peer, "api", "upload", body=[b"z" * 150], size=100)
            await response.read()
        assert caught.value.code == ErrorCode.REJECTED
        with pytest.raises(RemoteError, match="ended at 50 of the 100 bytes announced"):
            response = await request_endpoint(world.peer, "api", "upload", body=[b"z" * 50], size=100)
            await response.read()
        response = await request_endpoint(world.peer, "api", "big?size=1000000")
        with pytest.raises(RemoteError, match="larger than 100000 bytes, the most this hub passes on"):
            await response.read()
        with pytest.raises(RemoteError, match="a request-response holds at most 50000: stream it instead"):
            await world.peer.request_response("endpoints/api/big?size=60000")
        assert "/v1/upload" not in [r for r in world.upstream.requests if "2048" in r]
        await eventually(lambda: not world.hub.endpoints.exchanges, what="the exchanges to be over")


async def test_an_upload_of_announced_size_goes_with_content_length(world: World) -> None:
    response = await request_endpoint(world.peer, "api", "upload", body=[b"a" * 700, b"b" * 300], size=1000)
    reply = await response.json()
    assert reply["bytes"] == 1000 and reply["chunked"] is False and reply["length"] == 1000


async def test_a_connection_may_hold_only_so_many_exchanges(tmp_path: Path) -> None:
    async with world_with(tmp_path, EndpointLimits(max_exchanges_per_connection=1)) as world:
        first = await request_endpoint(world.peer, "api", "big?size=10000000", window=1)
        with pytest.raises(RemoteError, match="this connection has 1 endpoint requests under way"):
            await request_endpoint(world.peer, "api", "items")
        await first.aclose()
        await eventually(lambda: not world.hub.endpoints.exchanges, what="the first exchange to be over")
        assert (await request_endpoint(world.peer, "api", "items")).status == 200


async def test_leaving_early_aborts_the_upstream_request(world: World) -> None:
    response = await request_endpoint(world.peer, "api", f"big?size={64 << 20}", window=4)
    async for _ in response:
        break  # one chunk is enough
    await asyncio.wait_for(world.upstream.aborted.wait(), 10)
    assert world.upstream.produced < 8 << 20
    await eventually(lambda: not world.hub.endpoints.exchanges, what="the exchange to be over")


async def test_head_and_empty_bodies_come_as_one_empty_item_with_the_status(world: World) -> None:
    stream = world.peer.request_stream("endpoints/api/echo", info={"method": "HEAD"})
    (only,) = await collect(stream)
    info = item_info(only)
    assert only.data == b"" and info["type"] == "endpoint" and info["status"] == 200 and "size" not in info
    response = await request_endpoint(world.peer, "api", "echo", method="DELETE")
    assert (await response.json())["method"] == "DELETE"


async def test_every_stream_says_its_type_in_its_first_metadata(world: World) -> None:
    make_file(world.hub.root / "f.bin", 100_000, seed=1)
    first = await world.peer.request_stream("files/f.bin").next()
    assert item_info(first)["type"] == "file" and item_info(first)["size"] == 100_000
    shared = await world.peer.request_stream("share/f.bin").next()
    assert item_info(shared)["type"] == "file"
    buffer = await world.peer.request_response("buffers/f.bin")
    assert item_info(buffer) == {"type": "buffer", "size": 100_000}
    (item,) = await collect(world.peer.request_stream("endpoints/api/items"))
    info = item_info(item)
    assert info["type"] == "endpoint" and info["status"] == 200 and info["size"] == len(item.data)
    assert json.loads(item.data)["items"] == [1, 2, 3]
