"""A rendezvous on loopback: a hub registered by name, workers that dial ``/hubs/NAME``, and
what it refuses (a wrong secret, a name taken, floods, oversized bodies, a hub that never
answers) while a legitimate fetch goes on beside. Real aiohttp servers, real aiortc peers,
real files; the NAT case, where it matters, is in ``tests/network/``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

import rxchannel as rx
from rxchannel.files import fetch_file, sha256_file
from rxchannel.hub import Hub
from rxchannel.transports import TransportOptions, WrongTransportError
from rxchannel.webrtc.offers import sign_request
from rxchannel.webrtc.options import WebRtcOptions
from rxchannel.webrtc.rendezvous import (
    RendezvousLimits,
    RendezvousLink,
    RendezvousRefusedError,
    RendezvousServer,
    serve_rendezvous,
)
from rxchannel.webrtc.signaling import WebRtcListener
from tests.support import fetch_and_compare, make_file

SECRET = "rendezvous-secret"


@dataclass
class Meeting:
    rendezvous: RendezvousServer
    hub: Hub
    server: rx.Server
    link: RendezvousLink
    root: Path
    tmp: Path

    @property
    def url(self) -> str:
        return self.link.public_url

    async def fetch(self, name: str = "f.bin", *, via: str = "auto") -> rx.Peer:
        """Fetch ``name`` through the rendezvous and verify it; returns the (closed) peer."""
        options = TransportOptions(webrtc=WebRtcOptions(via=via))
        peer = await rx.connect(self.url, options=options)
        await fetch_and_compare(peer, name, self.root, self.tmp)
        return peer


@contextlib.asynccontextmanager
async def meeting(tmp_path: Path, limits: RendezvousLimits | None = None) -> AsyncIterator[Meeting]:
    root = tmp_path / "root"
    make_file(root / "f.bin", 600_000, seed=3)
    rendezvous = await serve_rendezvous(SECRET, limits=limits)
    hub = Hub(root, inbox=tmp_path / "inbox")
    server = await rx.serve(hub.router, transport="webrtc")
    listener = server.listener
    assert isinstance(listener, WebRtcListener)
    link = RendezvousLink(rendezvous.url, "lab", SECRET, local=listener.url, relay=listener.relay_token)
    await link.start()
    try:
        yield Meeting(rendezvous, hub, server, link, root, tmp_path)
    finally:
        await link.close()
        await server.close()
        hub.close()
        await rendezvous.listener.close()


async def test_a_worker_dials_the_hub_by_name_and_fetches_over_webrtc(tmp_path: Path) -> None:
    async with meeting(tmp_path) as met:
        assert met.url == f"{met.rendezvous.url}/hubs/lab" and "lab" in met.rendezvous.hubs
        peer = await met.fetch()  # --via auto: no direct path through a rendezvous, so WebRTC
        assert peer.transport.path == "webrtc-host"
        assert met.link.relayed >= 2, "the ICE servers and the offer went through the rendezvous"
        with pytest.raises(WrongTransportError, match="behind a rendezvous"):
            await rx.connect(met.url, options=TransportOptions(webrtc=WebRtcOptions(via="direct")))


async def test_only_hubs_that_know_the_secret_register_and_a_name_is_never_taken_over(tmp_path: Path) -> None:
    async with meeting(tmp_path) as met:
        wrong = RendezvousLink(met.rendezvous.url, "other", "not-it", local="http://127.0.0.1:9", relay="x")
        with pytest.raises(RendezvousRefusedError, match=r"401.*wrong shared secret") as refused:
            await wrong.start()
        assert refused.value.status == 401
        squatter = RendezvousLink(met.rendezvous.url, "lab", SECRET, local="http://127.0.0.1:9", relay="x")
        with pytest.raises(RendezvousRefusedError, match=r"409.*'lab' is taken by another hub"):
            await squatter.start()
        assert set(met.rendezvous.hubs) == {"lab"}
        await met.fetch()  # the rightful hub still serves


async def test_the_hub_re_registers_when_the_rendezvous_comes_back_and_transfers_survive_its_absence(
    tmp_path: Path,
) -> None:
    async with meeting(tmp_path) as met:
        make_file(met.root / "big.bin", 4_000_000, seed=4)
        peer = await rx.connect(met.url, options=TransportOptions(webrtc=WebRtcOptions(via="webrtc")))
        out = tmp_path / "big.bin"
        stopped = asyncio.Event()

        def progress(done: int, total: int | None, credits: int) -> None:
            if done > 500_000 and not stopped.is_set():
                stopped.set()

        fetching = asyncio.ensure_future(fetch_file(peer, "big.bin", out, window=4, progress=progress))
        await stopped.wait()
        port = met.rendezvous.listener.port
        await met.rendezvous.listener.close()  # gone mid-transfer: data never went through it
        result = await fetching
        assert result.sha256 == sha256_file(met.root / "big.bin")
        await peer.close()
        # gone at dial time: a clear error that names the rendezvous
        with pytest.raises(ConnectionRefusedError, match="is the rendezvous running at this address"):
            await rx.connect(met.url)
        # back on the same port: the hub registers again by itself
        met.rendezvous = await serve_rendezvous(SECRET, port=port)
        for _ in range(400):
            if "lab" in met.rendezvous.hubs:
                break
            await asyncio.sleep(0.05)
        assert "lab" in met.rendezvous.hubs and met.link.registrations == 2
        await met.fetch()


async def _attack_from(address: str, url: str, requests: int, body: bytes) -> list[int]:
    connector = aiohttp.TCPConnector(local_addr=(address, 0), force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> int:
            try:
                async with session.post(url, data=body) as response:
                    return response.status
            except aiohttp.ClientError:
                return 0

        return list(await asyncio.gather(*(one() for _ in range(requests))))


@pytest.mark.timeout(120)
async def test_a_flood_of_offers_from_many_addresses_is_bounded_and_a_legitimate_fetch_goes_on(tmp_path: Path) -> None:
    limits = RendezvousLimits(request_rate=2.0, request_burst=4, max_pending=32, max_pending_per_address=2)
    async with meeting(tmp_path, limits) as met:
        offer = json.dumps({"type": "offer", "sdp": "v=0\r\n"}).encode()
        target = f"{met.url}/offer"
        attack = asyncio.gather(*(_attack_from(f"127.0.1.{i}", target, 6, offer) for i in range(1, 201)))
        fetches = asyncio.gather(*(met.fetch() for _ in range(3)))
        statuses, _ = await asyncio.gather(attack, fetches)
        flat = [s for per in statuses for s in per]
        assert len(flat) == 1200
        # each address gets at most its burst of 4 relayed (the hub refuses the junk SDP: 400), the rest
        # 429 at once; whoever holds the most waiting requests makes room for a newcomer (503), and when
        # the rendezvous's connections are all taken, a newcomer evicts one that has not sent its
        # request yet (503, or a reset when the request was on its way: 0)
        assert flat.count(400) <= 200 * 4
        assert all(s in (0, 400, 429, 503) for s in flat), sorted(set(flat))
        assert flat.count(429) + flat.count(503) + flat.count(0) >= 200 * (6 - 4)
        assert met.rendezvous.refused.get(429, 0) >= 200, met.rendezvous.refused
        assert not met.rendezvous.hubs["lab"].pending, "nothing left waiting for the hub"


async def test_oversized_bodies_and_a_hub_that_never_answers_are_refused_in_bounded_time(tmp_path: Path) -> None:
    limits = RendezvousLimits(max_body=4096, relay_timeout=1.0)
    rendezvous = await serve_rendezvous(SECRET, limits=limits)
    try:
        async with aiohttp.ClientSession() as session:
            path = "/register/mute/abcdefgh12345678"
            headers = {"Authorization": sign_request(SECRET, "GET", path, b"", time.time())}
            async with session.ws_connect(rendezvous.url + path, headers=headers):  # registers, never answers
                async with session.post(f"{rendezvous.url}/hubs/mute/offer", data=b"x" * 10_000) as response:
                    assert response.status == 413
                started = time.monotonic()
                async with session.post(f"{rendezvous.url}/hubs/mute/offer", data=b"{}") as response:
                    assert response.status == 504 and "did not answer within 1 s" in await response.text()
                assert time.monotonic() - started < 5
                assert not rendezvous.hubs["mute"].pending
            async with session.get(f"{rendezvous.url}/hubs/mute/rsocket") as response:
                assert response.status in (404,)  # no direct path through a rendezvous (and the hub is gone)
    finally:
        await rendezvous.listener.close()


async def test_the_worker_page_is_served_through_the_rendezvous(tmp_path: Path) -> None:
    """The page and its modules come from the hub, through the relay, under /hubs/NAME/."""
    from rxchannel.web import WorkerPage

    root = tmp_path / "root"
    make_file(root / "f.bin", 1000, seed=1)
    rendezvous = await serve_rendezvous(SECRET)
    page = WorkerPage()
    hub = Hub(root)
    server = await rx.serve(hub.router, transport="webrtc", options=TransportOptions(http_setup=page.setup))
    listener = server.listener
    assert isinstance(listener, WebRtcListener)
    link = RendezvousLink(rendezvous.url, "pages", SECRET, local=listener.url, relay=listener.relay_token)
    await link.start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{rendezvous.url}/hubs/pages") as response:  # redirected to .../pages/
                assert response.status == 200 and str(response.url).endswith("/hubs/pages/")
                assert 'src="page.js"' in await response.text()
            async with session.get(f"{rendezvous.url}/hubs/pages/page.js") as response:
                assert response.status == 200 and "connect(HUB" in await response.text()
    finally:
        await link.close()
        await server.close()
        hub.close()
        await rendezvous.listener.close()


def test_a_rendezvous_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="needs a secret"):
        RendezvousServer("")
