"""The attacks of issue 26 from many source addresses, as a process of their own
(``tests/hostile/test_pressure.py`` and the soak's many-address mode run it beside a hub):

    python -m tests.hostile.flood KIND URL --block B [--addresses N] [--per-address K] [--secret S]

KIND: ``silent`` (TCP connections that send nothing), ``slowloris`` (a request line, then
a header line a second), ``upgrade`` (WebSocket upgrades that never send SETUP),
``setup`` (TCP connections that send SETUP, then only KEEPALIVEs), ``half`` (a WebSocket
upgrade, SETUP, then half of a 6 MiB message), ``offers`` (unsigned offers, and offers
signed with ``--secret`` that never connect), ``relay`` (offers and silent connections at
a rendezvous's ``/hubs/NAME``). Sources are 127.B.x.y. It prints ``ready`` once its first
wave is in, goes on (50 new connections a second, from the next addresses in turn) until
SIGTERM or ``--seconds``, then prints one JSON line: what it opened and what it was told.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from rxchannel.core import (
    Connection,
    FrameType,
    Interaction,
    KeepaliveFrame,
    PayloadFrame,
    RequestFrame,
    Role,
    SetupFrame,
    encode_frame,
    prefix,
    request_metadata,
)
from rxchannel.webrtc.offers import sign_request

SETUP = encode_frame(
    SetupFrame(
        keepalive_ms=10_000,
        lifetime_ms=60_000,
        metadata_mime="message/x.rsocket.composite-metadata.v0",
        data_mime="application/octet-stream",
    )
)
KEEPALIVE = encode_frame(KeepaliveFrame(respond=False, data=b""))
#: a KEEPALIVE that asks for a 256 KiB echo
ECHO_PING = encode_frame(KeepaliveFrame(respond=True, data=b"k" * (256 << 10)))


def framed(*frames: bytes) -> bytes:
    """``frames`` as a TCP connection carries them: each behind its 24-bit length."""
    return b"".join(prefix(f) + f for f in frames)


def requests(route: str, interaction: Interaction, count: int, **kw: Any) -> list[bytes]:
    """A client's SETUP and ``count`` well-formed ``interaction`` requests for ``route``."""
    conn = Connection(Role.CLIENT, now=0)
    for _ in range(count):
        conn.request(interaction, metadata=request_metadata(route), now=0, **kw)
    return conn.frames_to_send()


def unfinished_requests(first_sid: int, count: int, size: int) -> list[bytes]:
    """``count`` request-responses whose fragments never finish, ``size`` bytes held each."""
    frames = []
    for sid in range(first_sid, first_sid + 2 * count, 2):
        frames.append(encode_frame(RequestFrame(stream_id=sid, type=FrameType.REQUEST_RESPONSE, follows=True)))
        frames.append(encode_frame(PayloadFrame(stream_id=sid, data=b"f" * size, follows=True)))
    return frames


def addresses(block: int, count: int) -> list[str]:
    """``count`` source addresses in 127.<block>.0.0/16."""
    return [f"127.{block}.{i // 250}.{i % 250 + 1}" for i in range(count)]


def host_port(url: str) -> tuple[str, int]:
    netloc = url.split("://", 1)[1].split("/", 1)[0]
    host, port = netloc.rsplit(":", 1)
    return host, int(port)


async def open_from(source: str, url: str) -> socket.socket | None:
    """A TCP connection from ``source`` to the hub, as a plain non-blocking socket (None if refused)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        sock.bind((source, 0))
        await asyncio.get_running_loop().sock_connect(sock, host_port(url))
    except OSError:
        sock.close()
        return None
    return sock


class Crowd:
    """Sockets an attack holds open; ``ready`` is set once its first wave is in."""

    def __init__(self) -> None:
        self.socks: list[socket.socket] = []
        self.opened = 0
        self.closed_by_hub = 0
        self.statuses: Counter[int] = Counter()
        self.ready = asyncio.Event()

    def close(self) -> None:
        for sock in self.socks:
            sock.close()
        self.socks.clear()


async def flood(
    crowd: Crowd, sources: list[str], url: str, per_address: int, first: bytes = b"", then: bytes = b""
) -> None:
    """From every source, ``per_address`` connections that send ``first``; then, every second,
    each sends ``then`` (a header line of a slow-loris, a KEEPALIVE) if given, and 50 more
    arrive from the next sources in turn. Held until cancelled."""
    loop = asyncio.get_running_loop()

    async def one(source: str) -> None:
        for _ in range(per_address):
            sock = await open_from(source, url)
            if sock is None:
                continue
            crowd.socks.append(sock)
            crowd.opened += 1
            if first:
                with contextlib.suppress(OSError):
                    await loop.sock_sendall(sock, first)

    try:
        for batch in range(0, len(sources), 50):  # 50 addresses at a time: a burst, not a SYN storm
            await asyncio.gather(*(one(s) for s in sources[batch : batch + 50]))
        crowd.ready.set()
        turn = 0
        while True:
            await asyncio.sleep(1.0)
            if then:
                for sock in crowd.socks:
                    with contextlib.suppress(OSError):
                        sock.send(then)
            for sock in [s for s in crowd.socks if _closed(s)]:
                crowd.socks.remove(sock)
                crowd.closed_by_hub += 1
                sock.close()
            fresh = [sources[(turn + i) % len(sources)] for i in range(50)]
            turn += 50
            await asyncio.gather(*(one(s) for s in fresh))
    finally:
        crowd.close()


def _closed(sock: socket.socket) -> bool:
    """The hub closed it (what it said before, if anything, is read and dropped)."""
    try:
        while True:
            if not sock.recv(65536, socket.MSG_DONTWAIT):
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def upgrade(path: str = "/rsocket") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def ws_frame(payload: bytes, *, length: int | None = None) -> bytes:
    """A masked binary WebSocket frame (client to server) carrying ``payload``; ``length``
    announces more than is sent (a message half-sent)."""
    n = len(payload) if length is None else length
    head = bytes([0x82])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return head + b"\0\0\0\0" + payload  # a zero mask: the payload goes as is


async def aiortc_offer() -> str:
    from rxchannel.webrtc.aiortc_stack import rtc_peer_connection
    from rxchannel.webrtc.gathering import ice_host_addresses

    pc = rtc_peer_connection()
    pc.createDataChannel("x")
    with ice_host_addresses(["127.0.0.1"]):
        await pc.setLocalDescription(await pc.createOffer())
    sdp = str(pc.localDescription.sdp)
    await pc.close()
    return sdp


async def offers_from(sources: list[str], url: str, body: bytes, *, secret: str | None, each: int) -> list[int]:
    """``each`` offers from every source (signed with ``secret``, if given); their statuses."""

    async def one(source: str) -> list[int]:
        connector = aiohttp.TCPConnector(local_addr=(source, 0), force_close=True)
        statuses = []
        async with aiohttp.ClientSession(connector=connector) as session:
            for _ in range(each):
                now = time.time()
                path = urlsplit(url).path + "/offer"  # behind a rendezvous: /hubs/NAME/offer
                headers = {"Authorization": sign_request(secret, "POST", path, body, now)} if secret else {}
                try:
                    async with session.post(url + "/offer", data=body, headers=headers) as response:
                        await response.read()
                        statuses.append(response.status)
                except (aiohttp.ClientError, OSError):
                    statuses.append(0)
        return statuses

    per = await asyncio.gather(*(one(s) for s in sources))
    return [s for statuses in per for s in statuses]


async def attack(kind: str, url: str, sources: list[str], per_address: int, secret: str | None, crowd: Crowd) -> None:
    """Run attack ``kind`` until cancelled; ``crowd`` says what it did."""
    if kind == "silent":
        task = flood(crowd, sources, url, per_address)
    elif kind == "slowloris":
        task = flood(crowd, sources, url, per_address, b"POST /offer HTTP/1.1\r\nHost: x\r\n", b"X-a: b\r\n")
    elif kind == "upgrade":
        task = flood(crowd, sources, url, per_address, upgrade())
    elif kind == "setup":
        task = flood(crowd, sources, url, per_address, prefix(SETUP) + SETUP, prefix(KEEPALIVE) + KEEPALIVE)
    elif kind == "half":
        half = upgrade() + ws_frame(SETUP) + ws_frame(b"h" * (3 << 20), length=6 << 20)
        task = flood(crowd, sources, url, per_address, half)
    elif kind in ("offers", "relay"):
        task = offer_flood(crowd, kind, sources, url, per_address, secret)
    else:
        raise ValueError(f"no attack {kind!r}")
    await task


async def offer_flood(crowd: Crowd, kind: str, sources: list[str], url: str, each: int, secret: str | None) -> None:
    """Unsigned offers from the first half of ``sources``, offers signed with ``secret`` (that
    never connect) from the second half; for ``relay``, silent connections to the rendezvous
    as well. Round after round, ``each`` offers per address a round."""
    sdp = await aiortc_offer()
    body = json.dumps({"type": "offer", "sdp": sdp}).encode()
    half = len(sources) // 2
    silent = Crowd()
    holder = asyncio.ensure_future(flood(silent, sources[half:], url, 1)) if kind == "relay" else None
    try:
        first = True
        while True:
            for batch in range(0, half, 25):  # 25 addresses at a time, each half in turn
                rounds = [offers_from(sources[batch : batch + 25], url, body, secret=None, each=each)]
                signed = sources[half + batch : half + batch + 25]
                rounds.append(offers_from(signed, url, body, secret=secret, each=each))
                for statuses in await asyncio.gather(*rounds):
                    crowd.statuses.update(statuses)
                    crowd.opened += len(statuses)
            if first:
                crowd.ready.set()
                first = False
            await asyncio.sleep(1.0)
    finally:
        if holder is not None:
            holder.cancel()
            await asyncio.gather(holder, return_exceptions=True)
            crowd.opened += silent.opened
            crowd.closed_by_hub += silent.closed_by_hub


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.hostile.flood")
    parser.add_argument("kind")
    parser.add_argument("url")
    parser.add_argument("--block", type=int, required=True, help="sources are 127.BLOCK.x.y")
    parser.add_argument("--addresses", type=int, default=200)
    parser.add_argument("--per-address", type=int, default=2)
    parser.add_argument("--secret", default=None)
    parser.add_argument("--seconds", type=float, default=600.0)
    args = parser.parse_args(argv)

    crowd = Crowd()

    async def run() -> None:
        loop = asyncio.get_running_loop()
        sources = addresses(args.block, args.addresses)
        task = asyncio.ensure_future(attack(args.kind, args.url, sources, args.per_address, args.secret, crowd))
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        loop.call_later(args.seconds, task.cancel)

        async def say_ready() -> None:
            await crowd.ready.wait()
            print("ready", flush=True)

        announcer = asyncio.ensure_future(say_ready())
        with contextlib.suppress(asyncio.CancelledError):
            await task
        announcer.cancel()

    asyncio.run(run())
    summary: dict[str, Any] = {
        "kind": args.kind,
        "opened": crowd.opened,
        "closed_by_hub": crowd.closed_by_hub,
        "statuses": {str(k): v for k, v in sorted(crowd.statuses.items())},
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
