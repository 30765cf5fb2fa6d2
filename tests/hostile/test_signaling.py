"""Hostile WebRTC signaling (issue 11, cases 7, 8, 13 and 17): what an offer may cost a hub.

Each attack comes from 127.0.0.2 (its own address, as a remote attacker's would be) against
a real hub serving real aiortc peer connections, while a legitimate worker on 127.0.0.1
fetches a file beside it over WebRTC; the fetch must still complete and verify, and the
bound the case is about must hold.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import rxchannel as rx
from rxchannel.core import with_secret
from rxchannel.hub import Hub
from rxchannel.transports import TransportOptions
from rxchannel.webrtc.ice import PeerAddressPolicy, SignalingLimits
from rxchannel.webrtc.offers import OfferRefusedError, RequestAuth, sign_request
from rxchannel.webrtc.options import WebRtcOptions
from rxchannel.webrtc.signaling import WebRtcListener
from tests.hostile.flood import aiortc_offer
from tests.support import eventually, fetch_and_compare, make_file

ATTACKER = "127.0.0.2"
SECRET = "hub-secret"


class Lab:
    """A WebRTC hub in this process, a legitimate worker, and an attacker's HTTP client."""

    def __init__(self, server: rx.Server, root: Path, tmp: Path, secret: str | None):
        self.server, self.root, self.tmp, self.secret = server, root, tmp, secret
        listener = server.listener
        assert isinstance(listener, WebRtcListener)
        self.listener = listener
        self.answerer = listener.answerer

    async def legit_fetch(self, name: str = "f.bin") -> None:
        """Fetch over WebRTC from 127.0.0.1 and check the file; raises if anything is off."""
        options = TransportOptions(secret=self.secret, webrtc=WebRtcOptions(via="webrtc"))
        peer = await rx.connect(self.server.url, options=options, config=with_secret(None, self.secret, server=False))
        await fetch_and_compare(peer, name, self.root, self.tmp)

    async def attack(self, requests: list[tuple[str, bytes, dict[str, str]]]) -> list[tuple[int, str]]:
        """Send (path, body, headers) requests at once from 127.0.0.2; returns (status, error) per request."""
        # 16 connections at once: under the listener's per-address cap (32), so every request
        # reaches the signaling checks tested here (the cap itself: tests/hostile/test_resources.py)
        connector = aiohttp.TCPConnector(local_addr=(ATTACKER, 0), limit=16)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one(path: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
                async with session.post(self.server.url + path, data=body, headers=headers) as response:
                    try:
                        error = (await response.json(content_type=None)).get("error", "")
                    except ValueError:
                        error = await response.text()
                    return response.status, str(error)

            return list(await asyncio.gather(*(one(*r) for r in requests)))


@pytest.fixture
async def make_lab(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Lab]]]:
    servers: list[rx.Server] = []

    async def make(*, secret: str | None = None, **limits: Any) -> Lab:
        root = tmp_path / "root"
        make_file(root / "f.bin", 2 * 1024 * 1024, seed=7)
        hub = Hub(root, inbox=tmp_path / "inbox")
        options = TransportOptions(secret=secret, webrtc=WebRtcOptions(signaling=SignalingLimits(**limits)))
        server = await rx.serve(
            hub.router, transport="webrtc", options=options, config=with_secret(None, secret, server=True)
        )
        servers.append(server)
        return Lab(server, root, tmp_path, secret)

    yield make
    for server in servers:
        await server.close()


def body(sdp: str) -> bytes:
    return json.dumps({"type": "offer", "sdp": sdp}).encode()


def with_candidates(sdp: str, candidates: list[str]) -> str:
    lines = [ln for ln in sdp.splitlines() if not ln.startswith("a=candidate:")]
    at = next(i for i, ln in enumerate(lines) if ln.startswith("a=ice-ufrag")) + 1
    return "\r\n".join(lines[:at] + candidates + lines[at:]) + "\r\n"


def candidate(n: int, address: str, port: int) -> str:
    return f"a=candidate:{n} 1 udp 2130706431 {address} {port} typ host"


# ------------------------------------------------------------------ 7. unauthenticated offers


async def test_case_07_unsigned_offers_create_no_peer_connection_when_the_hub_has_a_secret(
    make_lab: Callable[..., Awaitable[Lab]],
) -> None:
    lab = await make_lab(secret=SECRET, offer_rate=1000, offer_burst=1000)
    offer = body(await aiortc_offer())
    path = "/offer"
    forged = sign_request("not-the-secret", "POST", path, offer, time.time())
    requests = [(path, offer, {}) for _ in range(60)] + [(path, offer, {"Authorization": forged}) for _ in range(60)]
    answers, _ = await asyncio.gather(lab.attack(requests), lab.legit_fetch())
    assert {status for status, _ in answers} == {401}
    assert any("requires the shared secret" in error for _, error in answers)
    assert any("wrong shared secret" in error for _, error in answers)
    assert lab.answerer.created[ATTACKER] == 0, "no peer connection for an unauthenticated offer"
    assert lab.answerer.created["127.0.0.1"] >= 1  # the legitimate worker's signed offer was answered


def test_case_07_a_signed_request_cannot_be_replayed_or_used_late() -> None:
    auth = RequestAuth(SECRET, window=300)
    now = time.time()
    header = sign_request(SECRET, "POST", "/offer", b"x", now)
    auth.check(header, "POST", "/offer", b"x", now)
    for args, why in [
        ((header, "POST", "/offer", b"x", now), "already used"),
        ((sign_request(SECRET, "POST", "/offer", b"x", now - 1000), "POST", "/offer", b"x", now), "clock differs"),
        ((sign_request(SECRET, "POST", "/offer", b"x", now), "POST", "/offer", b"y", now), "wrong shared secret"),
        ((sign_request(SECRET, "GET", "/ice-servers", b"", now), "POST", "/offer", b"", now), "wrong shared secret"),
        (("Bearer hub-secret", "POST", "/offer", b"x", now), "malformed"),
    ]:
        with pytest.raises(OfferRefusedError, match=why) as info:
            auth.check(*args)
        assert info.value.status == 401


async def test_case_07_pending_peer_connections_are_capped_per_address_and_in_all(
    make_lab: Callable[..., Awaitable[Lab]],
) -> None:
    lab = await make_lab(max_pending=6, max_pending_per_address=3, offer_rate=1000, offer_burst=1000)
    offer = body(await aiortc_offer())
    answers, _ = await asyncio.gather(lab.attack([("/offer", offer, {})] * 40), lab.legit_fetch())
    statuses = [status for status, _ in answers]
    assert statuses.count(200) == 3 and statuses.count(429) == 37
    assert all("--max-pending-offers" in error for status, error in answers if status == 429)
    assert lab.answerer.created[ATTACKER] == 3
    assert lab.answerer.peak_pending <= 6


async def test_case_07_offers_from_one_address_are_rate_limited(make_lab: Callable[..., Awaitable[Lab]]) -> None:
    lab = await make_lab(offer_rate=2, offer_burst=5, max_pending=1000, max_pending_per_address=1000)
    offer = body(await aiortc_offer())
    start = asyncio.get_running_loop().time()
    answers, _ = await asyncio.gather(lab.attack([("/offer", offer, {})] * 60), lab.legit_fetch())
    elapsed = asyncio.get_running_loop().time() - start
    accepted = lab.answerer.created[ATTACKER]
    assert 5 <= accepted <= 5 + 2 * elapsed + 1  # the burst, then the sustained rate over the attack's duration
    refused = [error for status, error in answers if status == 429]
    assert len(refused) == 60 - accepted and all("--offer-rate" in e for e in refused)


async def test_case_07_no_connectivity_check_is_sent_to_a_denied_address(
    make_lab: Callable[..., Awaitable[Lab]],
) -> None:
    # 127.0.0.3 is denied (loopback other than the hub's own); 127.0.0.4 is allowed, as the control
    lab = await make_lab(peers=PeerAddressPolicy.build(allowed=["127.0.0.4"]), offer_rate=1000, offer_burst=1000)
    denied, control = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))
    denied.bind(("127.0.0.3", 0))
    control.bind(("127.0.0.4", 0))
    for sock in (denied, control):
        sock.setblocking(False)
    got = {"denied": 0, "control": 0}

    def count(name: str, sock: socket.socket) -> Callable[[], None]:
        def read() -> None:
            while True:
                try:
                    sock.recv(2048)
                except BlockingIOError:
                    return
                got[name] += 1

        return read

    loop = asyncio.get_running_loop()
    loop.add_reader(denied, count("denied", denied))
    loop.add_reader(control, count("control", control))
    try:
        sdp = with_candidates(
            await aiortc_offer(),
            [candidate(1, "127.0.0.3", denied.getsockname()[1]), candidate(2, "127.0.0.4", control.getsockname()[1])],
        )
        answers, _ = await asyncio.gather(lab.attack([("/offer", body(sdp), {})]), lab.legit_fetch())
        assert answers[0][0] == 200
        # the control gets its check and a retransmission: by then any check to the denied address would be out
        await eventually(lambda: got["control"] >= 2, what="connectivity checks to the allowed address")
        assert got["denied"] == 0
    finally:
        loop.remove_reader(denied)
        loop.remove_reader(control)
        denied.close()
        control.close()


async def test_an_offer_whose_offerer_left_before_its_answer_keeps_nothing(
    make_lab: Callable[..., Awaitable[Lab]],
) -> None:
    """Issue 26: the offerer posts its offer and hangs up before the answer: the peer connection
    made for it is closed at once, not kept until its deadline."""
    lab = await make_lab(offer_rate=1000, offer_burst=1000)
    offer = body(await aiortc_offer())
    host, port = lab.server.url.removeprefix("http://").rsplit(":", 1)
    _, writer = await asyncio.open_connection(host, int(port), local_addr=(ATTACKER, 0))
    head = f"POST /offer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(offer)}\r\n"
    writer.write(head.encode() + b"\r\n" + offer)
    await writer.drain()
    writer.close()  # gone before the answer
    await eventually(lambda: lab.answerer.created[ATTACKER] == 1, what="the offer answered")
    await eventually(lambda: not lab.answerer.pending, what="its peer connection released")
    assert lab.answerer.admission.evicted["offerer gone"] == 1
    await lab.legit_fetch()


# ------------------------------------------------------------------ 8. one large offer


async def test_case_08_large_offers_are_refused_before_parsing(make_lab: Callable[..., Awaitable[Lab]]) -> None:
    lab = await make_lab(offer_rate=1000, offer_burst=1000)
    sdp = await aiortc_offer()
    huge = with_candidates(sdp, [candidate(n, f"10.{n // 250 % 250}.{n % 250}.1", 9) for n in range(10_000)])
    many = with_candidates(sdp, [candidate(n, f"10.0.{n}.1", 9) for n in range(65)])
    assert len(huge) > 500_000  # the issue sent 879 KiB; anything past the limit is refused unread
    answers, _ = await asyncio.gather(
        lab.attack([("/offer", body(huge), {})] * 3 + [("/offer", body(many), {})]), lab.legit_fetch()
    )
    assert [status for status, _ in answers] == [413, 413, 413, 413]
    assert all("--max-offer-bytes" in error for _, error in answers[:3])
    assert "65 ICE candidates" in answers[3][1] and "--max-candidates" in answers[3][1]
    assert lab.answerer.created[ATTACKER] == 0


def _replace_line(sdp: str, prefix: str, new: str) -> str:
    return re.sub(rf"^{re.escape(prefix)}.*$", new, sdp, count=1, flags=re.MULTILINE)


@pytest.mark.parametrize(
    ("case", "why"),
    [
        ("not JSON", "not JSON"),
        ("nested JSON", "not JSON"),
        ("a JSON list", "expected a JSON object"),
        ("no sdp", "expected a JSON object"),
        ("no m-line", "no DataChannel section"),
        ("malformed candidate", "malformed ICE candidate"),
        ("candidate with a bad port", "malformed ICE candidate (port)"),
        ("not SDP", "must start with v=0"),
        ("no ICE credentials", "no a=ice-pwd"),
        ("no fingerprint", "no a=fingerprint"),
        ("a fingerprint aiortc cannot parse", "not usable"),
    ],
)
async def test_case_08_and_13_malformed_offers_get_400_never_500(
    make_lab: Callable[..., Awaitable[Lab]], case: str, why: str
) -> None:
    lab = await make_lab(offer_rate=1000, offer_burst=1000)
    sdp = await aiortc_offer()
    bodies = {
        "not JSON": b"{offer",
        "nested JSON": b"[" * 20_000 + b"]" * 20_000,
        "a JSON list": b"[1, 2]",
        "no sdp": b'{"type": "offer"}',
        "no m-line": body("\r\n".join(ln for ln in sdp.splitlines() if not ln.startswith("m=")) + "\r\n"),
        "malformed candidate": body(with_candidates(sdp, ["a=candidate:1 1 udp"])),
        "candidate with a bad port": body(with_candidates(sdp, [candidate(1, "10.0.0.1", 70000)])),
        "not SDP": body("hello"),
        "no ICE credentials": body("\r\n".join(ln for ln in sdp.splitlines() if "ice-pwd" not in ln) + "\r\n"),
        "no fingerprint": body("\r\n".join(ln for ln in sdp.splitlines() if "fingerprint" not in ln) + "\r\n"),
        "a fingerprint aiortc cannot parse": body(_replace_line(sdp, "a=fingerprint:", "a=fingerprint:sha-256")),
    }
    answers, _ = await asyncio.gather(lab.attack([("/offer", bodies[case], {})]), lab.legit_fetch())
    status, error = answers[0]
    assert status == 400 and why in error, (status, error)
    assert not lab.answerer.pending, "a refused offer leaves no peer connection behind"


# ------------------------------------------------------------------ 17. a tiny max-message-size


async def test_case_17_a_tiny_max_message_size_is_refused_and_leaves_no_channel(
    make_lab: Callable[..., Awaitable[Lab]],
) -> None:
    lab = await make_lab(offer_rate=1000, offer_burst=1000)
    sdp = _replace_line(await aiortc_offer(), "a=max-message-size:", "a=max-message-size:16")
    assert "a=max-message-size:16" in sdp
    answers, _ = await asyncio.gather(lab.attack([("/offer", body(sdp), {})]), lab.legit_fetch())
    assert answers[0][0] == 400 and "max-message-size:16 is below 1024" in answers[0][1]
    assert lab.answerer.created[ATTACKER] == 0 and not lab.answerer.pending
