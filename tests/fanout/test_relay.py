"""Relays (issue 18 #3): A -> B -> C with B serving a stream it pulls from A.

Demand end to end: at every chunk A reads, A's read offset is within C's consumption plus
the windows of both hops plus one chunk; B grants A at most its window; errors, metadata
and cancellation pass through. Over every peer transport (memory, TCP, WebSocket, aiortc).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest

import rxchannel as rx
from rxchannel.core import ErrorCode
from rxchannel.fanout import Relay, forward, relay
from rxchannel.files import FILE_CHANGED, FileSource, fetch_file, sha256_file
from rxchannel.hub import Hub, HubLimits
from tests.support import ConnectPeers, eventually, make_file

CHUNK = 16 * 1024
W_B, W_C = 3, 4


async def test_a_slow_sink_at_c_paces_the_disk_at_a_through_b(connect_peers: ConnectPeers, tmp_path: Path) -> None:
    data = make_file(tmp_path / "f.bin", 60 * CHUNK, seed=3)
    consumed = 0
    violations: list[tuple[int, int]] = []
    sources: list[FileSource] = []

    def on_read(_n: int) -> None:
        chunks = -(-sources[0].read_offset // CHUNK)
        if chunks > consumed + W_C + W_B + 1:
            violations.append((chunks, consumed))

    a_router = rx.Router()

    @a_router.stream("files/f.bin")
    def serve_a(request: rx.Request) -> FileSource:
        sources.append(FileSource(tmp_path / "f.bin", chunk_size=CHUNK, on_read=on_read))
        return sources[0]

    b_up, _a = await connect_peers(a_router)
    relays: list[Relay] = []
    b_router = rx.Router()

    @b_router.stream("files/")
    def serve_b(request: rx.Request) -> Relay:
        relays.append(relay(b_up, request.route, request.data, window=W_B))
        return relays[-1]

    c, _b = await connect_peers(b_router)
    digest = hashlib.sha256()
    b_in_flight: list[int] = []
    b_buffered: list[int] = []
    stream = c.request_stream("files/f.bin", window=W_C, auto_ack=False)
    async with asyncio.timeout(60):
        async for item in stream:
            digest.update(item.data)
            b_in_flight.append(relays[0].stream.in_flight)  # granted to A and not done with: arriving, held, sending
            b_buffered.append(relays[0].stream.buffered)
            await asyncio.sleep(0.002)  # C's slow sink
            consumed += 1
            stream.ack()
    assert digest.digest() == hashlib.sha256(data).digest() and consumed == 60
    assert violations == [], "A read past C's consumption + both windows + 1 chunk"
    assert sources[0].chunks_read == 60
    assert max(b_in_flight) <= W_B and max(b_buffered) <= W_B, "B holds at most its window"
    assert max(b_in_flight) == W_B, "B's window was in use"
    await eventually(lambda: sources[0].closed.is_set())


async def test_errors_metadata_and_cancel_pass_through_a_relay(connect_peers: ConnectPeers, tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_file(root / "f.bin", 50 * CHUNK, seed=4)
    hub = Hub(root, limits=HubLimits(chunk_size=CHUNK))
    b_up, _a = await connect_peers(hub.router)
    b_router = rx.Router()
    b_router.stream("files/")(forward(b_up, window=W_B))
    c, _b = await connect_peers(b_router)

    # A's refusal reaches C with A's code and words, not as a failure of B's handler
    with pytest.raises(rx.RemoteError) as refused:
        await c.request_stream("files/nope.bin").collect()
    assert refused.value.code == ErrorCode.REJECTED and "no such file" in refused.value.message

    # a resumable, verified fetch through the relay (the offset and the digests cross B unchanged)
    (tmp_path / "out.bin.part").write_bytes((root / "f.bin").read_bytes()[: 7 * CHUNK])
    result = await asyncio.wait_for(fetch_file(c, "f.bin", tmp_path / "out.bin", window=W_C), 30)
    assert result.resumed_from == 7 * CHUNK and result.sha256 == sha256_file(root / "f.bin")

    # C leaves early: B cancels upstream and A closes the file
    taken = 0
    async for _ in c.request_stream("files/f.bin", window=2):
        taken += 1
        if taken == 5:
            break
    await eventually(lambda: not hub.sources and hub.streams_open == 0, what="A's file closed")

    # the file changes on A while C reads it: C gets A's FILE_CHANGED
    stream = c.request_stream("files/f.bin", window=2)
    first = await stream.next()
    assert first.data
    with open(root / "f.bin", "ab") as handle:
        handle.write(b"more")
    with pytest.raises(rx.RemoteError) as changed:
        async with asyncio.timeout(20):
            while True:
                await stream.next()
    assert changed.value.code == FILE_CHANGED


async def test_a_relay_whose_upstream_is_gone_says_so(tmp_path: Path) -> None:
    a_router = rx.Router()
    hold = asyncio.Event()

    @a_router.stream("slow")
    async def slow(request: rx.Request) -> Any:
        yield b"one"
        await hold.wait()
        yield b"two"

    a_server = await rx.serve_tcp(a_router)
    b_up = await rx.connect_tcp("127.0.0.1", a_server.port)
    b_router = rx.Router()
    b_router.stream("slow")(forward(b_up))
    b_server = await rx.serve_tcp(b_router)
    c = await rx.connect_tcp("127.0.0.1", b_server.port)
    try:
        stream = c.request_stream("slow")
        assert (await stream.next()).data == b"one"
        await a_server.close()  # A goes away mid-stream
        with pytest.raises(rx.RemoteError, match="the relay lost its upstream connection"):
            await asyncio.wait_for(stream.next(), 10)
    finally:
        await c.close()
        await b_up.close()
        await b_server.close()


REPO = Path(__file__).resolve().parents[2]


async def test_three_processes_a_slow_c_paces_a_through_b_and_b_stays_flat(tmp_path: Path) -> None:
    """A (a hub process) -> B (a relay process) -> C (this process, a slow sink): at every
    chunk C consumes, A has read at most C's consumption + both windows + 1 chunk, B holds at
    most its window, and B's memory does not grow with the file."""
    chunk, w_b, w_c, chunks = 64 * 1024, 4, 8, 512  # a 32 MiB file
    make_file(tmp_path / "root" / "big.bin", chunks * chunk, seed=11)
    procs: list[asyncio.subprocess.Process] = []

    async def start(*args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.nodes", *args, cwd=REPO,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        procs.append(proc)
        assert proc.stdout is not None
        return (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()

    peers: list[rx.Peer] = []
    try:
        url_a = await start("hub", str(tmp_path / "root"), "--chunk-size", str(chunk))
        url_b = await start("relay", url_a, "--window", str(w_b))
        a = await rx.connect(url_a)  # a side line to A, to read its disk counter
        c = await rx.connect(url_b)
        peers += [a, c]

        async def stats(peer: rx.Peer) -> dict[str, int]:
            return json.loads((await peer.request_response("stats")).data)  # type: ignore[no-any-return]

        digest = hashlib.sha256()
        consumed = 0
        reads: list[tuple[int, int]] = []
        held: list[tuple[int, int]] = []
        rss: list[int] = []
        stream = c.request_stream("files/big.bin", window=w_c, auto_ack=False)
        async with asyncio.timeout(240):
            async for item in stream:
                digest.update(item.data)
                await asyncio.sleep(0.003)  # C's slow sink
                consumed += 1
                stream.ack()
                # C is not consuming while it asks: A's counter is compared with a settled consumption
                reads.append((-(-(await stats(a))["bytes_read"] // chunk), consumed))
                if consumed % 16 == 0:
                    b = await stats(c)
                    held.append((b["in_flight"], b["buffered"]))
                    rss.append(b["rss_kb"])
        assert consumed == chunks and digest.hexdigest() == sha256_file(tmp_path / "root" / "big.bin")
        over = [(read, done) for read, done in reads if read > done + w_c + w_b + 1]
        assert over == [], f"A read ahead of C: {over[:5]}"
        assert max(read - done for read, done in reads) >= w_c, "the windows were in use"
        assert all(in_flight <= w_b and buffered <= w_b for in_flight, buffered in held)
        # B's memory is flat: what it gains while 32 MiB cross it is a small fraction of that
        growth_kb = max(rss) - rss[0]
        print(f"A ahead of C by at most {max(r - d for r, d in reads)} chunks; B RSS {rss[0]} -> {max(rss)} KiB")
        assert growth_kb < 8 * 1024, f"B's RSS grew by {growth_kb} KiB while relaying 32 MiB"
    finally:
        for peer in peers:
            await peer.close()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.close()
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
