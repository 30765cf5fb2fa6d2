"""The hub's ``share/<path>`` route and ``fetch_file(shared=True)`` (issue 18): workers that ask
together get one read of the file; a late or detached worker continues on ``files/<path>``
from its own offset; every worker's file is verified end to end.

The hub serves real TCP (and WebSocket) connections; a slow worker is one behind a
bandwidth-shaped in-process link (the only way to make one worker of one process slow
without slowing the others).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

import rxchannel as rx
from rxchannel.core import JOINED_LATE, ErrorCode, Role
from rxchannel.files import FILE_CHANGED, fetch_file, sha256_file
from rxchannel.hub import Hub, HubLimits
from rxchannel.runtime import Peer
from rxchannel.transports import memory_pair
from tests.support import eventually, make_file

CHUNK = 16 * 1024
SIZE = 40 * CHUNK + 1234


@pytest.fixture
def root(tmp_path: Path) -> Path:
    make_file(tmp_path / "root" / "f.bin", SIZE, seed=18)
    return tmp_path / "root"


class Hubs:
    """A hub served over a real transport, and peers dialing it (closed at the end)."""

    def __init__(self, hub: Hub, server: rx.Server) -> None:
        self.hub, self.server = hub, server
        self.peers: list[Peer] = []

    async def dial(self) -> Peer:
        peer = await rx.connect(self.server.url)
        self.peers.append(peer)
        return peer

    def slow(self, bandwidth: float) -> Peer:
        """A worker behind a link of ``bandwidth`` bytes/s (in process, same hub)."""
        a, b = memory_pair(bandwidth=bandwidth, receive_buffer=64 * 1024)
        self.peers.append(Peer(b, Role.SERVER, router=self.hub.router))
        client = Peer(a, Role.CLIENT)
        self.peers.append(client)
        return client


@pytest.fixture
async def serve_hub(root: Path) -> AsyncIterator[Callable[..., Any]]:
    opened: list[Hubs] = []

    async def start(transport: str = "tcp", **options: Any) -> Hubs:
        hub = Hub(root, limits=HubLimits(chunk_size=CHUNK, **options))
        hubs = Hubs(hub, await rx.serve(hub.router, transport=transport))
        opened.append(hubs)
        return hubs

    yield start
    for hubs in opened:
        await asyncio.gather(*(p.close() for p in hubs.peers), return_exceptions=True)
        await hubs.server.close()
        hubs.hub.close()


def shared_fetches(hub: Hub, peers: list[Any], prefix: Path, window: int, kept: list[int]) -> list[Any]:
    """``f.bin`` fetched with ``shared=True`` by each of ``peers`` into ``<prefix><i>.bin``;
    after each step, how many chunks each of the hub's shared reads holds is added to ``kept``."""

    def watch(done: int, size: int | None, in_flight: int) -> None:
        kept.extend(group.buffered for group in hub.shares.values())

    return [
        fetch_file(p, "f.bin", prefix.with_name(f"{prefix.name}{i}.bin"), window=window, shared=True, progress=watch)
        for i, p in enumerate(peers)
    ]


@pytest.mark.parametrize("transport", ["tcp", "ws"])
async def test_workers_asking_together_get_one_read_of_the_file_and_each_verifies_it(
    serve_hub: Any, root: Path, tmp_path: Path, transport: str
) -> None:
    hubs = await serve_hub(transport, share_join_window=0.2, share_max_lag=8)
    peers = [await hubs.dial() for _ in range(4)]
    kept: list[int] = []
    results = await asyncio.wait_for(asyncio.gather(*shared_fetches(hubs.hub, peers, tmp_path / "w", 4, kept)), 30)
    expected = sha256_file(root / "f.bin")
    for i, result in enumerate(results):
        assert result.fallback is None and result.shared == SIZE == result.size
        assert result.sha256 == expected == sha256_file(tmp_path / f"w{i}.bin")
    assert hubs.hub.files_opened == 1, "one read for the four workers"
    assert hubs.hub.bytes_read == SIZE, "each byte read from the disk once"
    assert kept and max(kept) <= 8, "the shared read keeps at most max_lag chunks"
    await eventually(lambda: not hubs.hub.shares and not hubs.hub.sources and hubs.hub.streams_open == 0)


async def test_a_slow_worker_is_detached_continues_on_files_and_verifies(
    serve_hub: Any, root: Path, tmp_path: Path
) -> None:
    hubs = await serve_hub(share_join_window=0.2, share_max_lag=4, share_patience=0.3)
    fast = [await hubs.dial() for _ in range(3)]
    slow = hubs.slow(bandwidth=150_000)  # ~9 chunks a second: far behind the others
    kept: list[int] = []
    results = await asyncio.wait_for(
        asyncio.gather(
            *shared_fetches(hubs.hub, fast, tmp_path / "fast", 2, kept),
            fetch_file(slow, "f.bin", tmp_path / "slow.bin", window=2, shared=True),
        ),
        60,
    )
    expected = sha256_file(root / "f.bin")
    *fast_results, slow_result = results
    for i, result in enumerate(fast_results):
        assert result.fallback is None and result.shared == SIZE and result.sha256 == expected
        assert sha256_file(tmp_path / f"fast{i}.bin") == expected
    # the laggard: detached from the shared read, the rest from files/ at its own offset, verified whole
    assert slow_result.fallback is not None and "detached" in slow_result.fallback
    assert 0 < slow_result.shared < SIZE and slow_result.received == SIZE
    assert slow_result.sha256 == expected == sha256_file(tmp_path / "slow.bin")
    assert kept and max(kept) <= 4
    # one shared read, then the laggard's own: its prefix hashed (to check it) and the rest read
    assert hubs.hub.files_opened == 2 and hubs.hub.bytes_read == 2 * SIZE


async def test_a_worker_that_comes_late_reads_on_its_own_and_a_partial_file_skips_sharing(
    serve_hub: Any, root: Path, tmp_path: Path
) -> None:
    hubs = await serve_hub(share_join_window=0.05, share_max_lag=4)
    first = hubs.slow(bandwidth=200_000)
    part = tmp_path / "first.bin.part"
    task = asyncio.ensure_future(fetch_file(first, "f.bin", tmp_path / "first.bin", window=2, shared=True))
    await eventually(lambda: part.exists() and part.stat().st_size >= 8 * CHUNK, what="the first worker's progress")
    late = await hubs.dial()
    with pytest.raises(rx.RemoteError) as refused:
        await late.request_stream("share/f.bin").collect()
    assert refused.value.code == JOINED_LATE and "moved past" in refused.value.message
    result = await fetch_file(late, "f.bin", tmp_path / "late.bin", shared=True)
    assert result.shared == 0 and result.fallback is not None and "moved past" in result.fallback
    assert result.sha256 == sha256_file(root / "f.bin") == sha256_file(tmp_path / "late.bin")
    first_result = await asyncio.wait_for(task, 30)
    assert first_result.shared == SIZE and first_result.sha256 == result.sha256

    # a worker with a partial file resumes it on files/ directly
    (tmp_path / "again.bin.part").write_bytes((root / "f.bin").read_bytes()[: 5 * CHUNK])
    again = await fetch_file(late, "f.bin", tmp_path / "again.bin", shared=True)
    assert again.resumed_from == 5 * CHUNK and again.shared == 0 and again.fallback == "a partial file to resume"
    assert again.sha256 == result.sha256


async def test_share_refuses_bad_requests_with_typed_errors(serve_hub: Any, root: Path) -> None:
    hubs = await serve_hub()
    peer = await hubs.dial()
    cases = [
        ("share/f.bin", b'{"offset": 5}', ErrorCode.INVALID, "resume from an offset on files/"),
        ("share/nope.bin", b"", ErrorCode.REJECTED, "no such file"),
        ("share/../root/f.bin", b"", ErrorCode.REJECTED, ".."),
    ]
    for route, data, code, words in cases:
        with pytest.raises(rx.RemoteError) as refused:
            await peer.request_stream(route, data).collect()
        assert refused.value.code == code and words in refused.value.message, refused.value
    assert hubs.hub.streams_open == 0 and not hubs.hub.shares


async def test_a_file_that_changes_during_a_shared_read_fails_every_worker(
    serve_hub: Any, root: Path, tmp_path: Path
) -> None:
    hubs = await serve_hub(share_join_window=0.05, share_max_lag=4)
    workers = [hubs.slow(bandwidth=200_000) for _ in range(2)]
    tasks = [
        asyncio.ensure_future(fetch_file(p, "f.bin", tmp_path / f"c{i}.bin", window=2, shared=True))
        for i, p in enumerate(workers)
    ]
    await eventually(lambda: hubs.hub.bytes_read >= 6 * CHUNK, what="the shared read under way")
    with open(root / "f.bin", "r+b") as handle:
        handle.seek(SIZE // 2)
        handle.write(b"changed")
    os.utime(root / "f.bin", ns=(1, 1))  # a new modification time even on a coarse clock
    for task in tasks:
        with pytest.raises(rx.RemoteError) as failed:
            await asyncio.wait_for(task, 30)
        assert failed.value.code == FILE_CHANGED
    assert not (tmp_path / "c0.bin").exists() and not (tmp_path / "c1.bin").exists(), "never presented as complete"


def test_fetch_shared_from_the_cli_verifies_and_reports_what_was_shared(root: Path, tmp_path: Path) -> None:
    rx_cmd = [sys.executable, "-m", "rxchannel"]
    hub = subprocess.Popen(
        [*rx_cmd, "serve", str(root), "--port", "0", "--transport", "tcp"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert hub.stdout is not None
        url = hub.stdout.readline().strip()
        workers = [
            subprocess.Popen(
                [*rx_cmd, "fetch", url, "f.bin", "-o", str(tmp_path / f"cli{i}.bin"), "--shared", "--json"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(2)
        ]
        shared = []
        for i, worker in enumerate(workers):
            out, err = worker.communicate(timeout=60)
            assert worker.returncode == 0, err
            summary = json.loads(out)
            assert summary["sha256"] == sha256_file(root / "f.bin") == sha256_file(tmp_path / f"cli{i}.bin")
            assert summary["bytes"] == SIZE
            shared.append(summary["shared_bytes"])
        # the first to ask started the shared read and got all of it; the other joined it, or came
        # late and read on its own: either way its file is whole and verified
        assert max(shared) == SIZE and all(0 <= n <= SIZE for n in shared)
    finally:
        hub.send_signal(signal.SIGTERM)
        hub.wait(timeout=15)
