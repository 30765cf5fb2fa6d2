"""Broadcast on JetStream (issue 28): a file published once into a stream of its own, read by
every worker through its own consumer, from any hub; a slow worker lags by its own cursor."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest
from nats.aio.client import Client

import rxchannel as rx
from rxchannel.core import Window, parse_request_metadata
from rxchannel.nats import JetStreamRoutes, broadcast_file, broadcast_names, broadcast_source
from tests.support import make_file

CHUNK = 16 * 1024


async def test_jetstream_broadcast_serves_each_worker_at_its_own_pace_from_any_hub(nc: Client, tmp_path: Path) -> None:
    content = make_file(tmp_path / "big.bin", 100 * CHUNK, seed=7)
    published = await broadcast_file(nc, tmp_path / "big.bin", "big", chunk_size=CHUNK)
    assert published.messages == 100
    servers = []
    for _ in range(2):  # two hubs, one stream
        router = rx.Router()
        JetStreamRoutes(nc).install(router)
        servers.append(await rx.serve_tcp(router))
    stream, _ = broadcast_names("big")
    js = nc.jetstream()
    peaks: dict[str, int] = {}

    async def sample() -> None:
        while True:
            for info in await js.consumers_info(stream):
                peaks[info.name] = max(peaks.get(info.name, 0), info.num_ack_pending)
            await asyncio.sleep(0.005)

    progress = {"fast": 0, "slow": 0, "late": 0}
    slow_when_fast_finished: list[int] = []

    async def worker(name: str, server: rx.Server, pause: float) -> bytes:
        async with await rx.connect_tcp("127.0.0.1", server.port) as peer:
            chunks = []
            async for item in peer.request_stream("broadcast/big", window=Window(4)):
                chunks.append(item)
                progress[name] += 1
                await asyncio.sleep(pause)
        if name == "fast":
            slow_when_fast_finished.append(progress["slow"])
        _, last = parse_request_metadata(chunks[-1].metadata)
        data = b"".join(c.data for c in chunks)
        assert last["sha256"] == hashlib.sha256(data).hexdigest()
        return data

    sampler = asyncio.ensure_future(sample())
    try:
        fast, slow = await asyncio.wait_for(
            asyncio.gather(worker("fast", servers[0], 0), worker("slow", servers[1], 0.01)), 30
        )
        late = await asyncio.wait_for(worker("late", servers[0], 0), 30)  # joins after: from the start
    finally:
        sampler.cancel()
        for server in servers:
            await server.close()
    assert fast == slow == late == content
    assert slow_when_fast_finished[0] < 60  # the fast one was not held back by the slow one
    assert len(peaks) >= 2 and max(peaks.values()) <= 4, peaks  # each consumer: at most its window
    for _ in range(500):  # each reader's consumer goes with it (deleted once its stream ended)
        if not await js.consumers_info(stream):
            break
        await asyncio.sleep(0.01)
    assert await js.consumers_info(stream) == []
    assert (await js.stream_info(stream)).state.messages == 101  # the stream keeps the file (+ its end)


async def test_a_jetstream_broadcast_source_gives_each_subscriber_the_whole_topic(nc: Client, tmp_path: Path) -> None:
    content = make_file(tmp_path / "f.bin", 10 * CHUNK, seed=8)
    await broadcast_file(nc, tmp_path / "f.bin", "topic-1", chunk_size=CHUNK)
    source = broadcast_source(nc, "topic-1", window=2)
    first = b"".join([m.data async for m in source])
    second = b"".join([m.data async for m in source])
    assert first == second == content


async def test_a_jetstream_broadcast_topic_that_was_never_published_is_refused(nc: Client) -> None:
    router = rx.Router()
    JetStreamRoutes(nc).install(router)
    server = await rx.serve_tcp(router)
    try:
        async with await rx.connect_tcp("127.0.0.1", server.port) as peer:
            with pytest.raises(rx.RemoteError, match="RXC_BCAST_nothing"):
                await peer.request_stream("broadcast/nothing").collect()
            with pytest.raises(rx.RemoteError, match="topic"):
                await peer.request_stream("broadcast/a.b").collect()
    finally:
        await server.close()
