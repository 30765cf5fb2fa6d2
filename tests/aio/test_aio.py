"""Async iteration and the aiostream facade, over real peers.

Each stream is run both by iterating and by awaiting (aiostream's two ways), and every
test checks cleanup: no task left, no stream left open on either side.
"""

from __future__ import annotations

import asyncio
import hashlib
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiostream import pipe, stream
from reactivex import operators as ops

import rxchannel as rx
from rxchannel import aio
from rxchannel import aiostream as rxpipe
from rxchannel import reactive as rxc
from rxchannel.hub import Hub, HubLimits
from rxchannel.operators import windowed
from rxchannel.runtime import Peer
from tests.support import Counter, eventually, make_file, serve_boom, serve_counter


@pytest.fixture
def peers(no_leaked_tasks: None, tcp_peers: tuple[Peer, Any, rx.Router]) -> tuple[Peer, Any, rx.Router]:
    """conftest's TCP peers, checked for leaked tasks once they are closed."""
    return tcp_peers


async def settle(client: Peer, server: Any) -> None:
    """Both sides have forgotten every stream (cancel and completion reached them)."""
    await eventually(
        lambda: not client.connection.open_streams and not any(p.connection.open_streams for p in server.peers),
        what="both sides forgetting their streams",
    )


@pytest.mark.parametrize("how", ["iterate", "await"])
async def test_fetch_pipeline_by_iterating_and_by_awaiting(peers: Any, how: str) -> None:
    client, server, router = peers
    serve_counter(router)
    xs = rxpipe.request_stream(client, "n", b"50", window=4) | pipe.map(lambda p: int(p.data))
    if how == "iterate":
        got = []
        async with xs.stream() as streamer:
            async for x in streamer:
                got.append(x)
        assert got == list(range(50))
    else:
        assert await xs == 49  # awaiting a stream gives its last item
    await settle(client, server)


@pytest.mark.parametrize("how", ["iterate", "await"])
async def test_window_is_never_exceeded_with_a_slow_consumer(peers: Any, how: str) -> None:
    client, server, router = peers
    source = serve_counter(router)
    ahead: list[int] = []
    seen = 0

    async def slow(p: rx.Payload) -> int:
        nonlocal seen
        seen += 1
        ahead.append(source.pulled - seen)
        await asyncio.sleep(0.002)
        return int(p.data)

    xs = rxpipe.request_stream(client, "n", b"60", window=3) | pipe.map(slow, task_limit=1)
    if how == "iterate":
        assert await stream.list(xs) == list(range(60))
    else:
        assert await xs == 59
    assert max(ahead) <= 3 + 1, f"the source ran {max(ahead)} items ahead of a window of 3"


async def test_take_and_break_cancel_the_remote_source(peers: Any) -> None:
    client, server, router = peers
    source = serve_counter(router)
    assert await stream.list(rxpipe.request_stream(client, "n", b"1000000", window=8) | pipe.take(5)) != []
    async with asyncio.timeout(5):
        await source.closed.wait()
    assert source.pulled <= 5 + 8 + 1
    source2 = Counter()
    router.stream("m")(source2)
    async for item in aio.request_stream(client, "m", b"1000000", window=4):
        if item.data == b"3":
            break
    async with asyncio.timeout(5):
        await source2.closed.wait()
    await settle(client, server)


async def test_task_cancellation_sends_cancel(peers: Any) -> None:
    client, server, router = peers
    source = serve_counter(router)
    started = asyncio.Event()

    async def consume() -> None:
        async for _ in aio.request_stream(client, "n", b"1000000", window=2):
            started.set()
            await asyncio.sleep(0.01)

    task = asyncio.ensure_future(consume())
    await started.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    async with asyncio.timeout(5):
        await source.closed.wait()
    await settle(client, server)


async def test_errors_cross_the_wire_into_the_pipeline(peers: Any) -> None:
    client, server, router = peers

    serve_boom(router, "disk failed")

    with pytest.raises(rx.RemoteError, match="disk failed"):
        await stream.list(rxpipe.request_stream(client, "boom"))
    await settle(client, server)


async def test_channel_and_push_pull_their_source_only_on_credit(peers: Any) -> None:
    client, server, router = peers

    @router.channel("double")
    async def double(request: rx.Request) -> AsyncIterator[bytes]:
        assert request.inbound is not None
        async for item in request.inbound:
            await asyncio.sleep(0.001)
            yield item.data * 2

    produced = 0

    async def numbers() -> AsyncIterator[bytes]:
        nonlocal produced
        for i in range(40):
            produced += 1
            yield str(i % 10).encode()

    got = await stream.list(rxpipe.request_channel(client, "double", numbers(), window=4) | pipe.map(lambda p: p.data))
    assert got[:3] == [b"00", b"11", b"22"] and len(got) == 40
    pushed = await stream.list(
        stream.iterate([b"a", b"b"]) | rxpipe.push(client, "double") | pipe.map(lambda p: p.data)
    )
    assert pushed == [b"aa", b"bb"]
    await settle(client, server)


async def test_an_aiostream_stream_handed_to_channel_is_iterated_in_its_context(peers: Any) -> None:
    """aiostream warns "Streamer is iterated outside of its context" when a Stream is iterated
    bare (issue 32, item 7): ``rxpipe.request_channel`` opens the source's context itself."""
    client, server, router = peers

    @router.channel("upper")
    async def upper(request: rx.Request) -> AsyncIterator[bytes]:
        assert request.inbound is not None
        async for item in request.inbound:
            yield item.data.upper()

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the warning would fail the channel's source
        words = stream.iterate([b"a", b"b", b"c"]) | pipe.map(lambda word: word * 2)
        got = await stream.list(rxpipe.request_channel(client, "upper", words, window=2) | pipe.map(lambda p: p.data))
    assert got == [b"AA", b"BB", b"CC"]
    await settle(client, server)


async def test_slow_consumer_paces_a_remote_file_source(tmp_path: Path, no_leaked_tasks: None) -> None:
    chunk, window = 8 * 1024, 3
    root = tmp_path / "root"
    data = make_file(root / "f.bin", 80 * chunk, seed=8)
    hub = Hub(root, limits=HubLimits(chunk_size=chunk))
    server = await rx.serve_tcp(hub.router)
    client = await rx.connect_tcp("127.0.0.1", server.port)
    consumed = 0
    worst = 0

    async def slow_hash(p: rx.Payload) -> bytes:
        nonlocal consumed, worst
        consumed += 1
        for source in hub.sources:
            worst = max(worst, -(-source.read_offset // chunk) - consumed)
        await asyncio.sleep(0.002)
        return p.data

    out = tmp_path / "out.bin"
    total = await (
        rxpipe.request_stream(client, "files/f.bin", window=window)
        | pipe.map(slow_hash, task_limit=1)
        | rxpipe.to_file(out)
    )
    assert total == len(data) and out.read_bytes() == data
    assert worst <= window + 1, f"the hub read {worst} chunks ahead of consumption"
    await client.close()
    await server.close()


async def test_round_trip_rx_to_aiostream_to_rx_keeps_the_bound(peers: Any) -> None:
    client, server, router = peers
    source = serve_counter(router)
    window = 4
    observable = rxc.request_stream(client, "n", b"100").pipe(windowed(window))
    through_aiostream = stream.iterate(rxc.to_async_iterable(observable)) | pipe.map(lambda p: int(p.data))
    back_to_rx = rxc.from_async_iterable(through_aiostream).pipe(windowed(2))
    got: list[int] = []
    ahead: list[int] = []
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_next(x: int) -> None:
        got.append(x)
        ahead.append(source.pulled - len(got))

    back_to_rx.pipe(ops.map(lambda x: x)).subscribe(on_next=on_next, on_completed=lambda: done.set_result(None))
    async with asyncio.timeout(10):
        await done
    assert got == list(range(100))
    # the remote window, plus the two local stages' items in hand: never unbounded
    assert max(ahead) <= window + 2 + 2, max(ahead)
    await settle(client, server)


async def test_auto_window_and_read_ahead_operator(peers: Any) -> None:
    client, server, router = peers
    serve_counter(router)
    xs = (
        rxpipe.request_stream(client, "n", b"300", window="auto")
        | rxpipe.read_ahead(8)
        | pipe.map(lambda p: int(p.data))
    )
    assert await stream.list(xs) == list(range(300))
    with pytest.raises(ValueError):
        await stream.list(rxpipe.request_stream(client, "n", b"1") | rxpipe.read_ahead(0))
    digest = hashlib.sha256()
    async for item in aio.request_stream(client, "n", b"10", window="auto"):
        digest.update(item.data)
    await settle(client, server)
