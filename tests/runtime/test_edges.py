"""Frames that do not fit, faults of our own, and a peer that never acknowledges (issue 26):
none of them may wedge a connection or leave it half alive.

A raw test peer writes frames into one end of a memory pair as another RSocket stack would
(some send frames larger than the message size they advertise); the other end is a real
:class:`~rxchannel.runtime.Peer`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

import rxchannel as rx
from rxchannel.core import (
    ConnectionConfig,
    ErrorFrame,
    FrameType,
    KeepaliveFrame,
    PayloadFrame,
    RequestNFrame,
    Role,
    decode_frame,
    encode_frame,
)
from rxchannel.runtime import Peer
from rxchannel.transports import MemoryTransport, memory_pair
from tests.support import request_to, setup_frame

SETUP = setup_frame()


class RawPeer:
    """The other end of a memory pair, speaking raw frames (bypassing the size check, as a
    stack that sends more than it advertises does)."""

    def __init__(self, transport: MemoryTransport):
        self.transport = transport
        self._pending: list[Any] = []

    def send(self, *frames: Any) -> None:
        self.transport._write([encode_frame(f) for f in frames])

    async def frames(self, until: Any, timeout: float = 5) -> list[Any]:
        """Frames received until ``until(frame)`` is true (that one included)."""
        got: list[Any] = []
        async with asyncio.timeout(timeout):
            while True:
                while self._pending:
                    frame = self._pending.pop(0)
                    got.append(frame)
                    if until(frame):
                        return got
                for raw in await self.transport.receive():
                    assert len(raw) <= self.transport.max_message_size, f"a {len(raw)}-byte message arrived"
                    self._pending.append(decode_frame(raw))


def _echo_router() -> rx.Router:
    router = rx.Router()

    @router.response("echo")
    async def echo(request: rx.Request) -> rx.Payload:
        return rx.Payload(request.data, None)

    @router.response("ping")
    async def ping(request: rx.Request) -> bytes:
        return b"pong"

    return router


async def test_frames_larger_than_the_peers_messages_are_answered_within_its_size_and_the_connection_goes_on() -> None:
    """A peer whose transport takes 64 KiB messages sends a 256 KiB KEEPALIVE(respond) and a
    1 MiB request: the echo is cut to fit, the 1 MiB answer is fragmented, and the next
    request is answered as usual."""
    ours, theirs = memory_pair(max_message_size=64 * 1024)
    hub = Peer(ours, Role.SERVER, router=_echo_router())
    raw = RawPeer(theirs)
    try:
        raw.send(SETUP, KeepaliveFrame(respond=True, data=b"k" * (256 * 1024)))
        (echo,) = await raw.frames(lambda f: isinstance(f, KeepaliveFrame))
        assert not echo.respond and 0 < len(echo.data) < 64 * 1024 and set(echo.data) == {ord("k")}
        big = bytes(range(256)) * 4096  # 1 MiB
        raw.send(request_to("echo", 1, FrameType.REQUEST_RESPONSE, data=big))
        parts = await raw.frames(lambda f: isinstance(f, (PayloadFrame, ErrorFrame)) and not getattr(f, "follows", 0))
        assert all(isinstance(p, PayloadFrame) for p in parts), parts[-1]
        assert b"".join(p.data for p in parts) == big and len(parts) >= 16
        raw.send(request_to("ping", 3, FrameType.REQUEST_RESPONSE))
        (pong,) = await raw.frames(lambda f: isinstance(f, PayloadFrame))
        assert pong.data == b"pong" and not hub.connection.closed
    finally:
        await hub.close()


async def test_an_error_whose_text_does_not_fit_is_cut_not_lost() -> None:
    ours, theirs = memory_pair(max_message_size=2048)
    router = rx.Router()

    @router.response("fail")
    async def fail(request: rx.Request) -> bytes:
        raise rx.ApplicationError("x" * 10_000)

    hub = Peer(ours, Role.SERVER, router=router)
    raw = RawPeer(theirs)
    try:
        raw.send(SETUP, request_to("fail", 1, FrameType.REQUEST_RESPONSE))
        (error,) = await raw.frames(lambda f: isinstance(f, ErrorFrame))
        assert error.message.startswith("xxx") and error.message.endswith("…") and len(error.message) < 2048
    finally:
        await hub.close()


@pytest.mark.parametrize("where", ["write", "receive"])
async def test_a_fault_of_our_own_ends_the_connection_visibly(where: str, caplog: pytest.LogCaptureFixture) -> None:
    """An exception from the transport (a bug, a refused frame) ends the connection with a log
    line naming it, ERROR[CONNECTION_ERROR] to the peer when it can still go, and every
    stream failing with the cause: never a connection that looks alive and reads nothing."""
    ours, theirs = memory_pair()
    hub = Peer(ours, Role.SERVER, router=_echo_router())
    client = Peer(theirs, Role.CLIENT)
    assert (await client.request_response("ping")).data == b"pong"
    if where == "write":
        original = ours._write

        def broken(frames: list[bytes]) -> None:
            if any(len(f) > 6 and f[4] >> 2 == FrameType.PAYLOAD for f in frames):
                raise RuntimeError("injected write fault")
            original(frames)

        ours._write = broken  # type: ignore[method-assign]
    else:

        async def broken_receive() -> list[bytes]:
            raise RuntimeError("injected read fault")

        ours.receive = broken_receive  # type: ignore[method-assign]
        ours._wake()  # the waiting read returns, and the next one fails
        theirs.write([encode_frame(KeepaliveFrame(respond=False))])
    with caplog.at_level(logging.ERROR, logger="rxchannel.peer"):
        if where == "write":
            with pytest.raises(rx.RxChannelError):
                await asyncio.wait_for(client.request_response("ping"), 5)
        error = await asyncio.wait_for(hub.wait_closed(), 5)
    fault = {"write": "injected write fault", "receive": "injected read fault"}[where]
    assert isinstance(error, rx.ConnectionLostError) and fault in str(error), error
    lines = [r.getMessage() for r in caplog.records if "ended: RuntimeError" in r.getMessage()]
    assert len(lines) == 1, caplog.records
    await client.close()
    await hub.close()


async def test_a_resumable_peer_that_never_acknowledges_gets_its_stream_without_resumption(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The peer resumes (SETUP with a token) but reports position 0 for ever: the store fills,
    stays full for resume_ack_timeout, then the session is no longer resumable (said once in
    the log) and the stream completes."""
    config = ConnectionConfig(resumable=True, resume_store_bytes=64 << 10, resume_ack_timeout=0.5)
    ours, theirs = memory_pair()
    router = rx.Router()
    items, size = 200, 4096

    @router.stream("many")
    async def many(request: rx.Request) -> Any:
        for i in range(items):
            yield i.to_bytes(4, "big") * (size // 4)

    hub = Peer(ours, Role.SERVER, router=router, config=config)
    raw = RawPeer(theirs)
    setup = setup_frame(resume_token=b"t" * 16)
    with caplog.at_level(logging.WARNING, logger="rxchannel.peer"):
        raw.send(
            setup,
            KeepaliveFrame(respond=False, position=0),
            request_to("many", 1, FrameType.REQUEST_STREAM, initial_n=10),
        )
        received = 0
        async with asyncio.timeout(20):
            while True:
                frames = await raw.frames(lambda f: True)
                (frame,) = frames
                if isinstance(frame, PayloadFrame) and frame.stream_id == 1:
                    received += 1 if frame.next else 0
                    if frame.complete:
                        break
                    raw.send(RequestNFrame(stream_id=1, n=1), KeepaliveFrame(respond=False, position=0))
                assert not isinstance(frame, ErrorFrame), frame
    assert received == items
    assert not hub.connection.resumable and not hub.connection.closed
    warnings = [r.getMessage() for r in caplog.records if "can no longer be resumed" in r.getMessage()]
    assert len(warnings) == 1, caplog.records
    await hub.close()


def test_registering_a_route_again_replaces_it_for_prefixes_as_for_exact_routes() -> None:
    from rxchannel.core import Interaction

    router = rx.Router()

    def first(request: rx.Request) -> bytes:
        return b"first"

    def second(request: rx.Request) -> bytes:
        return b"second"

    for route in ("files/", "files"):
        router.add(Interaction.RESPONSE, route, first)
        router.add(Interaction.RESPONSE, route, second)
        found = router.resolve(Interaction.RESPONSE, route + ("x" if route.endswith("/") else ""))
        assert found is not None and found[0] is second, route
    assert router.resolve(Interaction.STREAM, "files/x") is None  # another interaction is another route
