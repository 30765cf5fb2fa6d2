"""Issue 30 on loopback: manifests, chunks verified as they arrive, resume from the good chunks,
one file from several real hub processes (``tests/sourcehub.py``) at once."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import rxchannel as rx
from rxchannel.files import (
    ChunkMismatchError,
    ChunkSink,
    IntegrityError,
    Manifest,
    compute_manifest,
    fetch_file,
    fetch_manifest,
    sha256_file,
)
from rxchannel.files.manifest import MAX_MANIFEST_CHUNKS, manifest_chunk_size
from tests.support import make_file

REPO = Path(__file__).resolve().parents[2]
CHUNK = 64 * 1024
SIZE = 6 * 1024 * 1024 + 12345  # 97 chunks, the last one short
BAD_CHUNK = 20  # in the first third: the authority's share at the start


@pytest.fixture
def roots(tmp_path: Path) -> dict[str, Path]:
    """``good/f.bin``; ``bad/f.bin`` (one byte flipped in chunk BAD_CHUNK); ``other/f.bin`` (another file)."""
    good, bad, other = tmp_path / "good", tmp_path / "bad", tmp_path / "other"
    data = make_file(good / "f.bin", SIZE, seed=30)
    flipped = bytearray(data)
    flipped[BAD_CHUNK * CHUNK + 777] ^= 0x40
    bad.mkdir()
    (bad / "f.bin").write_bytes(bytes(flipped))
    make_file(other / "f.bin", SIZE, seed=31)
    return {"good": good, "bad": bad, "other": other}


class Hubs:
    """Hub processes (``python -m tests.sourcehub``), each with its URL; all stopped at the end."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, root: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.sourcehub", str(root), *extra],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        self.procs.append(proc)
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("tcp://"), f"the hub did not start ({proc.poll()})"
        return proc, url

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                assert proc.stdin is not None
                proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def hubs() -> Iterator[Hubs]:
    made = Hubs()
    yield made
    made.close()


@pytest.fixture
async def dial() -> AsyncIterator[Callable[[str], Any]]:
    peers: list[rx.Peer] = []

    async def connect(url: str) -> rx.Peer:
        peers.append(await rx.connect(url))
        return peers[-1]

    yield connect
    for peer in peers:
        await peer.close()


async def stats(dial: Callable[[str], Any], url: str) -> dict[str, Any]:
    peer = await dial(url)
    return dict(json.loads((await peer.request_response("stats")).data))


# ------------------------------------------------------------------ the manifest


def test_a_manifest_has_a_digest_per_chunk_and_grows_its_chunks_for_large_files(roots: dict[str, Path]) -> None:
    manifest, _ = compute_manifest(roots["good"] / "f.bin")
    assert manifest.chunk_size == CHUNK and manifest.count == -(-SIZE // CHUNK)
    assert manifest.sha256 == sha256_file(roots["good"] / "f.bin")
    assert manifest.span(manifest.count - 1) == ((manifest.count - 1) * CHUNK, SIZE)
    assert Manifest.decode(manifest.encode()) == manifest
    data = (roots["bad"] / "f.bin").read_bytes()
    bad = [i for i in range(manifest.count) if not manifest.matches(i, data[i * CHUNK : (i + 1) * CHUNK])]
    assert bad == [BAD_CHUNK]
    # a 1 GiB file: 128 KiB chunks, at most MAX_MANIFEST_CHUNKS of them
    assert manifest_chunk_size(1 << 30) == 128 * 1024 and MAX_MANIFEST_CHUNKS >= (1 << 30) // (128 * 1024)
    for broken in (b"[]", b'{"version": 1}', manifest.encode().replace(b'"size":', b'"size":1')):
        with pytest.raises(IntegrityError):
            Manifest.decode(broken)


async def test_the_hub_computes_a_manifest_once_serves_it_and_announces_it(
    roots: dict[str, Path], hubs: Hubs, dial: Callable[[str], Any]
) -> None:
    _, url = hubs.start(roots["good"])
    peer = await dial(url)
    first = await fetch_manifest(peer, "f.bin")
    assert first == compute_manifest(roots["good"] / "f.bin")[0]
    assert await fetch_manifest(peer, "f.bin") == first
    assert (await stats(dial, url))["manifests"] == 1, "computed once, then cached"
    # a files/ stream announces it in its first item's metadata
    stream = peer.request_stream("files/f.bin", window=1)
    item = await stream.next()
    await stream.aclose()
    from rxchannel.files._common import item_info

    assert item_info(item)["manifest"] == first.summary()
    # the file changes (size, mtime): the cached manifest is not used for it any more
    path = roots["good"] / "f.bin"
    with open(path, "ab") as handle:
        handle.write(b"more")
    changed = await fetch_manifest(peer, "f.bin")
    assert changed.size == SIZE + 4 and changed.sha256 == sha256_file(path)
    assert (await stats(dial, url))["manifests"] == 2


# ------------------------------------------------------------------ one source, verified per chunk


async def test_a_lying_hub_is_caught_at_the_bad_chunk_and_nothing_of_it_is_written(
    roots: dict[str, Path], hubs: Hubs, dial: Callable[[str], Any], tmp_path: Path
) -> None:
    """The hub announces the true manifest and sends a byte flipped in chunk BAD_CHUNK: the
    fetch fails at that chunk, naming it and the hub; the hub sent at most a window past it."""
    window = 4
    _, url = hubs.start(roots["bad"], "--manifest-from", str(roots["good"]))
    peer = await dial(url)
    out = tmp_path / "out.bin"
    with pytest.raises(ChunkMismatchError) as caught:
        await fetch_file(peer, "f.bin", out, verify="chunks", window=window)
    assert caught.value.index == BAD_CHUNK and f"chunk {BAD_CHUNK} " in str(caught.value)
    assert url.split("//")[1] in str(caught.value), "the message names the source"
    end_of_lie = (BAD_CHUNK + 1) * CHUNK
    read = (await stats(dial, url))["bytes_read"]
    assert end_of_lie <= read <= end_of_lie + (window + 1) * CHUNK, (read, end_of_lie)
    # every chunk before it was kept, the bad one never touched the disk
    part = out.with_name("out.bin.part").read_bytes()
    good = (roots["good"] / "f.bin").read_bytes()
    assert part[: BAD_CHUNK * CHUNK] == good[: BAD_CHUNK * CHUNK]
    assert part[BAD_CHUNK * CHUNK : end_of_lie] == bytes(CHUNK)
    assert not out.exists()


async def test_the_cli_exits_3_naming_the_chunk_and_the_hub(roots: dict[str, Path], hubs: Hubs, tmp_path: Path) -> None:
    _, url = hubs.start(roots["bad"], "--manifest-from", str(roots["good"]))
    done = subprocess.run(
        [sys.executable, "-m", "rxchannel", "fetch", url, "f.bin", "-o", str(tmp_path / "o.bin"), "--verify", "chunks",
         "--json"],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert f"chunk {BAD_CHUNK} " in done.stderr and url.split("//")[1] in done.stderr
    assert json.loads(done.stdout)["exit"] == 3


async def test_a_tampered_part_resumes_with_exactly_the_bad_chunk_and_the_rest(
    roots: dict[str, Path], hubs: Hubs, dial: Callable[[str], Any], tmp_path: Path
) -> None:
    """A .part of the first 60 chunks and a half (torn mid-chunk), one byte changed in chunk 30:
    the resume asks for chunk 30 and chunks 60.. only, and ends verified."""
    good = (roots["good"] / "f.bin").read_bytes()
    out = tmp_path / "out.bin"
    torn = bytearray(good[: 60 * CHUNK + CHUNK // 2])
    torn[30 * CHUNK + 5000] ^= 1
    out.with_name("out.bin.part").write_bytes(bytes(torn))
    _, url = hubs.start(roots["good"])
    result = await fetch_file(await dial(url), "f.bin", out, verify="chunks", window=8)
    assert out.read_bytes() == good and result.sha256 == sha256_file(roots["good"] / "f.bin")
    assert result.resumed_from == 59 * CHUNK, "59 chunks kept: 0-29 and 31-59"
    assert result.received == CHUNK + (SIZE - 60 * CHUNK)
    assert (await stats(dial, url))["ranges"] == [[30 * CHUNK, 31 * CHUNK], [60 * CHUNK, SIZE]]


# ------------------------------------------------------------------ several sources


async def test_three_hubs_serve_disjoint_ranges_of_one_verified_file(
    roots: dict[str, Path], hubs: Hubs, dial: Callable[[str], Any], tmp_path: Path
) -> None:
    urls = [hubs.start(roots["good"])[1] for _ in range(3)]
    peers = [await dial(url) for url in urls]
    out = tmp_path / "out.bin"
    fed: list[int] = []
    result = await fetch_file(
        peers[0], "f.bin", out, peers=list(zip(urls[1:], peers[1:], strict=True)), window=8, feeding=fed.append
    )
    assert out.read_bytes() == (roots["good"] / "f.bin").read_bytes()
    assert [s.dropped for s in result.sources] == [None, None, None]
    assert all(s.chunks > 0 for s in result.sources) and sum(s.chunks for s in result.sources) == 97
    assert sum(s.bytes for s in result.sources) == SIZE == result.received
    assert max(fed) == 3, "three sources fed it at once"
    ranges = [await stats(dial, url) for url in urls]
    requested = sorted((a, b) for s in ranges for a, b in s["ranges"])
    covered = sum(b - a for a, b in requested)
    assert covered <= SIZE + 3 * 8 * CHUNK, "ranges overlap by at most what was in flight when one was split"


async def test_a_source_that_flips_a_byte_is_dropped_and_the_chunk_comes_from_another(
    roots: dict[str, Path], hubs: Hubs, dial: Callable[[str], Any], tmp_path: Path
) -> None:
    """The liar is the second of three sources: its share starts at chunk 33 (97 chunks in
    shares of 33, 32, 32), and it flips a byte in chunk 34."""
    good = (roots["good"] / "f.bin").read_bytes()
    lie = bytearray(good)
    lie[34 * CHUNK + 3] ^= 0xFF
    liar_root = tmp_path / "liar"
    liar_root.mkdir()
    (liar_root / "f.bin").write_bytes(bytes(lie))
    _, a = hubs.start(roots["good"])
    _, liar = hubs.start(liar_root, "--manifest-from", str(roots["good"]))
    _, c = hubs.start(roots["good"])
    out = tmp_path / "out.bin"
    result = await fetch_file(
        await dial(a), "f.bin", out, peers=[(liar, await dial(liar)), (c, await dial(c))], window=4
    )
    assert out.read_bytes() == good, "verified: the flipped byte never reached the output"
    by_url = {s.url: s for s in result.sources}
    assert by_url[liar].dropped is not None and "chunk 34 " in by_url[liar].dropped
    assert result.sources[0].dropped is None and by_url[c].dropped is None  # the authority: named by address
    assert by_url[liar].chunks == 1, "it delivered chunk 33, then lied"


async def test_a_source_killed_midway_has_its_ranges_finished_by_the_others(
    roots: dict[str, Path], hubs: Hubs, dial: Callable[[str], Any], tmp_path: Path
) -> None:
    _, a = hubs.start(roots["good"], "--delay", "0.003")
    doomed, b = hubs.start(roots["good"], "--delay", "0.003")
    _, c = hubs.start(roots["good"], "--delay", "0.003")
    watcher = await dial(b)
    out = tmp_path / "out.bin"
    fetch = asyncio.create_task(
        fetch_file(await dial(a), "f.bin", out, peers=[(b, await dial(b)), (c, await dial(c))], window=4)
    )

    async def b_has_sent_some() -> bool:
        return bool(json.loads((await watcher.request_response("stats")).data)["bytes_read"] >= 8 * CHUNK)

    for _ in range(400):
        if await b_has_sent_some():
            break
        await asyncio.sleep(0.01)
    doomed.kill()
    result = await asyncio.wait_for(fetch, 60)
    assert out.read_bytes() == (roots["good"] / "f.bin").read_bytes()
    by_url = {s.url: s for s in result.sources}
    assert by_url[b].dropped is not None and 0 < by_url[b].chunks < 32
    assert sum(s.chunks for s in result.sources) == 97


async def test_a_stalled_source_is_dropped_after_the_stall_timeout(
    roots: dict[str, Path], hubs: Hubs, dial: Callable[[str], Any], tmp_path: Path
) -> None:
    _, a = hubs.start(roots["good"])
    _, stuck = hubs.start(roots["good"], "--stall-after", str(5 * CHUNK))
    out = tmp_path / "out.bin"
    result = await fetch_file(
        await dial(a), "f.bin", out, peers=[(stuck, await dial(stuck))], window=4, stall_timeout=1.0
    )
    assert out.read_bytes() == (roots["good"] / "f.bin").read_bytes()
    stalled = result.sources[1]
    assert stalled.dropped is not None and stalled.dropped.startswith("stalled") and stalled.chunks == 5


async def test_a_source_with_another_file_is_not_used(
    roots: dict[str, Path], hubs: Hubs, dial: Callable[[str], Any], tmp_path: Path
) -> None:
    _, a = hubs.start(roots["good"])
    _, other = hubs.start(roots["other"])
    result = await fetch_file(await dial(a), "f.bin", tmp_path / "o.bin", peers=[(other, await dial(other))])
    assert result.sources[1].dropped == "its file's SHA-256 differs from the authority's"
    assert result.sources[1].chunks == 0 and (await stats(dial, other))["ranges"] == []


async def test_a_faster_source_serves_more_chunks(
    roots: dict[str, Path], hubs: Hubs, dial: Callable[[str], Any], tmp_path: Path
) -> None:
    """Shares follow the rates each source keeps up (proportions within bounds here; the
    ±20 % figure across emulated links is in tests/network and the benchmark)."""
    _, slow = hubs.start(roots["good"], "--delay", "0.012")
    _, fast = hubs.start(roots["good"], "--delay", "0.004")
    result = await fetch_file(await dial(slow), "f.bin", tmp_path / "o.bin", peers=[(fast, await dial(fast))], window=2)
    chunks = [s.chunks for s in result.sources]
    assert chunks[1] >= 2 * chunks[0], chunks  # 3x the rate: at least twice the chunks


def test_chunk_sink_never_writes_a_chunk_that_does_not_match(roots: dict[str, Path], tmp_path: Path) -> None:
    manifest, _ = compute_manifest(roots["good"] / "f.bin")
    bad = (roots["bad"] / "f.bin").read_bytes()

    async def run() -> None:
        sink = ChunkSink(tmp_path / "x.bin", manifest)
        assert len(await sink.open()) == manifest.count
        with pytest.raises(ChunkMismatchError, match=f"chunk {BAD_CHUNK} .* from hub-x"):
            await sink.write_chunk(BAD_CHUNK, bad[BAD_CHUNK * CHUNK : (BAD_CHUNK + 1) * CHUNK], source="hub-x")
        assert await sink.write_chunk(0, bad[:CHUNK])
        await sink.abort()

    asyncio.run(run())
    part = (tmp_path / "x.bin.part").read_bytes()
    assert part[BAD_CHUNK * CHUNK : (BAD_CHUNK + 1) * CHUNK] == bytes(CHUNK)
    assert os.path.getsize(tmp_path / "x.bin.part") == SIZE


async def test_the_rx_form_emits_the_result_and_disposing_cancels(
    roots: dict[str, Path], hubs: Hubs, dial: Callable[[str], Any], tmp_path: Path
) -> None:
    from rxchannel.reactive.fetch import fetch_file as rx_fetch_file

    _, a = hubs.start(roots["good"])
    _, b = hubs.start(roots["good"], "--delay", "0.01")
    peer_a, peer_b = await dial(a), await dial(b)
    got: list[Any] = []
    done = asyncio.Event()
    rx_fetch_file(peer_a, "f.bin", tmp_path / "o.bin", peers=[(b, peer_b)]).subscribe(
        on_next=got.append, on_completed=done.set
    )
    await asyncio.wait_for(done.wait(), 60)
    assert len(got) == 1 and got[0].sha256 == sha256_file(roots["good"] / "f.bin") and len(got[0].sources) == 2
    # disposed mid-way: the fetch stops, its part stays for a resume
    written: list[int] = []
    subscription = rx_fetch_file(
        peer_b, "f.bin", tmp_path / "p.bin", verify="chunks", window=2, progress=lambda done, *_: written.append(done)
    ).subscribe()
    part = tmp_path / "p.bin.part"
    for _ in range(500):
        if len(written) >= 3:
            break
        await asyncio.sleep(0.01)
    subscription.dispose()
    await asyncio.sleep(0.05)
    stopped_at = len(written)
    await asyncio.sleep(0.3)  # the hub sends a chunk every 10 ms: 30 more had the fetch gone on
    assert len(written) == stopped_at < 97, "it stopped"
    assert part.exists() and not (tmp_path / "p.bin").exists()
