"""A new DataChannel loses nothing the peer sends the moment it opens.

A browser announces its channel open as soon as the SCTP association is up and sends
SETUP at once, right behind the DATA_CHANNEL_OPEN message (RFC 8832 §6 allows data to
follow the OPEN without waiting for its ACK). The hub must be listening from the instant
aiortc hands it the channel: these tests make an aiortc client do exactly what the
browser does, fresh connection after fresh connection, with and without the hub's event
loop held up while the frames arrive.
"""

from __future__ import annotations

import asyncio
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiortc import RTCSessionDescription
from aiortc.rtcsctptransport import DataChunk
from google_crc32c import value as crc32c

import rxchannel as rx
from rxchannel.core import (
    ErrorFrame,
    FrameType,
    PayloadFrame,
    RequestFrame,
    SetupFrame,
    decode_frame,
    encode_frame,
    request_metadata,
)
from rxchannel.core._metadata import COMPOSITE_METADATA, OCTET_STREAM
from rxchannel.transports import TransportOptions
from rxchannel.webrtc.aiortc_stack import rtc_peer_connection as new_peer_connection
from rxchannel.webrtc.gathering import gathering
from rxchannel.webrtc.ice import SignalingLimits
from rxchannel.webrtc.offerer import LABEL
from rxchannel.webrtc.options import WebRtcOptions
from tests.support import interface_address

CONNECTIONS = 200


def opens_like_a_browser(pc: Any, channel: Any, on_open: Callable[[], None], before_open: Callable[[], None]) -> None:
    """Make aiortc's offering side behave like a browser's: the channel counts as open the
    moment the SCTP association is established, and what ``on_open`` sends then goes out
    *in the same SCTP packet* as DATA_CHANNEL_OPEN (usrsctp and dcsctp bundle chunks; aiortc
    sends one chunk per packet). The hub then reads the OPEN and the first frames in one go,
    with no chance to run anything in between."""
    sctp = pc.sctp
    set_state, send_chunk = sctp._set_state, sctp._send_chunk
    bundle: list[Any] = []
    first_messages = 3  # DATA_CHANNEL_OPEN, then what on_open sends (SETUP and a request)

    def set_state_then_open(state: Any) -> None:
        set_state(state)  # schedules the flush of DATA_CHANNEL_OPEN
        if state == sctp.State.ESTABLISHED and channel.readyState == "connecting":
            before_open()
            channel._setReadyState("open")

    async def send_bundled(chunk: Any) -> None:
        if not isinstance(chunk, DataChunk) or len(bundle) >= first_messages:
            await send_chunk(chunk)
            return
        bundle.append(chunk)
        if len(bundle) == first_messages:
            header = struct.pack("!HHL", sctp._local_port, sctp._remote_port, sctp._remote_verification_tag)
            body = b"".join(bytes(c) for c in bundle)
            checksum = struct.pack("<L", crc32c(header + b"\x00\x00\x00\x00" + body))
            await sctp.transport._send_data(header + checksum + body)

    sctp._set_state = set_state_then_open
    sctp._send_chunk = send_bundled
    channel.once("open", on_open)


async def setup_and_ask_at_open(
    url: str, session: aiohttp.ClientSession, hold_hub: Callable[[], None], host: str = "127.0.0.1"
) -> bytes:
    """One fresh connection: SETUP and a request-response sent in the tick the channel opens;
    returns the hub's answer (its PAYLOAD data)."""
    pc = new_peer_connection()
    received: asyncio.Queue[bytes] = asyncio.Queue()
    try:
        channel = pc.createDataChannel(LABEL, ordered=True)
        channel.on("message", received.put_nowait)  # attached before anything can arrive

        def send_at_once() -> None:
            setup = SetupFrame(
                keepalive_ms=10_000, lifetime_ms=30_000, metadata_mime=COMPOSITE_METADATA, data_mime=OCTET_STREAM
            )
            ask = RequestFrame(
                stream_id=1, type=FrameType.REQUEST_RESPONSE, metadata=request_metadata("echo"), data=b"ping"
            )
            channel.send(encode_frame(setup))
            channel.send(encode_frame(ask))

        opens_like_a_browser(pc, channel, send_at_once, hold_hub)
        with gathering([host], None):
            await pc.setLocalDescription(await pc.createOffer())
        offer = {"sdp": pc.localDescription.sdp, "type": "offer"}
        async with session.post(url + "/offer", json=offer) as response:
            assert response.status == 200, await response.text()
            answer = await response.json()
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
        async with asyncio.timeout(10):
            while True:
                frame = decode_frame(await received.get())
                if isinstance(frame, ErrorFrame):
                    raise AssertionError(f"the hub answered with an error: {frame.message}")
                if isinstance(frame, PayloadFrame) and frame.stream_id == 1:
                    return bytes(frame.data)
    finally:
        await pc.close()


class HubThread:
    """A WebRTC hub serving ``echo`` on an event loop of its own, in a thread, so that the
    test can hold the hub's loop while the client's loop goes on sending."""

    def __init__(self, stack: str = "aiortc", host: str = "127.0.0.1") -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="hub", daemon=True)
        self.thread.start()
        self.server: rx.Server = asyncio.run_coroutine_threadsafe(self._serve(stack, host), self.loop).result(10)

    @staticmethod
    async def _serve(stack: str, host: str) -> rx.Server:
        router = rx.Router()

        @router.response("echo")
        async def echo(request: rx.Request) -> bytes:
            return b"pong:" + request.data

        # one client dials 200 times in a row: lift the per-address offer rate, nothing else
        signaling = SignalingLimits(offer_rate=1000.0, offer_burst=1000)
        options = TransportOptions(webrtc=WebRtcOptions(signaling=signaling, stack=stack))
        return await rx.serve(router, transport="webrtc", host=host, options=options)

    def hold(self, seconds: float) -> None:
        """Block the hub's loop for ``seconds`` (a callback that sleeps), from any thread."""
        self.loop.call_soon_threadsafe(time.sleep, seconds)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("stack", ["aiortc", "native"])
@pytest.mark.parametrize("held", [False, True], ids=["prompt-hub", "held-hub"])
async def test_setup_and_a_request_sent_as_the_channel_opens_are_answered_every_time(held: bool, stack: str) -> None:
    """200 fresh connections in a row (50 to a native hub, whose gathering takes 0.1 s), each
    sending SETUP and a request in the same tick as its channel opens; with ``held``, the
    hub's loop is blocked (a callback that sleeps) from the moment the client's SCTP
    association is up, so the channel's OPEN and the first frames wait in the hub's queues
    and are read in one burst."""
    host = "127.0.0.1" if stack == "aiortc" else interface_address()  # libwebrtc never gathers on loopback
    hub = await asyncio.to_thread(HubThread, stack, host)
    try:
        async with aiohttp.ClientSession() as session:
            for attempt in range(CONNECTIONS if stack == "aiortc" else 50):
                hold = (lambda: hub.hold(0.05)) if held else (lambda: None)
                answer = await setup_and_ask_at_open(hub.server.url, session, hold, host)
                assert answer == b"pong:ping", f"connection {attempt}: {answer!r}"
    finally:
        await asyncio.to_thread(hub.close)
