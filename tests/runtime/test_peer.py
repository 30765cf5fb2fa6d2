"""The asyncio runtime over real transports (in-memory pairs and TCP loopback).

Every test is checked for leaked tasks; the peers ``connect_peers`` opens are closed by it when the test ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

import rxchannel as rx
from rxchannel.core import ConnectionConfig, Role
from rxchannel.runtime import Peer
from rxchannel.transports import memory_pair
from tests.support import ConnectPeers, GuardedSource, eventually, open_peers

pytestmark = pytest.mark.usefixtures("no_leaked_tasks")


class Source:
    """A demand-aware source that records how far it was pulled and whether it was closed."""

    def __init__(self, count: int, size: int = 8):
        self.count, self.size = count, size
        self.pulled = 0
        self.closed = asyncio.Event()

    async def __call__(self, request: rx.Request) -> AsyncIterator[bytes]:
        try:
            for i in range(self.count):
                self.pulled += 1
                yield i.to_bytes(4, "big") * (self.size // 4)
        finally:
            self.closed.set()


async def serve_stream(connect_peers: ConnectPeers, route: str, source: Source | GuardedSource) -> tuple[Peer, Peer]:
    """A client and a server whose stream handler for ``route`` is ``source``."""
    router = rx.Router()
    router.stream(route)(source)
    return await connect_peers(router)


async def test_request_response_fire_and_forget_and_metadata_push(connect_peers: ConnectPeers) -> None:
    router = rx.Router()
    fired: asyncio.Queue[bytes] = asyncio.Queue()
    pushed: asyncio.Queue[bytes] = asyncio.Queue()
    router.on_metadata_push = pushed.put_nowait

    @router.response("echo")
    async def echo(req: rx.Request) -> rx.Payload:
        return rx.Payload(req.data[::-1], metadata=b"m:" + (req.route or "").encode())

    @router.fire_and_forget("log")
    def log(req: rx.Request) -> None:
        fired.put_nowait(req.data)

    client, server = await connect_peers(router)
    reply = await client.request_response("echo", b"abc")
    assert reply == rx.Payload(b"cba", b"m:echo")
    await client.fire_and_forget("log", b"event")
    await client.metadata_push(b"hello")
    async with asyncio.timeout(5):
        assert await fired.get() == b"event"
        assert await pushed.get() == b"hello"


async def test_request_stream_with_window_never_pulls_ahead_of_demand(connect_peers: ConnectPeers) -> None:
    source = Source(200)
    client, server = await serve_stream(connect_peers, "numbers", source)
    window = 4
    got = []
    async for item in client.request_stream("numbers", window=window):
        got.append(int.from_bytes(item.data[:4], "big"))
        # the item just pulled is not consumed yet; everything before it is
        assert source.pulled <= (len(got) - 1) + window + 1, (source.pulled, len(got))
        await asyncio.sleep(0.001)  # a slow consumer
    assert got == list(range(200))
    async with asyncio.timeout(5):
        await source.closed.wait()
    assert client.connection.open_streams == 0


async def test_leaving_the_loop_cancels_and_closes_the_remote_source(connect_peers: ConnectPeers) -> None:
    source = Source(10**9)
    client, server = await serve_stream(connect_peers, "endless", source)
    async for item in client.request_stream("endless", window=8):
        if item.data[:4] == (20).to_bytes(4, "big"):
            break
    async with asyncio.timeout(5):
        await source.closed.wait()
    assert source.pulled <= 21 + 8 + 1
    await eventually(lambda: server.connection.open_streams == 0, what="the server forgetting the stream")
    assert client.connection.open_streams == 0


async def test_request_channel_both_ways(connect_peers: ConnectPeers) -> None:
    router = rx.Router()

    @router.channel("upper")
    async def upper(req: rx.Request) -> AsyncIterator[bytes]:
        assert req.inbound is not None
        yield b"hello " + req.data
        async for item in req.inbound:
            yield item.data.upper()

    client, server = await connect_peers(router)

    async def words() -> AsyncIterator[bytes]:
        for w in (b"a", b"bb", b"ccc"):
            yield w

    got = [p.data async for p in client.request_channel("upper", words(), b"there", window=2)]
    assert got == [b"hello there", b"A", b"BB", b"CCC"]


async def test_errors_cross_the_wire_without_leaking_local_detail(connect_peers: ConnectPeers) -> None:
    router = rx.Router()

    @router.response("refuse")
    def refuse(req: rx.Request) -> bytes:
        raise rx.ApplicationError("quota exceeded", code=0x301)

    @router.stream("crash")
    async def crash(req: rx.Request) -> AsyncIterator[bytes]:
        yield b"one"
        raise RuntimeError("/home/secret/path exploded")

    client, server = await connect_peers(router)
    with pytest.raises(rx.RemoteError) as info:
        await client.request_response("refuse")
    assert info.value.code == 0x301 and info.value.message == "quota exceeded"
    items = []
    with pytest.raises(rx.RemoteError) as info:
        async for item in client.request_stream("crash"):
            items.append(item.data)
    assert items == [b"one"]
    assert info.value.code == rx.ErrorCode.APPLICATION_ERROR
    assert "secret" not in str(info.value) and "RuntimeError" in str(info.value)
    with pytest.raises(rx.RemoteError) as info:
        await client.request_response("no/such/route")
    assert info.value.code == rx.ErrorCode.REJECTED and "no/such/route" in str(info.value)


async def test_server_can_request_from_client(connect_peers: ConnectPeers) -> None:
    client_router = rx.Router()

    @client_router.response("whoami")
    def whoami(req: rx.Request) -> bytes:
        return b"client"

    client, server = await connect_peers(rx.Router())
    client.router = client_router
    await eventually(lambda: server.setup is not None, what="the client's SETUP")
    assert (await server.request_response("whoami")).data == b"client"


async def test_payloads_larger_than_the_frame_limit_arrive_intact(connect_peers: ConnectPeers) -> None:
    router = rx.Router()
    blob = bytes(range(256)) * 4000  # ~1 MB

    @router.response("blob")
    def give(req: rx.Request) -> bytes:
        assert req.data == blob[::-1]
        return blob

    client, server = await connect_peers(router, ConnectionConfig(max_frame_size=16 * 1024))
    assert (await client.request_response("blob", blob[::-1])).data == blob


async def test_transport_death_fails_every_open_stream_and_closes_sources() -> None:
    router = rx.Router()
    source = Source(10**9)
    router.stream("endless")(source)
    client, server = await open_peers("memory", router)
    stream = client.request_stream("endless", window=4)
    first = await stream.next()
    assert first.data
    client.transport.abort()
    with pytest.raises(rx.ConnectionLostError):
        async with asyncio.timeout(5):
            while True:
                await stream.next()
    async with asyncio.timeout(5):
        await source.closed.wait()
        assert isinstance(await server.wait_closed(), rx.ConnectionLostError)
    await client.close()
    await server.close()


async def test_a_silent_peer_is_detected_by_the_keepalive_deadline() -> None:
    a, b = memory_pair()
    config = ConnectionConfig(keepalive_interval=0.05, max_lifetime=0.3)
    client = Peer(a, Role.CLIENT, config=config)
    stream = client.request_stream("anything", window=2)
    # b is a transport nobody answers on: frames go in, nothing comes back
    with pytest.raises(rx.ConnectionLostError, match="keepalive"):
        async with asyncio.timeout(5):
            await stream.next()
    assert isinstance(client.error, rx.ConnectionLostError)
    await client.close()
    await b.close()


async def test_local_close_fails_open_streams_with_closed_resource_error(connect_peers: ConnectPeers) -> None:
    client, server = await serve_stream(connect_peers, "endless", Source(10**9))
    stream = client.request_stream("endless", window=2)
    await stream.next()
    await client.close()
    with pytest.raises(rx.ClosedResourceError):
        while True:
            await stream.next()
    with pytest.raises(rx.ClosedResourceError):
        await client.request_response("x")
    await server.close()


async def test_manual_demand_with_request_n(connect_peers: ConnectPeers) -> None:
    source = GuardedSource(100)
    client, server = await serve_stream(connect_peers, "numbers", source)
    stream = client.request_stream("numbers", window=rx.Manual(3))
    got = [await stream.next() for _ in range(3)]
    assert client.connection.demand(stream.stream_id).granted_total == 3  # type: ignore[union-attr]
    stream.request(2)
    got += [await stream.next() for _ in range(2)]
    assert [int.from_bytes(p.data[:4], "big") for p in got] == [0, 1, 2, 3, 4]
    await stream.aclose()
    async with asyncio.timeout(5):
        await source.closed.wait()
    # at every pull: never more than one item beyond what was granted (the producer holds one
    # to find the end without credit); and nothing was granted beyond the 3 + 2 asked for
    assert source.violations == [] and source.max_granted == 5 and source.pulled <= 6
    with pytest.raises(rx.LocalProtocolError):
        stream.request(0)


async def test_explicit_ack_lets_an_async_sink_drive_demand(connect_peers: ConnectPeers) -> None:
    source = GuardedSource(50)
    client, server = await serve_stream(connect_peers, "numbers", source)
    stream = client.request_stream("numbers", window=4, auto_ack=False)
    held = [await stream.next() for _ in range(4)]
    demand = client.connection.demand(stream.stream_id)
    assert demand is not None and demand.granted_total == 4, "pulling without acknowledging must not refill"
    stream.ack(4)
    rest = []
    async for item in stream:
        rest.append(item)
        stream.ack()  # the sink wrote it
    assert len(held) + len(rest) == 50 and source.violations == []
