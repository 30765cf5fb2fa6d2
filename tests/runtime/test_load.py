"""Load: many streams on one connection, many connections on one hub, and a soak of short
streams with no growth in tasks, file descriptors or memory. ``make soak`` runs 10,000."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
import statistics
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import rxchannel as rx
from rxchannel.core import ConnectionConfig, Role
from rxchannel.files import fetch_file, sha256_file
from rxchannel.hub import Hub, HubLimits
from rxchannel.runtime import Peer
from rxchannel.transports import memory_pair
from tests.support import eventually, make_file

SOAK_STREAMS = int(os.environ.get("RXCHANNEL_SOAK_STREAMS", "1000"))


def numbered_router() -> rx.Router:
    router = rx.Router()

    @router.stream("items")
    async def items(request: rx.Request) -> AsyncIterator[bytes]:
        count, seed = map(int, request.data.split(b","))
        for i in range(count):
            yield hashlib.sha256(b"%d-%d" % (seed, i)).digest() * 8  # 256 bytes

    router.response("ping")(lambda request: request.data)
    return router


async def connected(kind: str, config: ConnectionConfig | None = None) -> tuple[Peer, Any]:
    router = numbered_router()
    if kind == "memory":
        a, b = memory_pair()
        server = Peer(b, Role.SERVER, router=router, config=config)
        return Peer(a, Role.CLIENT, config=config), server
    srv = await rx.serve_tcp(router, config=config)
    return await rx.connect_tcp("127.0.0.1", srv.port, config=config), srv


@pytest.mark.parametrize("kind", ["memory", "tcp"])
async def test_200_concurrent_streams_on_one_connection_all_complete_fairly(kind: str) -> None:
    """Fairness on a logical clock (items delivered across all streams), not wall time: a
    starved stream would finish only after the others had moved far more."""
    client, server = await connected(kind, ConnectionConfig(max_streams=256))
    count, delivered = 100, 0

    async def one(seed: int) -> int:
        nonlocal delivered
        got = []
        async for p in client.request_stream("items", b"%d,%d" % (count, seed), window=8):
            got.append(p.data)
            delivered += 1
        expected = [hashlib.sha256(b"%d-%d" % (seed, i)).digest() * 8 for i in range(count)]
        assert got == expected, f"stream {seed} lost or reordered items"
        return delivered  # items delivered across all streams when this one finished

    finished_at = await asyncio.gather(*(one(seed) for seed in range(200)))
    median, first = statistics.median(finished_at), min(finished_at)
    print(f"\n{kind}: 200 streams x {count} items: first done at item {first}, median at {median:.0f}")
    # in a fair system every stream progresses together: none finishes before the others moved most of theirs
    assert first >= 0.5 * 200 * count, f"a stream finished at item {first} of {200 * count}: others were starved"
    assert client.connection.open_streams == 0
    await client.close()
    await server.close()


async def test_20_connections_at_once_on_one_hub(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for i in range(20):
        make_file(root / f"f{i}.bin", 200_000 + i * 1000, seed=i)
    hub = Hub(root, limits=HubLimits(chunk_size=16 * 1024))
    server = await rx.serve_tcp(hub.router)
    written = [0] * 20  # bytes each worker has on disk

    async def worker(i: int) -> int:
        finished_at = 0

        def counted(done: int, total: int | None, credits: int) -> None:
            nonlocal finished_at
            written[i] = done
            if done == total:
                finished_at = sum(written)  # bytes written across all workers when this one wrote its last

        async with await rx.connect_tcp("127.0.0.1", server.port) as peer:
            result = await fetch_file(peer, f"f{i}.bin", tmp_path / f"out{i}.bin", window=8, progress=counted)
            assert result.sha256 == sha256_file(root / f"f{i}.bin")
        return finished_at

    finished_at = await asyncio.gather(*(worker(i) for i in range(20)))
    total = sum(200_000 + i * 1000 for i in range(20))
    print(f"\n20 connections: first done at byte {min(finished_at)} of {total}")
    assert min(finished_at) >= 0.5 * total, "one connection finished before the others had moved half: unfair"
    await eventually(lambda: not server.peers and not hub.sources, what="the hub freeing every connection")
    await server.close()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("kind", ["memory", "tcp"])
async def test_soak_of_short_streams_grows_nothing(kind: str) -> None:
    client, server = await connected(kind)
    for _ in range(50):  # warm up caches and lazily created objects
        await client.request_response("ping", b"x")
    gc.collect()
    tasks_before, fds_before = len(asyncio.all_tasks()), open_fds()
    tracemalloc.start()
    snapshot_before = tracemalloc.take_snapshot()
    for i in range(SOAK_STREAMS):
        if i % 2:
            assert (await client.request_response("ping", b"%d" % i)).data == b"%d" % i
        else:
            assert len([p async for p in client.request_stream("items", b"3,%d" % i, window=2)]) == 3
    gc.collect()
    await eventually(lambda: len(asyncio.all_tasks()) <= tasks_before, what="the streams' tasks ending")
    snapshot_after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in snapshot_after.compare_to(snapshot_before, "filename"))
    tasks_after, fds_after = len(asyncio.all_tasks()), open_fds()
    print(
        f"\n{kind}: {SOAK_STREAMS} streams: tasks {tasks_before}->{tasks_after}, fds {fds_before}->{fds_after}, "
        f"python heap {grown / 1024:+.0f} KiB"
    )
    assert tasks_after <= tasks_before and fds_after <= fds_before
    assert grown < 512 * 1024, f"memory grew by {grown} bytes over {SOAK_STREAMS} streams"
    assert client.connection.open_streams == 0
    await client.close()
    await server.close()
