"""Hostile input against a live peer: the spec's answer, a peer that stays up, bounded memory.

Over real TCP, named cases check the exact response (stream ERROR, connection ERROR and
close, or silence); over in-memory transports Hypothesis throws random and mutated frame
sequences at a serving peer. ``make soak`` runs more examples.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rxchannel as rx
from rxchannel.core import ConnectionConfig, ErrorCode, Role, decode_frame, encode_frame, prefix, request_metadata
from rxchannel.core._frames import (
    ErrorFrame,
    FrameType,
    PayloadFrame,
    RequestFrame,
    RequestNFrame,
    SetupFrame,
)
from rxchannel.runtime import Peer
from rxchannel.transports import memory_pair
from tests.support import eventually
from tests.support import frames as random_frames

EXAMPLES = int(os.environ.get("RXCHANNEL_FUZZ_EXAMPLES", "3000")) // 10 or 1
SETUP = encode_frame(SetupFrame(keepalive_ms=60_000, lifetime_ms=60_000, metadata_mime="x", data_mime="y"))
ROUTE = request_metadata("echo")
CONFIG = ConnectionConfig(max_frame_size=4096, max_payload_size=64 * 1024, max_streams=8)


def make_router() -> rx.Router:
    router = rx.Router()
    router.response("echo")(lambda request: request.data)

    @router.channel("echo")
    async def channel(request: rx.Request) -> AsyncIterator[bytes]:
        assert request.inbound is not None
        async for item in request.inbound:
            await asyncio.sleep(1)  # a slow consumer: its window stays full
            yield item.data

    return router


def raw(*frames: Any) -> bytes:
    out = b""
    for frame in frames:
        data = frame if isinstance(frame, bytes) else encode_frame(frame)
        out += prefix(data) + data
    return out


def read_frames(sock: socket.socket, timeout: float = 0.5) -> tuple[list[Any], bool]:
    """Frames the server sent back within ``timeout``, and whether it closed the connection."""
    sock.settimeout(timeout)
    buf = b""
    closed = False
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                closed = True
                break
            buf += chunk
    except TimeoutError:
        pass
    except ConnectionResetError:
        closed = True
    out = []
    while len(buf) >= 3:
        length = int.from_bytes(buf[:3], "big")
        out.append(decode_frame(buf[3 : 3 + length]))
        buf = buf[3 + length :]
    return out, closed


def errors(frames: list[Any]) -> list[tuple[int, int]]:
    return [(f.stream_id, f.code) for f in frames if isinstance(f, ErrorFrame)]


REQUEST_CHANNEL = RequestFrame(stream_id=1, type=FrameType.REQUEST_CHANNEL, metadata=ROUTE, data=b"", initial_n=1)
CASES: list[tuple[str, bytes, Any]] = [
    ("request before SETUP", raw(RequestNFrame(stream_id=1, n=1)), ("close", ErrorCode.INVALID_SETUP)),
    ("truncated header", raw(SETUP, b"\x00\x00\x00"), ("close", ErrorCode.CONNECTION_ERROR)),
    (
        "metadata length past the end",
        raw(SETUP, b"\x00\x00\x00\x01" + struct.pack(">H", 0x04 << 10 | 0x100) + b"\x00\x10\x00abc"),
        ("close", ErrorCode.CONNECTION_ERROR),
    ),
    (
        "unknown type without IGNORE",
        raw(SETUP, b"\x00\x00\x00\x00" + struct.pack(">H", 0x30 << 10)),
        ("close", ErrorCode.CONNECTION_ERROR),
    ),
    ("unknown type with IGNORE", raw(SETUP, b"\x00\x00\x00\x00" + struct.pack(">H", 0x30 << 10 | 0x200)), ("alive",)),
    ("SETUP twice", raw(SETUP, SETUP), ("alive",)),
    (
        "frames for unknown streams",
        raw(SETUP, PayloadFrame(stream_id=77, data=b"x"), RequestNFrame(stream_id=9, n=1)),
        ("alive",),
    ),
    (
        "request on stream 0",
        raw(SETUP, RequestFrame(stream_id=0, type=FrameType.REQUEST_RESPONSE)),
        ("close", ErrorCode.CONNECTION_ERROR),
    ),
    ("REQUEST_N of 0", raw(SETUP, REQUEST_CHANNEL, RequestNFrame(stream_id=1, n=0)), ("stream", 1, ErrorCode.INVALID)),
    (
        "REQUEST_N negative",
        raw(SETUP, REQUEST_CHANNEL, RequestNFrame(stream_id=1, n=0xFFFFFFFF)),
        ("stream", 1, ErrorCode.INVALID),
    ),
    (
        "PAYLOAD past credit",
        raw(SETUP, REQUEST_CHANNEL, *[PayloadFrame(stream_id=1, data=b"p") for _ in range(40)]),
        ("stream", 1, ErrorCode.INVALID),
    ),
    (
        "initial n of 0",
        raw(SETUP, RequestFrame(stream_id=1, type=FrameType.REQUEST_STREAM, metadata=ROUTE, initial_n=0)),
        ("stream", 1, ErrorCode.INVALID),
    ),
    (
        "fragments past the reassembly limit",
        raw(
            SETUP,
            RequestFrame(stream_id=1, type=FrameType.REQUEST_RESPONSE, metadata=ROUTE, data=b"f", follows=True),
            *[PayloadFrame(stream_id=1, data=b"z" * 4000, follows=True) for _ in range(20)],
        ),
        ("stream", 1, ErrorCode.REJECTED),
    ),
    (
        "too many streams",
        raw(
            SETUP,
            *[
                RequestFrame(stream_id=2 * i + 1, type=FrameType.REQUEST_CHANNEL, metadata=ROUTE, initial_n=1)
                for i in range(9)
            ],
        ),
        ("stream", 17, ErrorCode.REJECTED),
    ),
    ("length prefix past the frame limit", raw(SETUP) + b"\xff\xff\xff" + b"x" * 10, ("close", None)),
]


@pytest.mark.parametrize("case, data, expected", CASES, ids=[c[0] for c in CASES])
async def test_named_hostile_input_gets_the_spec_response_and_the_server_stays_up(
    case: str, data: bytes, expected: Any
) -> None:
    server = await rx.serve_tcp(make_router(), config=CONFIG)
    loop = asyncio.get_running_loop()
    problems: list[Any] = []
    loop.set_exception_handler(lambda _loop, context: problems.append(context))

    def attack() -> tuple[list[Any], bool]:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(data)
            return read_frames(sock)

    frames, closed = await asyncio.to_thread(attack)
    if expected[0] == "close":
        assert closed, f"{case}: the server kept the connection open"
        if expected[1] is not None:
            assert (0, expected[1]) in errors(frames), f"{case}: got {frames}"
    elif expected[0] == "stream":
        assert (expected[1], expected[2]) in errors(frames), f"{case}: got {frames}"
        assert not closed
    else:
        assert not closed and not any(sid == 0 for sid, _ in errors(frames)), f"{case}: got {frames}"

    # the server still serves everyone else
    async with await rx.connect_tcp("127.0.0.1", server.port) as client:
        assert (await client.request_response("echo", b"still here")).data == b"still here"
    await server.close()
    loop.set_exception_handler(None)
    assert not problems, f"{case}: unhandled errors in the server: {problems}"


async def test_reassembly_memory_is_bounded_and_dropped_with_the_connection() -> None:
    a, b = memory_pair()
    server = Peer(b, Role.SERVER, router=make_router(), config=CONFIG)
    a.write([SETUP])
    for sid in range(1, 2 * CONFIG.max_streams, 2):
        a.write([encode_frame(RequestFrame(stream_id=sid, type=FrameType.REQUEST_RESPONSE, data=b"", follows=True))])
        for _ in range(10):
            a.write([encode_frame(PayloadFrame(stream_id=sid, data=b"m" * 4000, follows=True))])
    await eventually(lambda: b.unread == 0, what="the server reading every frame")
    held = server.connection.reassembly_bytes
    assert held == CONFIG.max_streams * 10 * 4000 <= CONFIG.max_streams * CONFIG.max_payload_size
    a.abort()
    async with asyncio.timeout(5):
        await server.wait_closed()
    assert server.connection.reassembly_bytes == 0
    await server.close()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(random_frames, min_size=1, max_size=15))
def test_random_frame_sequences_never_crash_a_serving_peer(batch: list[bytes]) -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        problems: list[Any] = []
        loop.set_exception_handler(lambda _loop, context: problems.append(context))
        a, b = memory_pair()
        server = Peer(b, Role.SERVER, router=make_router(), config=CONFIG)
        a.write([SETUP])
        for frame in batch:
            try:
                a.write([frame])
            except (ValueError, rx.RxChannelError):
                break  # the server closed on us
        # every frame read by the server (or the connection ended): the read loop saw them all
        await eventually(lambda: b.unread == 0 or server.closed.done(), what="the server reading the batch")
        await asyncio.sleep(0)  # handlers started by the last frames get their first step
        await server.close()
        a.abort()
        reader = server._reader
        assert reader.done() and (reader.cancelled() or reader.exception() is None), "the read loop crashed"
        assert not problems, problems

    asyncio.run(run())
