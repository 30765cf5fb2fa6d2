"""Transport conformance: every transport passes the same suite (STYLE habit 13).

Ordering, empty messages, orderly close vs a broken peer, oversize messages, and
backpressure when the reader stalls. Later transports (WebSocket, DataChannel) join by
adding a factory to ``conftest.TRANSPORTS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from rxchannel.core import ClosedResourceError, ConnectionLostError
from rxchannel.transports import EndOfStream, Transport, TransportLimits
from tests.support import CLEANUPS, PairFactory


async def receive_n(t: Transport, n: int, timeout: float = 10.0) -> list[bytes]:
    out: list[bytes] = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            out += await t.receive()
    return out


async def close_both(a: Transport, b: Transport) -> None:
    await asyncio.gather(a.close(), b.close())


async def fill_until_stalled(t: Transport, chunk: bytes) -> int:
    """Write until the send queue stays over the high-water mark: the peer's buffers are full.

    Between rounds the operating system gets a moment to move what it can into its own
    socket buffers; once those are full too, nothing moves and the queue stays over the
    mark (a queue stuck between the low and high marks is filled again first).
    """
    written = 0
    while True:
        while t.writable:
            t.write([chunk])
            written += 1
            assert written < 2000, "the sender's queue never grew: no backpressure"
            await asyncio.sleep(0)
        try:
            async with asyncio.timeout(0.1):  # does the queue still drain into the OS?
                await t.drain()
        except TimeoutError:
            # stuck, but perhaps between the marks: the last messages the peer had room for
            # left the queue under the high-water mark; then write again until it is over
            if not t.writable:
                return written


async def test_messages_arrive_in_order_including_empty_ones(make_pair: PairFactory) -> None:
    a, b = await make_pair(None)
    messages = [bytes([i % 256]) * (i * 37 % 5000) for i in range(300)]
    assert b"" in messages
    a.write(messages[:100])
    for m in messages[100:]:
        a.write([m])
    assert await receive_n(b, len(messages)) == messages
    await close_both(a, b)


async def test_both_directions_at_once(make_pair: PairFactory) -> None:
    a, b = await make_pair(None)
    a.write([b"a%d" % i for i in range(100)])
    b.write([b"b%d" % i for i in range(100)])
    got_b, got_a = await asyncio.gather(receive_n(b, 100), receive_n(a, 100))
    assert got_b == [b"a%d" % i for i in range(100)] and got_a == [b"b%d" % i for i in range(100)]
    await close_both(a, b)


async def test_orderly_close_delivers_everything_then_end_of_stream(make_pair: PairFactory) -> None:
    a, b = await make_pair(None)
    a.write([b"x" * 1000] * 50)
    await a.close()
    got = await receive_n(b, 50)
    assert got == [b"x" * 1000] * 50
    with pytest.raises(EndOfStream):
        async with asyncio.timeout(5):
            await b.receive()
    await b.close()


async def test_broken_peer_is_a_connection_lost_error_not_a_hang(make_pair: PairFactory) -> None:
    a, b = await make_pair(None)
    a.write([b"before"])
    assert await receive_n(b, 1) == [b"before"]
    a.abort()
    # libwebrtc has no abort: dropping a peer connection resets its channels in order, and a
    # native receiver (whose connection state changes only seconds later) sees an orderly end;
    # the runtime treats either as the peer gone
    native = b.stack == "native"
    with pytest.raises((ConnectionLostError, EndOfStream) if native else ConnectionLostError):
        async with asyncio.timeout(5):
            await b.receive()
    with pytest.raises(ConnectionLostError):
        b.write([b"after"])
        async with asyncio.timeout(5):
            await b.drain()
            await b.receive()
    await b.close()


async def test_use_after_local_close_is_a_closed_resource_error(make_pair: PairFactory) -> None:
    a, b = await make_pair(None)
    await a.close()
    await a.close()  # idempotent
    with pytest.raises(ClosedResourceError):
        a.write([b"x"])
    with pytest.raises(ClosedResourceError):
        await a.receive()
    await b.close()


async def test_oversize_message_is_refused_before_sending(make_pair: PairFactory) -> None:
    a, b = await make_pair(None)
    with pytest.raises(ValueError, match="exceeds this transport's maximum"):
        a.write([b"x" * (a.max_message_size + 1)])
    a.write([b"still fine"])
    assert await receive_n(b, 1) == [b"still fine"]
    await close_both(a, b)


async def test_backpressure_when_the_reader_stalls(make_stallable_pair: PairFactory) -> None:
    limits = TransportLimits(high_water=256 * 1024)
    a, b = await make_stallable_pair(limits)
    chunk = b"z" * 65536
    written = await fill_until_stalled(a, chunk)
    assert a.buffered_amount >= limits.high_water
    drain = asyncio.ensure_future(a.drain())
    for _ in range(10):
        await asyncio.sleep(0)
    assert not drain.done(), "drain() returned while the reader was stalled"
    received = await receive_n(b, written)  # reading frees room
    async with asyncio.timeout(5):
        await drain
    assert received == [chunk] * written
    await close_both(a, b)


async def test_drain_fails_when_the_peer_breaks_while_clogged(make_stallable_pair: PairFactory) -> None:
    a, b = await make_stallable_pair(TransportLimits(high_water=128 * 1024))
    await fill_until_stalled(a, b"q" * 65536)
    drain = asyncio.ensure_future(a.drain())
    await asyncio.sleep(0)
    b.abort()
    with pytest.raises((ConnectionLostError, ClosedResourceError)):
        async with asyncio.timeout(5):
            await drain
    await a.close()


async def test_sender_queue_stays_under_high_water_when_writes_respect_drain(make_pair: PairFactory) -> None:
    """The contract the runtime relies on: write only while writable, else drain; the local
    queue then never exceeds high-water plus one message (for a DataChannel: aiortc's
    ``bufferedAmount`` stays bounded however fast the sender is)."""
    limits = TransportLimits(high_water=256 * 1024)
    a, b = await make_pair(limits)
    chunk = b"w" * 16384
    total = 400  # 6.25 MiB
    peak = 0

    async def reader() -> int:
        count = 0
        while count < total:
            count += len(await b.receive())
        return count

    reading = asyncio.ensure_future(reader())
    async with asyncio.timeout(30):
        for _ in range(total):
            if not a.writable:
                await a.drain()
            a.write([chunk])
            peak = max(peak, a.buffered_amount)
        assert await reading == total
    assert peak <= limits.high_water + len(chunk)
    await close_both(a, b)


@contextlib.asynccontextmanager
async def raw_tcp_client(**server_options: Any) -> AsyncIterator[tuple[socket.socket, Transport]]:
    """A plain socket connected to a TCP transport server (given ``server_options``), and the
    transport the server accepted for it. The socket is the caller's to close; the server
    stops on the way out."""
    from rxchannel.transports.tcp import TcpTransport, start_tcp_server

    accepted: asyncio.Future[TcpTransport] = asyncio.get_running_loop().create_future()
    server = await start_tcp_server(lambda t: accepted.set_result(t), "127.0.0.1", 0, **server_options)
    port = server.sockets[0].getsockname()[1]
    try:
        raw = socket.create_connection(("127.0.0.1", port))
        yield raw, await accepted
    finally:
        server.close()
        await server.wait_closed()


async def test_tcp_absurd_length_prefix_breaks_the_connection_with_a_clear_error() -> None:
    async with raw_tcp_client(max_message_size=1 << 20) as (raw, t):
        with raw:
            raw.sendall(b"\x20\x00\x00" + b"x" * 100)  # announces 2 MiB
            with pytest.raises(ConnectionLostError, match="invalid length prefix"):
                async with asyncio.timeout(5):
                    await t.receive()


async def test_tcp_peer_closing_mid_frame_is_a_connection_lost_error() -> None:
    async with raw_tcp_client() as (raw, t):
        with raw:
            raw.sendall(b"\x00\x00\x10abc")  # announces 16 bytes, sends 3, then closes
        with pytest.raises(ConnectionLostError, match="mid-frame"):
            async with asyncio.timeout(5):
                await t.receive()


async def test_datachannel_text_message_is_a_protocol_error() -> None:
    from rxchannel.core import RemoteProtocolError
    from rxchannel.webrtc.signaling import datachannel_pair

    a, b = await datachannel_pair()
    a.channel.send("not binary")
    with pytest.raises(RemoteProtocolError, match="binary only"):
        async with asyncio.timeout(5):
            await b.receive()
    await close_both(a, b)


async def test_datachannel_refuses_unordered_or_unreliable_channels() -> None:
    from rxchannel.webrtc.aiortc_stack import AiortcPeer
    from rxchannel.webrtc.channel import DataChannelTransport

    peer = AiortcPeer()
    try:
        for options in ({"ordered": False}, {"maxRetransmits": 0}, {"maxPacketLifeTime": 100}):
            channel = peer.pc.createDataChannel("x", **options)
            with pytest.raises(ValueError, match="ordered, reliable"):
                DataChannelTransport(channel, peer)
    finally:
        await peer.close()


async def test_websocket_text_message_is_a_protocol_error() -> None:
    import aiohttp

    from rxchannel.core import RemoteProtocolError
    from rxchannel.transports.websocket import listen_ws

    accepted: asyncio.Future[Transport] = asyncio.get_running_loop().create_future()
    listener = await listen_ws("127.0.0.1", 0, accepted.set_result)
    CLEANUPS.append(listener.close)
    async with aiohttp.ClientSession() as session, session.ws_connect(listener.url) as ws:
        server_side = await accepted
        await ws.send_str("not binary")
        with pytest.raises(RemoteProtocolError, match="binary only"):
            async with asyncio.timeout(5):
                await server_side.receive()
