"""The Observer half (issue 19): remote sinks and channels driven by the remote's demand,
with real peers over memory, TCP, WebSocket and real aiortc DataChannels."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from reactivex import operators as ops

import rxchannel as rx
from rxchannel import aio
from rxchannel import reactive as rxc
from rxchannel.files import FileSource, sha256_file
from rxchannel.hub import Hub
from rxchannel.operators import request_n
from tests.support import Collect, ConnectPeers, ErrorCatcher, eventually, make_file

CHUNK = 16 * 1024


def slow_consumer(window: int, checks: list[tuple[int, int, int]], source: FileSource) -> rx.Router:
    """A channel handler that reads the requester's chunks slowly, granting ``window`` at a time,
    and records (chunks read by the requester's source, chunks it consumed, chunks it granted)."""
    router = rx.Router()

    @router.channel("slow", window=window)
    async def slow(request: rx.Request) -> AsyncIterator[bytes]:
        assert request.inbound is not None
        consumed = 0
        async for _item in request.inbound:
            consumed += 1
            granted = request.peer.connection.stream(request.stream_id)  # type: ignore[attr-defined]
            demand = granted.demand.granted_total if granted is not None and granted.demand else consumed
            checks.append((-(-source.read_offset // CHUNK), consumed, demand))
            await asyncio.sleep(0.002)  # a slow remote consumer
        yield json.dumps({"chunks": consumed}).encode()

    return router


async def test_a_file_piped_into_a_remote_sink_is_read_at_the_remote_consumers_pace(
    connect_peers: ConnectPeers, tmp_path: Path
) -> None:
    make_file(tmp_path / "f.bin", 60 * CHUNK, seed=1)
    source = FileSource(tmp_path / "f.bin", chunk_size=CHUNK)
    checks: list[tuple[int, int, int]] = []
    client, _ = await connect_peers(slow_consumer(4, checks, source))
    sink = rxc.remote_sink(client, "slow")
    rxc.from_async_iterable(lambda: source).pipe(request_n(sink.demand)).subscribe(sink)
    (receipt,) = await asyncio.wait_for(sink.done, 30)
    assert json.loads(receipt.data) == {"chunks": 60} and len(checks) == 60
    # at every item the remote consumed: the local disk was read at most one chunk past its grants
    for read, consumed, granted in checks:
        assert read <= granted + 1, (read, consumed, granted)
        assert granted <= consumed + 4
    await asyncio.wait_for(source.closed.wait(), 5)  # the local file is closed once it was read through


async def test_the_hubs_push_route_as_a_remote_sink_verifies_end_to_end(
    connect_peers: ConnectPeers, tmp_path: Path
) -> None:
    (tmp_path / "root").mkdir()
    make_file(tmp_path / "up.bin", 40 * CHUNK + 123, seed=2)
    hub = Hub(tmp_path / "root", inbox=tmp_path / "inbox")
    client, _ = await connect_peers(hub.router)
    size = (tmp_path / "up.bin").stat().st_size
    sink = rxc.remote_sink(client, "push/up.bin", info={"size": size})
    rxc.file_source(tmp_path / "up.bin", chunk_size=CHUNK).pipe(request_n(sink.demand)).subscribe(sink)
    (receipt,) = await asyncio.wait_for(sink.done, 30)
    got = json.loads(receipt.data)
    assert got["size"] == size and got["sha256"] == sha256_file(tmp_path / "up.bin")
    assert sha256_file(tmp_path / "inbox" / "up.bin") == got["sha256"]


async def test_on_next_past_the_remote_grant_is_a_local_protocol_error_and_ends_the_stream(
    connect_peers: ConnectPeers,
) -> None:
    router = rx.Router()
    four = ErrorCatcher()
    router.channel("four", window=rx.Manual(4))(four)

    client, _ = await connect_peers(router)
    sink = rxc.remote_sink(client, "four")
    await eventually(lambda: sink.sink.credit == 4, what="the responder's grant of 4")
    for i in range(4):
        sink.on_next(b"%d" % i)
    with pytest.raises(rx.LocalProtocolError, match="no credit"):
        sink.on_next(b"5")  # nothing buffered: refused
    with pytest.raises(rx.LocalProtocolError):
        await asyncio.wait_for(sink.done, 10)
    error = await asyncio.wait_for(four.error, 10)
    assert isinstance(error, rx.RemoteError) and error.code == rx.ErrorCode.APPLICATION_ERROR


async def test_errors_and_cancel_cross_the_wire_both_ways(connect_peers: ConnectPeers, tmp_path: Path) -> None:
    router = rx.Router()
    remote_saw: asyncio.Queue[str] = asyncio.Queue()

    @router.channel("echo")
    async def echo(request: rx.Request) -> AsyncIterator[bytes]:
        assert request.inbound is not None
        try:
            async for item in request.inbound:
                if item.data == b"boom":
                    raise rx.ApplicationError("the remote failed on purpose")
                if item.data == b"stop":
                    await request.inbound.aclose()  # the remote cancels what we send
                    remote_saw.put_nowait("cancelled")
                    while True:
                        yield b"still here"
                        await asyncio.sleep(0.01)
                yield item.data
        except rx.RemoteError as exc:
            remote_saw.put_nowait(f"error: {exc.message}")

    client, _ = await connect_peers(router)
    # a local error reaches the remote as ERROR (only ApplicationError text crosses the wire)
    sink = rxc.remote_sink(client, "echo")
    await eventually(lambda: sink.sink.credit > 0, what="credit")
    sink.on_error(rx.ApplicationError("the local side failed on purpose"))
    assert await asyncio.wait_for(remote_saw.get(), 10) == "error: the local side failed on purpose"
    # dispose ends the stream with an error, never a COMPLETE the remote could take for success
    sink = rxc.remote_sink(client, "echo")
    await eventually(lambda: sink.sink.credit > 0, what="credit")
    sink.dispose()
    assert (await asyncio.wait_for(remote_saw.get(), 10)).startswith("error: the sender for 'echo' failed")
    # a remote error reaches the sink; its demand completes, which stops the pipeline feeding it
    sink = rxc.remote_sink(client, "echo")
    pulled = 0

    def numbers() -> Any:
        nonlocal pulled
        while True:
            pulled += 1
            yield b"boom" if pulled == 3 else b"x"

    rxc.from_iterable(numbers()).pipe(request_n(sink.demand)).subscribe(sink)
    with pytest.raises(rx.RemoteError, match="the remote failed on purpose"):
        await asyncio.wait_for(sink.done, 10)
    stopped_at = pulled
    await asyncio.sleep(0)
    assert pulled == stopped_at <= 3 + 16 + 1
    # the remote cancelling its inbound ends the sink with StreamCancelledError
    sink = rxc.remote_sink(client, "echo")
    await eventually(lambda: sink.sink.credit > 0, what="credit")
    sink.on_next(b"stop")
    assert await asyncio.wait_for(remote_saw.get(), 10) == "cancelled"
    with pytest.raises(rx.StreamCancelledError):
        await asyncio.wait_for(sink.done, 10)


async def test_a_bidirectional_channel_holds_both_bounds_when_each_side_is_slow_in_turn(
    connect_peers: ConnectPeers,
) -> None:
    """Requester: a source that follows ``ch.demand``, and a consumer of ``ch.inbound``.
    Responder: a relay whose inbound demand is its outbound's demand (window=Manual(0) +
    request_n), so the requester's consumer paces the requester's own source across the wire."""
    total, window = 300, 4
    router = rx.Router()
    relay_slow = {"on": False}

    @router.channel("relay", window=rx.Manual(0))
    def relay(request: rx.Request) -> None:
        out = rxc.outbound(request)

        def forward(item: rx.Payload) -> rx.Payload:
            if relay_slow["on"]:
                time.sleep(0.001)  # the responder is the slow side now
            return item

        rxc.inbound(request).pipe(request_n(out.demand), ops.map(forward)).subscribe(out)

    client, _ = await connect_peers(router)
    ch = rxc.channel(client, "relay", window=window)
    consumed = 0
    violations: list[tuple[int, int]] = []

    def source() -> Any:
        for i in range(total):
            # at every pull: never more than the requester's consumer took + its window + 1 held item
            # (+1 the relay's own held item)
            if i > consumed + window + 2:
                violations.append((i, consumed))
            if i == total // 2:
                relay_slow["on"] = True
            yield b"%d" % i

    got = Collect()

    def take(item: rx.Payload) -> None:
        nonlocal consumed
        consumed += 1
        if not relay_slow["on"]:
            time.sleep(0.001)  # the requester's consumer is the slow side first
        got.on_next(item)

    ch.inbound.subscribe(on_next=take, on_error=got.on_error, on_completed=got.on_completed)
    rxc.from_iterable(source()).pipe(request_n(ch.demand)).subscribe(ch)
    await asyncio.wait_for(got.done, 60)
    assert got.error is None and [p.data for p in got.items] == [b"%d" % i for i in range(total)]
    assert violations == [], violations[:5]


async def test_the_async_twin_sends_within_credit_and_returns_the_receipt(connect_peers: ConnectPeers) -> None:
    router = rx.Router()

    @router.channel("count", window=2)
    async def count(request: rx.Request) -> AsyncIterator[bytes]:
        assert request.inbound is not None
        digest = hashlib.sha256()
        async for item in request.inbound:
            digest.update(item.data)
        yield digest.hexdigest().encode()

    client, _ = await connect_peers(router)
    async with aio.remote_sink(client, "count") as sink:
        for i in range(50):
            await sink.send(b"%d," % i)  # waits for the responder's grant of 2 at a time
            assert sink.credit >= 0
    (receipt,) = await sink.replies.collect()  # type: ignore[union-attr]
    assert receipt.data == hashlib.sha256(b"".join(b"%d," % i for i in range(50))).hexdigest().encode()
    # leaving with an exception fails the stream: the responder never takes it for complete
    with pytest.raises(RuntimeError):
        async with aio.remote_sink(client, "count") as sink:
            await sink.send(b"partial")
            raise RuntimeError("the sender broke")
    with pytest.raises(rx.RxChannelError):
        await sink.done


async def test_a_responder_in_rx_serves_a_stream_by_following_the_requesters_demand(
    connect_peers: ConnectPeers,
) -> None:
    router = rx.Router()
    pulled = 0

    @router.stream("squares")
    def squares(request: rx.Request) -> None:
        out = rxc.outbound(request)

        def numbers() -> Any:
            nonlocal pulled
            for i in range(100):
                pulled += 1
                yield b"%d" % (i * i)

        rxc.from_iterable(numbers()).pipe(request_n(out.demand)).subscribe(out)

    client, _ = await connect_peers(router)
    stream = client.request_stream("squares", window=rx.Manual(5))
    got = [await stream.next() for _ in range(5)]
    assert [p.data for p in got] == [b"0", b"1", b"4", b"9", b"16"]
    stream.request(95)
    rest = [p.data async for p in stream]
    assert len(rest) == 95 and pulled == 100
    with pytest.raises(rx.LocalProtocolError):
        rxc.outbound(
            rx.Request(
                stream_id=1,
                interaction=rx.core.Interaction.RESPONSE,
                route=None,
                info={},
                data=b"",
                metadata=None,
                peer=client,
            )
        )


async def test_a_channels_replies_wait_for_its_inbound_however_late_it_is_subscribed(
    connect_peers: ConnectPeers,
) -> None:
    router = rx.Router()

    @router.channel("echo")
    async def echo(request: rx.Request) -> AsyncIterator[bytes]:
        assert request.inbound is not None
        async for item in request.inbound:
            yield item.data

    client, _ = await connect_peers(router)
    ch = rxc.channel(client, "echo", window=8)
    rxc.from_iterable([b"a", b"b", b"c", b"d"]).pipe(request_n(ch.demand)).subscribe(ch)
    replies = ch.sink.replies
    assert replies is not None
    # the replies arrive before anyone reads them, and stay there for inbound
    await eventually(lambda: replies.buffered == 4, what="the four replies waiting")
    got = Collect()
    ch.inbound.subscribe(got)
    await asyncio.wait_for(got.done, 10)
    assert [p.data for p in got.items] == [b"a", b"b", b"c", b"d"] and got.error is None
