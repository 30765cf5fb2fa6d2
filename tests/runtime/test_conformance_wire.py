"""Protocol.md requirements seen on a real wire, for the rows of ``docs/conformance.md``.

The other end is a plain socket or a plain aiohttp WebSocket written here, not rxchannel,
so what is checked is the bytes rxchannel puts on the wire ("Framing Protocol Usage":
TCP frames carry a 24-bit length, WebSocket messages are bare frames) and what a
serving peer answers. A test marked ``xfail(strict=True)`` is a known nonconformance.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

import rxchannel as rx
from rxchannel.core import (
    FrameType,
    PayloadFrame,
    RequestNFrame,
    SetupFrame,
    decode_frame,
    encode_frame,
)
from tests.support import CLEANUPS, request_to, setup_frame

SETUP = encode_frame(setup_frame(keepalive_ms=60_000, lifetime_ms=60_000))
#: large enough that all three bytes of the length field are used
BIG = bytes(range(256)) * 300


def echo_router() -> rx.Router:
    router = rx.Router()
    router.response("echo")(lambda request: request.data)
    return router


def echo_request(stream_id: int) -> bytes:
    return encode_frame(request_to("echo", stream_id, FrameType.REQUEST_RESPONSE, data=BIG))


def prefixed(frame: bytes) -> bytes:
    return len(frame).to_bytes(3, "big") + frame


async def read_prefixed(reader: asyncio.StreamReader) -> bytes:
    length = int.from_bytes(await reader.readexactly(3), "big")
    return await reader.readexactly(length)


async def test_tcp_frames_carry_a_24_bit_big_endian_length_prefix_both_ways() -> None:
    """Framing Protocol Usage: over TCP the frame length (excluding itself) precedes every frame."""
    server = await rx.serve_tcp(echo_router())
    CLEANUPS.append(server.close)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    request = echo_request(1)
    writer.write(prefixed(SETUP) + prefixed(request))
    async with asyncio.timeout(10):
        head = await reader.readexactly(3)
        reply = await reader.readexactly(int.from_bytes(head, "big"))
    assert head == (6 + len(BIG)).to_bytes(3, "big") and head[0] > 0
    assert decode_frame(reply) == PayloadFrame(stream_id=1, data=BIG, complete=True)
    writer.close()
    await writer.wait_closed()

    # and what rxchannel's client writes first: its SETUP, behind its length
    accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
        asyncio.get_running_loop().create_future()
    )
    plain = await asyncio.start_server(lambda r, w: accepted.set_result((r, w)), "127.0.0.1", 0)
    client = await rx.connect_tcp("127.0.0.1", plain.sockets[0].getsockname()[1])
    peer_reader, peer_writer = await accepted
    async with asyncio.timeout(10):
        first = decode_frame(await read_prefixed(peer_reader))
    assert isinstance(first, SetupFrame) and first.stream_id == 0
    await client.close()
    peer_writer.close()
    await peer_writer.wait_closed()
    plain.close()
    await plain.wait_closed()


async def test_websocket_messages_are_bare_frames_without_a_length_prefix_both_ways() -> None:
    """Framing Protocol Usage: "The frame length field MUST be omitted if the transport protocol
    preserves message boundaries" (one frame per binary WebSocket message)."""
    server = await rx.serve(echo_router(), transport="ws")
    CLEANUPS.append(server.close)
    async with aiohttp.ClientSession() as session, session.ws_connect(server.url) as ws:
        await ws.send_bytes(SETUP)
        await ws.send_bytes(echo_request(1))
        async with asyncio.timeout(10):
            message = await ws.receive()
        assert message.type is aiohttp.WSMsgType.BINARY
        assert len(message.data) == 6 + len(BIG)
        assert decode_frame(message.data) == PayloadFrame(stream_id=1, data=BIG, complete=True)

    # and rxchannel's client: its first message is the bare SETUP frame
    first: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        message = await ws.receive()
        first.set_result(message.data)
        await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/rsocket", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    CLEANUPS.append(runner.cleanup)
    port = runner.addresses[0][1]
    client = await rx.connect(f"ws://127.0.0.1:{port}")
    async with asyncio.timeout(10):
        setup = decode_frame(await first)
    assert isinstance(setup, SetupFrame) and setup.stream_id == 0
    await client.close()


async def test_a_responder_answers_every_request_channel_with_request_n_even_one_already_complete() -> None:
    router = rx.Router()

    @router.channel("one")
    async def one(request: rx.Request) -> AsyncIterator[bytes]:
        yield b"reply"

    server = await rx.serve_tcp(router)
    CLEANUPS.append(server.close)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    channel = request_to("one", 1, FrameType.REQUEST_CHANNEL, initial_n=1, complete=True)
    writer.write(prefixed(SETUP) + prefixed(encode_frame(channel)))
    frames = []
    async with asyncio.timeout(10):
        while not (frames and isinstance(frames[-1], PayloadFrame) and frames[-1].complete):
            frames.append(decode_frame(await read_prefixed(reader)))
    writer.close()
    await writer.wait_closed()
    items = [f.data for f in frames if isinstance(f, PayloadFrame) and f.next]
    assert items == [b"reply"]  # the stream itself works
    assert any(isinstance(f, RequestNFrame) and f.stream_id == 1 for f in frames)
