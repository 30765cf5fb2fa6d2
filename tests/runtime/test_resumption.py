"""Session resumption in the runtime (issue 17): a transport killed mid-stream (and killed
twice in a row) and every open stream still completes with exactly the expected items;
a cut longer than the session timeout fails them with ConnectionLostError and frees
everything; rsocket-py (which does not resume) gets a plain connection.

Real transports: memory, TCP, WebSocket and real aiortc DataChannels, through a real
:class:`Server` (its session table hands each RESUME to its session).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

import rxchannel as rx
from rxchannel import reactive as rxc
from rxchannel.core import ConnectionConfig, Role, make_token
from rxchannel.operators import windowed
from rxchannel.runtime import Peer, Server, connect, serve
from rxchannel.transports import Transport, TransportOptions
from rxchannel.webrtc.options import WebRtcOptions
from tests.support import PEER_TRANSPORTS, TRANSPORTS, eventually

N = 200


def router() -> rx.Router:
    r = rx.Router()

    @r.stream("numbers")
    async def numbers(request: rx.Request) -> AsyncIterator[bytes]:
        for i in range(int(request.data)):
            await asyncio.sleep(0)
            yield str(i).encode()

    @r.channel("echo", window=4)
    async def echo(request: rx.Request) -> AsyncIterator[bytes]:
        assert request.inbound is not None
        async for item in request.inbound:
            yield b"echo:" + item.data

    return r


class Lab:
    """A resumable server and a resumable client over ``kind``; ``kill()`` breaks the transport."""

    def __init__(self, kind: str, *, session_timeout: float = 30.0):
        self.kind = kind
        self.server = Server(router(), ConnectionConfig(resumable=True, resume_session_timeout=session_timeout))
        self.dials = 0
        self.refuse_dials = False
        self.client: Peer

    async def redial(self) -> Transport:
        if self.refuse_dials:
            raise ConnectionError("the network is down")
        client_end, server_end = await TRANSPORTS[self.kind](None)
        self.dials += 1
        self.server.accept(server_end)
        return client_end

    async def open(self, *, session_timeout: float = 30.0) -> Peer:
        config = ConnectionConfig(
            resume_token=make_token(), resume_session_timeout=session_timeout, keepalive_interval=1.0, max_lifetime=5.0
        )
        self.client = Peer(await self.redial(), Role.CLIENT, config=config, redial=self.redial)
        await asyncio.wait_for(asyncio.shield(self.client.setup_confirmed), 20)
        return self.client

    def kill(self, side: str = "client") -> None:
        """Break the transport under the connection (as a dead link would)."""
        if side == "client":
            self.client.transport.abort()
        else:
            (peer,) = [p for p in self.server.peers if not p.connection.closed]
            peer.transport.abort()

    async def close(self) -> None:
        await self.client.close()
        await self.server.close()


@pytest.fixture(params=PEER_TRANSPORTS)
async def lab(request: pytest.FixtureRequest) -> AsyncIterator[Lab]:
    the_lab = Lab(request.param)
    yield the_lab
    await the_lab.close()


async def _cut_when(condition: Callable[[], bool], lab: Lab, side: str = "client", *, times: int = 1) -> None:
    await eventually(condition, timeout=30, what="progress before the cut")
    for _ in range(times):
        target = lab.client.reconnects + 1
        lab.kill(side)
        await eventually(lambda t=target: lab.client.reconnects >= t, timeout=30, what="the session resumed")


async def test_a_stream_and_a_channel_both_ways_survive_cuts(lab: Lab) -> None:
    client = await lab.open()
    got: list[int] = []
    echoed: list[bytes] = []

    async def read_stream() -> None:
        async for item in client.request_stream("numbers", str(N).encode(), window=4):
            got.append(int(item.data))
            await asyncio.sleep(0.001)

    async def outgoing() -> AsyncIterator[bytes]:
        for i in range(N):
            await asyncio.sleep(0.001)
            yield f"{i}".encode()

    async def read_channel() -> None:
        async for item in client.request_channel("echo", outgoing(), window=4):
            echoed.append(item.data)

    work = asyncio.gather(read_stream(), read_channel())
    await _cut_when(lambda: len(got) > N // 4 and len(echoed) > N // 4, lab, "client")
    await _cut_when(lambda: len(got) > N // 2, lab, "server", times=2)  # killed twice in a row
    await asyncio.wait_for(work, 60)
    assert got == list(range(N)), "every item once, in order"
    assert echoed == [f"echo:{i}".encode() for i in range(N)]
    assert client.reconnects == 3 and lab.dials == 4


async def test_an_rx_pipeline_with_windowed_survives_a_cut(lab: Lab) -> None:
    client = await lab.open()
    got: list[int] = []
    done = asyncio.get_running_loop().create_future()
    rxc.request_stream(client, "numbers", str(N).encode()).pipe(windowed(8)).subscribe(
        lambda p: got.append(int(p.data)), done.set_exception, lambda: done.set_result(None)
    )
    await _cut_when(lambda: len(got) > N // 3, lab)
    await asyncio.wait_for(done, 60)
    assert got == list(range(N))


async def test_a_cut_longer_than_the_session_timeout_fails_the_streams_and_frees_everything() -> None:
    lab = Lab("tcp", session_timeout=1.5)
    client = await lab.open(session_timeout=1.5)
    try:
        stream = client.request_stream("numbers", b"100000", window=2)
        assert int((await stream.next()).data) == 0
        lab.refuse_dials = True
        lab.kill()
        with pytest.raises(rx.ConnectionLostError, match=r"not resumed within 1\.5 s"):
            async for _ in stream:
                pass
        # the server kept the session for its timeout, then let it go (and its stream)
        await eventually(lambda: not lab.server.peers, timeout=10, what="the server freeing the session")
    finally:
        await lab.close()


async def test_a_resume_for_an_unknown_session_is_refused(tmp_path: Any) -> None:
    lab = Lab("tcp")
    await lab.open()
    try:
        victim = next(iter(lab.server.peers))
        thief_config = ConnectionConfig(resume_token=make_token())
        thief = Peer(await lab.redial(), Role.CLIENT, config=thief_config, redial=lab.redial)
        await asyncio.wait_for(asyncio.shield(thief.setup_confirmed), 10)
        thief.transport.abort()  # its session is its own: resuming it cannot reach the victim's
        await eventually(lambda: thief.reconnects == 1, timeout=20, what="the thief resuming its own session")
        assert not victim.connection.closed and victim.connection.resume_token != thief_config.resume_token
        await thief.close()
    finally:
        await lab.close()


async def _raw_first_frames(port: int, *frames: bytes) -> list[object]:
    """Send ``frames`` on a new TCP connection and decode what comes back until it closes."""
    from rxchannel.core import LengthPrefixDecoder, decode_frame, prefix

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"".join(prefix(f) + f for f in frames))
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return [decode_frame(f) for f in LengthPrefixDecoder(1 << 24).feed(data)]


async def test_a_resume_naming_no_session_gets_rejected_resume_on_stream_0() -> None:
    from rxchannel.core import ErrorCode, ErrorFrame, ResumeFrame, encode_frame

    server = await serve(router(), transport="tcp", config=ConnectionConfig(resumable=True))
    try:
        resume = ResumeFrame(token=make_token(), last_received_server_position=0, first_available_client_position=0)
        (answer,) = await _raw_first_frames(server.port, encode_frame(resume))
        assert isinstance(answer, ErrorFrame) and answer.stream_id == 0 and answer.code == ErrorCode.REJECTED_RESUME
        assert "no session with this token" in answer.message
    finally:
        await server.close()


async def test_a_setup_may_not_take_a_live_session_s_token() -> None:
    from rxchannel.core import ErrorCode, ErrorFrame, SetupFrame, encode_frame

    server = await serve(router(), transport="tcp", config=ConnectionConfig(resumable=True))
    try:
        client = await connect(server.url, resume_timeout=30)
        token = client.connection.resume_token
        assert token is not None
        setup = SetupFrame(
            keepalive_ms=10_000,
            lifetime_ms=30_000,
            metadata_mime="message/x.rsocket.composite-metadata.v0",
            data_mime="application/octet-stream",
            resume_token=token,
        )
        (answer,) = await _raw_first_frames(server.port, encode_frame(setup))
        assert isinstance(answer, ErrorFrame) and answer.code == ErrorCode.REJECTED_SETUP
        assert "belongs to a live session" in answer.message
        assert not client.connection.closed  # the live session is untouched
        await client.close()
    finally:
        await server.close()


@pytest.mark.parametrize("transport, via", [("tcp", None), ("webrtc", "webrtc"), ("webrtc", "direct")])
async def test_connect_resumes_over_a_real_hub_url(transport: str, via: str | None) -> None:
    """The whole path through serve() and connect(url, resume_timeout=...): TCP, and a WebRTC
    hub dialed over WebRTC (signaling included) and over its direct WebSocket."""
    options = TransportOptions(webrtc=WebRtcOptions(via=via)) if via else None
    server = await serve(router(), transport=transport, config=ConnectionConfig(resumable=True))
    client = await connect(server.url, resume_timeout=30, options=options)
    try:
        assert client.transport.path == ("webrtc-host" if via == "webrtc" else "direct")
        stream = client.request_stream("numbers", str(N).encode(), window=4)
        got = [int((await stream.next()).data) for _ in range(N // 2)]
        client.transport.abort()
        got += [int(item.data) async for item in stream]
        assert got == list(range(N)) and client.reconnects == 1
        assert client.transport.path == ("webrtc-host" if via == "webrtc" else "direct"), "resumed on the same path"
    finally:
        await client.close()
        await server.close()


async def test_a_server_that_does_not_resume_gets_a_plain_connection(caplog: pytest.LogCaptureFixture) -> None:
    server = await serve(router(), transport="tcp")  # not resumable
    try:
        with caplog.at_level(logging.WARNING, logger="rxchannel.server"):
            client = await connect(server.url, resume_timeout=30)
            again = await connect(server.url, resume_timeout=30)
        assert client.resumption is None and not client.connection.resumable
        assert [item.data async for item in client.request_stream("numbers", b"3")] == [b"0", b"1", b"2"]
        warnings = [r for r in caplog.records if "does not resume sessions" in r.getMessage()]
        assert len(warnings) == 1, "said once"
        await again.close()
        await client.close()
    finally:
        await server.close()


async def test_rsocket_py_as_the_server_gets_a_plain_connection() -> None:
    from rsocket.helpers import create_future
    from rsocket.payload import Payload as PyPayload
    from rsocket.request_handler import BaseRequestHandler
    from rsocket.rsocket_server import RSocketServer
    from rsocket.transports.tcp import TransportTCP

    class Handler(BaseRequestHandler):
        async def request_response(self, payload: PyPayload) -> Awaitable[PyPayload]:
            return create_future(PyPayload(b"pong:" + (payload.data or b"")))

    servers: list[Any] = []

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        servers.append(RSocketServer(TransportTCP(reader, writer), handler_factory=Handler))

    listener = await asyncio.start_server(session, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        client = await connect(f"tcp://127.0.0.1:{port}", resume_timeout=30)
        reply = await asyncio.wait_for(client.request_response(None, b"ping"), 10)
        assert reply.data == b"pong:ping" and client.resumption is None
        await client.close()
    finally:
        for server in servers:
            await server.close()
        listener.close()
