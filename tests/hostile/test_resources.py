"""Hostile peers (issue 11): nothing unbounded, and legitimate workers keep being served.

Each attack runs against a real hub while a legitimate worker fetches a file beside it;
the bound is checked where it could break (the hub's send queue after every write, the
hub's own counters), and the legitimate file must arrive verified. Attackers use the
sans-IO core to write well-formed frames and then never read, from other loopback
addresses (127.0.0.2 ...) so per-address limits tell them apart from the worker.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import rxchannel as rx
from rxchannel.core import (
    Budget,
    ConnectionConfig,
    ErrorFrame,
    Interaction,
    Role,
    SetupFrame,
    decode_frame,
    request_metadata,
)
from rxchannel.files import TooLargeError, fetch_file, push_file, sha256_file
from rxchannel.hub import Hub, HubLimits
from rxchannel.runtime import Server, connect, serve
from rxchannel.transports import ListenLimits, TransportLimits, TransportOptions
from tests.hostile.flood import ECHO_PING, SETUP, framed, requests, unfinished_requests
from tests.support import eventually, make_file, silence_after_setup

CHUNK = 64 * 1024


class QueueWatch:
    """Records, after every write the hub makes, how much waits in that connection's send queue,
    and the hub's peers in the order they were accepted."""

    def __init__(self, server: Server):
        self.worst = 0
        self.peers: list[Any] = []
        accept = server.accept

        def watched(transport: Any) -> Any:
            write = transport.write

            def write_and_measure(frames: list[bytes]) -> None:
                write(frames)
                self.worst = max(self.worst, transport.buffered_amount)

            transport.write = write_and_measure
            peer = accept(transport)
            self.peers.append(peer)
            return peer

        server.accept = watched  # type: ignore[method-assign]

    async def first(self) -> Any:
        await eventually(lambda: bool(self.peers), what="the attacker's connection")
        return self.peers[0]


async def start_hub(
    root: Path, kind: str = "tcp", *, hub: dict[str, Any] | None = None, **options: Any
) -> tuple[Hub, Server]:
    limits = dict(hub or {})
    inbox = limits.pop("inbox", None)
    the_hub = Hub(root, inbox=inbox, limits=HubLimits(chunk_size=CHUNK, **limits))
    config = options.pop("config", None)
    server = await serve(the_hub.router, transport=kind, config=config, options=TransportOptions(**options))
    return the_hub, server


async def legit_fetch(url: str, name: str, root: Path, out: Path) -> None:
    """A worker that fetches ``name`` and checks it end to end (from 127.0.0.1)."""
    async with await connect(url) as peer:
        result = await fetch_file(peer, name, out, window=8)
    assert result.sha256 == sha256_file(root / name) == sha256_file(out)


async def raw_tcp(url: str, source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = url.removeprefix("tcp://").rsplit(":", 1)
    return await asyncio.open_connection(host, int(port), local_addr=(source, 0))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    make_file(tmp_path / "root" / "legit.bin", 4 << 20, seed=1)
    make_file(tmp_path / "root" / "big.bin", 4 << 20, seed=2)
    return tmp_path / "root"


# ------------------------------------------------------------------ 3. writes that skip the high-water mark


async def keepalive_flood_over(kind: str, url: str, opened: list[Any]) -> None:
    """SETUP, then 64 KEEPALIVEs asking for 256 KiB echoes each (16 MiB), and never read a byte."""
    if kind == "tcp":
        _, writer = await raw_tcp(url, "127.0.0.2")
        opened.append(writer)
        writer.write(framed(SETUP, *[ECHO_PING] * 64))
        return
    import aiohttp

    session = aiohttp.ClientSession()
    opened.append(session)
    ws = await session.ws_connect(url, max_msg_size=0)
    opened.append(ws)  # alive (and unread) until the test ends: a collected response would close it
    for frame in [SETUP, *[ECHO_PING] * 64]:
        await ws.send_bytes(frame)  # returns once handed to the socket: the hub's reads pace it


@pytest.mark.parametrize("kind", ["tcp", "ws"])
async def test_case_03_a_peer_that_never_reads_keepalive_echoes_is_not_read_and_is_dropped(
    root: Path, tmp_path: Path, kind: str
) -> None:
    hub, server = await start_hub(root, kind, limits=TransportLimits(stall_timeout=1.5))
    watch = QueueWatch(server)
    opened: list[Any] = []
    attack = asyncio.ensure_future(keepalive_flood_over(kind, server.url, opened))
    try:
        attacker = await watch.first()  # connected before the worker
        await legit_fetch(server.url, "legit.bin", root, tmp_path / "legit.bin")
        error = await asyncio.wait_for(attacker.wait_closed(), 30)
        assert isinstance(error, rx.ConnectionLostError) and "stopped reading" in str(error), error
        # the queue: the high-water mark plus what one read batch asked for, never the 16 MiB requested
        assert watch.worst <= (1 << 20) + (5 << 20) + (256 << 10), watch.worst
    finally:
        await server.close()
        attack.cancel()
        await asyncio.gather(attack, return_exceptions=True)  # the hub dropping it may end it with an error
        for thing in opened:
            result = thing.close()
            if asyncio.iscoroutine(result):
                await result


async def test_case_03_whole_file_buffers_for_a_peer_that_never_reads_hold_at_most_their_slots(
    root: Path, tmp_path: Path
) -> None:
    hub, server = await start_hub(
        root, hub={"max_buffer": 4 << 20, "max_buffers": 2}, limits=TransportLimits(stall_timeout=1.5)
    )
    watch = QueueWatch(server)
    _, writer = await raw_tcp(server.url, "127.0.0.2")
    # 64 requests for 4 MiB each; nothing is ever read
    writer.write(framed(*requests("buffers/big.bin", Interaction.RESPONSE, 64)))
    try:
        attacker = await watch.first()
        await legit_fetch(server.url, "legit.bin", root, tmp_path / "legit.bin")
        error = await asyncio.wait_for(attacker.wait_closed(), 30)
        assert isinstance(error, rx.ConnectionLostError) and "stopped reading" in str(error)
        assert hub.buffers.peak <= 2, f"{hub.buffers.peak} buffers were held at once (limit 2)"
        assert watch.worst <= (1 << 20) + (4 << 20) + (1 << 16), watch.worst
        await eventually(lambda: hub.buffers_in_flight == 0, what="the dropped peer's slots coming back")
    finally:
        writer.close()
        await server.close()


# ------------------------------------------------------------------ 4. connections, files, slow HTTP clients


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_case_04_connections_past_the_per_address_cap_make_room_and_fds_stay_bounded(
    root: Path, tmp_path: Path
) -> None:
    hub, server = await start_hub(root, listen_limits=ListenLimits(max_connections=40, max_per_address=10))
    before = open_fds()
    writers = []
    try:
        for _ in range(60):
            reader, writer = await raw_tcp(server.url, "127.0.0.2")
            writers.append((reader, writer))
        await legit_fetch(server.url, "legit.bin", root, tmp_path / "legit.bin")  # from 127.0.0.1: not capped
        closed = 0
        told: list[bytes] = []
        for reader, _ in writers:
            try:
                told.append(await asyncio.wait_for(reader.read(), 0.5))  # the hub said why, then closed
                closed += 1
            except ConnectionError:
                closed += 1  # the hub reset it
            except TimeoutError:
                pass  # admitted
        # an evicted client reads why: ERROR[REJECTED_SETUP] on stream 0 (the newest from an
        # address at its cap takes the place of its oldest that has sent no SETUP)
        refusal = decode_frame(told[0][3:])
        assert isinstance(refusal, ErrorFrame) and refusal.stream_id == 0
        assert "the hub is busy: this connection made room for a newer one from the same address" in refusal.message
        assert closed >= 50, f"only {closed} of 60 connections from one address were closed (limit 10)"
        # ours: 60 client sockets; the hub's: at most the 10 it admitted from that address
        assert open_fds() - before <= 60 + 10 + 4
    finally:
        for _, writer in writers:
            writer.close()
        await server.close()


async def test_case_04_slow_http_clients_are_cut_at_the_header_timeout_and_the_per_address_cap(
    root: Path, tmp_path: Path
) -> None:
    limits = ListenLimits(header_timeout=1.0, max_per_address=10)
    hub, server = await start_hub(root, "ws", listen_limits=limits)
    host, port = server.url.removeprefix("ws://").split("/")[0].rsplit(":", 1)
    slow = []
    try:
        for _ in range(30):  # slow-loris: a request line, then nothing
            reader, writer = await asyncio.open_connection(host, int(port), local_addr=("127.0.0.3", 0))
            writer.write(b"GET /rsocket HTTP/1.1\r\nHost: x\r\n")
            slow.append(reader)
        await legit_fetch(server.url, "legit.bin", root, tmp_path / "legit.bin")
        results = await asyncio.gather(*(asyncio.wait_for(r.read(), 15) for r in slow), return_exceptions=True)
        assert all(r == b"" or isinstance(r, ConnectionError) for r in results), results
    finally:
        await server.close()


async def test_case_04_file_streams_past_the_budget_are_refused_and_others_keep_being_served(
    root: Path, tmp_path: Path
) -> None:
    hub, server = await start_hub(root, hub={"max_open_files": 8, "max_files_per_connection": 4})
    hog = await connect(server.url)
    try:
        streams = [hog.request_stream("files/big.bin", window=1) for _ in range(10)]
        results = await asyncio.gather(*(s.next() for s in streams), return_exceptions=True)
        refused = [r for r in results if isinstance(r, rx.RemoteError)]
        assert len(refused) == 6 and all("per connection" in r.message for r in refused), results
        assert hub.streams_open == 4
        await legit_fetch(server.url, "legit.bin", root, tmp_path / "legit.bin")
        for stream in streams:
            await stream.aclose()
        await eventually(lambda: hub.streams_open == 0, what="cancelled streams giving their files back")
    finally:
        await hog.close()
        await server.close()


async def test_case_04_file_streams_that_wait_for_demand_make_room_when_the_budget_is_full(
    root: Path, tmp_path: Path
) -> None:
    """Issue 26: four connections hold the whole open-file budget (8) with streams they never
    read past the first chunk; once those have waited ``stream_idle`` for demand, a new
    worker's stream takes a place (the oldest idle one's file is closed at once), and the
    evicted stream fails on its next pull saying to resume."""
    hub, server = await start_hub(root, hub={"max_open_files": 8, "max_files_per_connection": 2, "stream_idle": 0.3})
    hogs = [await connect(server.url) for _ in range(4)]
    try:
        streams = [hog.request_stream("files/big.bin", window=1) for hog in hogs for _ in range(2)]
        await asyncio.gather(*(s.next() for s in streams))  # one chunk each, then nothing: idle
        assert hub.streams_open == 8 and len(hub.sources) == 8
        await asyncio.sleep(0.4)
        await legit_fetch(server.url, "legit.bin", root, tmp_path / "legit.bin")
        assert hub.files.evicted["full"] >= 1 and hub.streams_open <= 8
        await eventually(lambda: len(hub.sources) <= 8 - hub.files.evicted["full"], what="evicted files closed")
        failed = []
        for stream in streams:
            stream.request(2)
            try:
                await stream.next()
                await stream.next()
            except rx.RemoteError as exc:
                failed.append(exc.message)
        assert len(failed) == hub.files.evicted["full"], failed
        assert all("closed to make room for another" in m and "resume from your offset" in m for m in failed)
    finally:
        for hog in hogs:
            await hog.close()
        await server.close()


# ------------------------------------------------------------------ 5. a SETUP asking for a longer lifetime


def test_case_05_a_setup_cannot_extend_the_servers_maximum_lifetime(tmp_path: Path) -> None:
    """In virtual time: the client asks for 2^31-1 ms; the server allows 5 s."""
    from rxchannel.runtime import Peer

    greedy = SetupFrame(keepalive_ms=1000, lifetime_ms=2**31 - 1, metadata_mime="m", data_mime="d")
    error, elapsed = silence_after_setup(
        lambda end: Peer(end, Role.SERVER, config=ConnectionConfig(max_lifetime=5.0)), greedy
    )
    assert isinstance(error, rx.ConnectionLostError) and "keepalive limit 5.0 s" in str(error)
    assert elapsed == pytest.approx(5.0, abs=0.01)


# ------------------------------------------------------------------ 6. reassembly budgets


async def test_case_06_reassembly_is_capped_per_connection_and_per_hub(root: Path, tmp_path: Path) -> None:
    shared = Budget(2 << 20, "the hub's budget for fragmented items")
    config = ConnectionConfig(max_reassembly_bytes=1 << 20, shared_reassembly=shared)
    hub, server = await start_hub(root, config=config)
    attackers = []
    try:
        for address in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
            reader, writer = await raw_tcp(server.url, address)
            writer.write(framed(SETUP, *unfinished_requests(1, 20, 256 << 10)))  # 5 MiB asked to be held
            attackers.append((reader, writer))
        await legit_fetch(server.url, "legit.bin", root, tmp_path / "legit.bin")
        await eventually(lambda: len(server.peers) >= 3 and shared.used == 2 << 20, what="the budgets filling")
        for peer in server.peers:
            assert peer.connection.reassembly_bytes <= 1 << 20
        # what was refused was answered with REJECTED naming the limit
        reader, _ = attackers[0]
        answer = await asyncio.wait_for(reader.read(1 << 16), 5)
        errors = [
            decode_frame(answer[i + 3 : i + 3 + int.from_bytes(answer[i : i + 3], "big")]) for i in _offsets(answer)
        ]
        assert any(isinstance(e, ErrorFrame) and "max_reassembly_bytes" in e.message for e in errors), errors
    finally:
        for _, writer in attackers:
            writer.close()
        await eventually(lambda: shared.used == 0, what="the budget coming back when the attackers leave")
        await server.close()


def _offsets(buf: bytes) -> list[int]:
    offsets, i = [], 0
    while i + 3 <= len(buf):
        length = int.from_bytes(buf[i : i + 3], "big")
        if i + 3 + length > len(buf):
            break
        offsets.append(i)
        i += 3 + length
    return offsets


# ------------------------------------------------------------------ 9. listings


async def test_case_09_listings_come_in_pages_and_cannot_starve_file_reads(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for d in range(20):
        (root / f"d{d:02}").mkdir()
        for f in range(250):
            (root / f"d{d:02}" / f"f{f:03}.txt").write_bytes(b"x")
    hub, server = await start_hub(root, hub={"max_list": 1000})
    try:
        async with await connect(server.url) as peer:
            seen, cursor, pages = [], None, 0
            while True:
                request: dict[str, Any] = {"limit": 1000} | ({"cursor": cursor} if cursor else {})
                reply = await peer.request_response("files", json.dumps(request).encode())
                seen += [e["path"] for e in json.loads(reply.data)]
                pages += 1
                _, info = rx.core.parse_request_metadata(reply.metadata) if reply.metadata else (None, {})
                cursor = info.get("next")
                if cursor is None:
                    break
            assert (
                pages == 6 and len(seen) == len(set(seen)) == 5002 and seen == sorted(seen, key=lambda p: p.split("/"))
            )

            # thirty listings that never finish must not hold up file reads
            gate = threading.Event()
            from rxchannel.hub import _hub as hub_module

            real = hub_module.list_page
            monkeypatch.setattr(hub_module, "list_page", lambda *a, **k: (gate.wait(30), real(*a, **k))[1])
            listings = [asyncio.ensure_future(peer.request_response("files", b'{"limit": 10}')) for _ in range(30)]
            await legit_fetch(server.url, "legit.bin", root, tmp_path / "legit.bin")
            assert not any(listing.done() for listing in listings), "the listings should still be waiting"
            gate.set()
            assert all(len(json.loads(r.data)) == 10 for r in await asyncio.gather(*listings))
    finally:
        await server.close()
        hub.close()


# ------------------------------------------------------------------ 10. uploads


async def test_case_10_uploads_are_capped_checked_for_space_and_never_left_behind(root: Path, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    stale = inbox / "old.bin.abcd.part"
    stale.write_bytes(b"x" * 1000)
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    hub, server = await start_hub(root, hub={"inbox": inbox, "max_upload": 1 << 20})
    try:
        async with await connect(server.url) as peer:
            make_file(tmp_path / "big.up", 3 << 20, seed=3)
            with pytest.raises(rx.RemoteError, match="at most 1048576"):
                await push_file(peer, tmp_path / "big.up")  # announced: refused before a byte is written

            async def lying() -> AsyncIterator[bytes]:
                for _ in range(48):
                    yield b"z" * CHUNK  # 3 MiB for an announced 1000 bytes

            replies = peer.request_channel("push/liar.bin", lying(), info={"size": 1000})
            with pytest.raises(rx.RemoteError, match=r"exceeds 1048576 bytes, the most this hub accepts"):
                await replies.collect()
            hub.limits = hub.limits.replace(min_free=1 << 60)  # more than any disk has
            make_file(tmp_path / "small.up", 1000, seed=4)
            with pytest.raises(rx.RemoteError, match="not enough space"):
                await push_file(peer, tmp_path / "small.up")
        assert sorted(p.name for p in inbox.iterdir()) == [], "nothing partial or refused is left in the inbox"
    finally:
        await server.close()


async def test_case_10_unauthenticated_pushes_have_a_per_address_budget_and_stalled_ones_are_removed(
    root: Path, tmp_path: Path
) -> None:
    """Issue 26: without a secret, one address holds at most ``max_upload_per_address`` in the
    inbox (finished and unfinished pushes together); a push that sends nothing for
    ``upload_idle`` fails and its partial is removed at once, the connection kept."""
    inbox = tmp_path / "inbox"
    hub, server = await start_hub(root, hub={"inbox": inbox, "max_upload_per_address": 3 << 20, "upload_idle": 0.5})
    try:
        async with await connect(server.url) as peer:
            for n in range(2):
                make_file(tmp_path / f"up{n}.bin", 1 << 20, seed=n)
                await push_file(peer, tmp_path / f"up{n}.bin")
            make_file(tmp_path / "big.up", 2 << 20, seed=9)
            with pytest.raises(rx.RemoteError, match=r"already has 2 MiB .* may hold 3 MiB"):
                await push_file(peer, tmp_path / "big.up")  # announced: refused before a byte is written

            async def unannounced() -> AsyncIterator[bytes]:
                for _ in range(32):
                    yield b"z" * CHUNK  # 2 MiB, no size announced

            replies = peer.request_channel("push/sneaky.bin", unannounced())
            with pytest.raises(rx.RemoteError, match=r"past the 3 MiB an address may hold"):
                await replies.collect()
            (inbox / "up0.bin").unlink()  # the operator took one away: room again
            make_file(tmp_path / "small.up", 500_000, seed=10)
            await push_file(peer, tmp_path / "small.up")

            stalled = asyncio.Event()

            async def stalls() -> AsyncIterator[bytes]:
                yield b"s" * CHUNK
                await stalled.wait()  # the sender goes quiet, its connection alive

            replies = peer.request_channel("push/stalled.bin", stalls())
            with pytest.raises(rx.RemoteError, match="nothing of this upload arrived for 0 s"):
                await replies.collect()
            assert not list(inbox.glob("*.part")), "the stalled push's partial file is removed at once"
            assert await peer.request_response("files", b"") is not None  # the connection goes on
            stalled.set()
        assert sorted(p.name for p in inbox.iterdir()) == ["small.up", "up1.bin"]
    finally:
        await server.close()


# ------------------------------------------------------------------ 11. a worker's size cap


async def test_case_11_a_worker_stops_a_hub_that_announces_or_sends_too_much(tmp_path: Path) -> None:
    router = rx.Router()

    @router.stream("files/")
    async def lying(request: rx.Request) -> AsyncIterator[rx.Payload]:
        announce = request.route.endswith("huge")  # type: ignore[union-attr]
        info = {"size": 2**60, "offset": 0} if announce else {"offset": 0}
        yield rx.Payload(b"x" * CHUNK, request_metadata(None, info))
        for _ in range(100):
            yield rx.Payload(b"x" * CHUNK)

    server = await serve(router)
    try:
        async with await connect(server.url) as peer:
            with pytest.raises(TooLargeError, match="announced as 1152921504606846976"):
                await fetch_file(peer, "huge", tmp_path / "huge", max_size=1 << 20)
            assert not (tmp_path / "huge.part").exists() or (tmp_path / "huge.part").stat().st_size == 0
            with pytest.raises(TooLargeError, match="would exceed 1048576"):
                await fetch_file(peer, "silent", tmp_path / "silent", max_size=1 << 20)
            assert (tmp_path / "silent.part").stat().st_size <= 1 << 20
            assert not (tmp_path / "huge").exists() and not (tmp_path / "silent").exists()
    finally:
        await server.close()
