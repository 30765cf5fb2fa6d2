"""RSocket -> JetStream -> RSocket (issue 28): a file stream published into JetStream by one
process's bridge and served out of it by another hub keeps demand end to end."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest
from nats.aio.client import Client

import rxchannel as rx
from rxchannel.core import Window, parse_request_metadata
from rxchannel.hub import Hub, HubLimits
from rxchannel.nats import jetstream_handler, stream_to_jetstream
from tests.nats.helpers import make_consumer, make_stream
from tests.support import make_file

CHUNK = 16 * 1024


async def test_a_remote_stream_bridged_through_jetstream_keeps_demand_end_to_end(nc: Client, tmp_path: Path) -> None:
    """Acceptance (issue 28): the first source's read offset stays within the last consumer's
    consumption + the windows on the way (its own, the stream's capacity, the bridge's)."""
    (tmp_path / "root").mkdir()
    content = make_file(tmp_path / "root" / "big.bin", 160 * CHUNK, seed=5)
    capacity, bridge_window, last_window = 4, 4, 2
    await make_stream(nc, "BRIDGE", ["bridge.>"], max_msgs=capacity)  # work queue, discard new
    await make_consumer(nc, "BRIDGE", "out")  # max_ack_pending 100,000: only the demand bounds it

    hub = Hub(tmp_path / "root", limits=HubLimits(chunk_size=CHUNK))  # A: the file's source
    a = await rx.serve_tcp(hub.router)
    router = rx.Router()  # C: a hub serving the stream out of JetStream
    router.stream("js/")(jetstream_handler(nc, "BRIDGE", consumer="out"))
    c = await rx.serve_tcp(router)
    to_a = await rx.connect_tcp("127.0.0.1", a.port)  # B: the bridge, a client of A
    d = await rx.connect_tcp("127.0.0.1", c.port)  # D: the last consumer, slow
    try:
        bridge = asyncio.ensure_future(
            stream_to_jetstream(to_a, "files/big.bin", nc, "bridge.big", window=bridge_window)
        )
        checks: list[tuple[int, int]] = []
        received = []
        async for item in d.request_stream("js/big", window=Window(last_window)):
            checks.append((-(-hub.bytes_read // CHUNK), len(received)))  # chunks A read, items D finished
            received.append(item)
            await asyncio.sleep(0.003)
        published = await asyncio.wait_for(bridge, 10)
    finally:
        for closing in (d.close(), to_a.close(), c.close(), a.close()):
            await closing
        hub.close()

    assert b"".join(i.data for i in received) == content and published.messages == 160
    _, first = parse_request_metadata(received[0].metadata)  # metadata crossed JetStream
    _, last = parse_request_metadata(received[-1].metadata)
    assert first["size"] == len(content) and last["sha256"] == hashlib.sha256(content).hexdigest()
    assert len(checks) == 160
    for read, consumed in checks:
        assert read <= consumed + last_window + capacity + bridge_window + 1, (read, consumed)


async def test_a_failed_source_reaches_the_last_consumer_through_jetstream(nc: Client, tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    await make_stream(nc, "BROKEN", ["broken.>"])
    hub = Hub(tmp_path / "root")
    a = await rx.serve_tcp(hub.router)
    router = rx.Router()
    router.stream("js/")(jetstream_handler(nc, "BROKEN", consumer="out"))
    c = await rx.serve_tcp(router)
    to_a = await rx.connect_tcp("127.0.0.1", a.port)
    d = await rx.connect_tcp("127.0.0.1", c.port)
    try:
        with pytest.raises(rx.RemoteError) as at_bridge:
            await stream_to_jetstream(to_a, "files/missing.bin", nc, "broken.x")
        with pytest.raises(rx.RemoteError) as at_end:
            await d.request_stream("js/x").collect()
    finally:
        for closing in (d.close(), to_a.close(), c.close(), a.close()):
            await closing
        hub.close()
    assert (at_end.value.code, at_end.value.message) == (at_bridge.value.code, at_bridge.value.message)


async def test_a_jetstream_route_refuses_a_stream_that_does_not_exist(nc: Client) -> None:
    router = rx.Router()
    router.stream("js/")(jetstream_handler(nc, "NOSUCH", consumer="out", create=False))
    c = await rx.serve_tcp(router)
    d = await rx.connect_tcp("127.0.0.1", c.port)
    try:
        with pytest.raises(rx.RemoteError, match="NOSUCH"):
            await d.request_stream("js/x").collect()
    finally:
        await d.close()
        await c.close()
