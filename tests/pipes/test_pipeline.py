"""Demand across a subprocess both ways (issue 31): ``file_source → through(["gzip", "-c"]) →
remote_sink`` and back ``request_stream → through(["gzip", "-dc"]) → file``.

Real processes: ``gzip``, and a hub process (``rxchannel serve``) where the point is the
round trip; a remote that grants one item at a time, on a real TCP connection, where the
point is the bound. What gzip has written and read is its ``wchar`` and ``rchar``
(``/proc/PID/io``), sampled while the pipeline runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from reactivex.subject import Subject

import rxchannel as rx
from rxchannel import reactive as rxc
from rxchannel.files import FileSource, sha256_file
from rxchannel.operators import request_n, windowed
from tests.pipes.procfs import io
from tests.support import make_file

RX = [sys.executable, "-m", "rxchannel"]
CHUNK = 64 * 1024
PIPE = 64 * 1024  # Linux's default pipe capacity (the processes here get default pipes)
#: what a stage holds of its process's stdout that nobody asked for: the rest of one read
#: (its transport is paused but while a pull waits), at most a pipe's worth
READ_AHEAD = PIPE


def gzip_children() -> list[int]:
    """The pids of this process's ``gzip`` children."""
    found = []
    for task in os.listdir(f"/proc/{os.getpid()}/task"):
        with open(f"/proc/{os.getpid()}/task/{task}/children") as handle:
            for pid in handle.read().split():
                try:
                    with open(f"/proc/{pid}/comm") as comm:
                        if comm.read().strip() == "gzip":
                            found.append(int(pid))
                except OSError:
                    continue
    return found


class Sampler:
    """Every millisecond while the pipeline runs, calls ``check(gzip)`` with what this process's
    gzip child has read and written (its ``/proc/PID/io``), if one runs."""

    def __init__(self, check: Callable[[dict[str, int]], None]):
        self.check = check
        self.samples = 0
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # gzip has just exited
                (pid,) = gzip_children() or (None,)
                if pid is not None:
                    self.check(io(pid))
            self.samples += 1
            await asyncio.sleep(0.001)

    async def stop(self) -> None:
        """Stop sampling; a bound a sample broke fails here."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Path, int]]:
    base = tmp_path_factory.mktemp("pipeline")
    root = base / "root"
    original = make_file(root / "data.bin", 12 << 20, seed=7)
    (root / "data.bin.gz").write_bytes(gzip.compress(original, compresslevel=1))
    proc = subprocess.Popen(
        [*RX, "serve", str(root), "--port", "0", "--processes", "1", "--transport", "tcp", "--log-level", "warning"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    yield url, root, base / "root.inbox", proc.pid
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0


async def test_gzip_to_a_hub_and_back_through_gunzip(hub: tuple[str, Path, Path, int], tmp_path: Path) -> None:
    url, root, inbox, hub_pid = hub
    async with await rx.connect(url) as peer:
        # there: a file, compressed on its way, into the hub's inbox at the hub's pace
        sink = rxc.remote_sink(peer, "push/data.bin.gz")
        rxc.file_source(root / "data.bin").pipe(rxc.through(["gzip", "-c"]), request_n(sink.demand)).subscribe(sink)
        (receipt,) = await sink.done
        stored = inbox / "data.bin.gz"
        assert json.loads(receipt.data)["sha256"] == sha256_file(stored)
        assert gzip.decompress(stored.read_bytes()) == (root / "data.bin").read_bytes()

        # back: the hub's .gz, decompressed on its way into a file; a slow sink sets the pace
        before = io(hub_pid)["rchar"]
        unpacked = tmp_path / "data.bin"
        file_sink = rxc.RxFileSink(unpacked)
        slow = Subject[int]()
        loop = asyncio.get_running_loop()
        written = [0]

        def acked(n: int) -> None:
            written[0] += n
            loop.call_later(0.002, slow.on_next, n)  # 2 ms a chunk: slower than gzip and the hub

        file_sink.acks.subscribe(acked)
        stream = rxc.request_stream(peer, "files/data.bin.gz")  # its default window: 16 chunks
        stream.pipe(rxc.through(["gzip", "-dc"]), windowed(4, acks=slow)).subscribe(file_sink)
        worst = {"gzip ahead": 0, "hub ahead": 0}

        def check(gunzip: dict[str, int]) -> None:
            hub_read = io(hub_pid)["rchar"] - before
            # gzip's output not yet written to the file: at most the window (4), the one item the
            # demand source holds, asyncio's read-ahead and the pipe
            ahead = gunzip["wchar"] - written[0] * CHUNK
            assert ahead <= (4 + 1) * CHUNK + READ_AHEAD + PIPE, f"gzip -dc wrote {ahead} bytes past the sink's demand"
            # the hub's reads past what gzip took: its stdin pipe, the upstream window (16), the
            # item in hand and what the transport still holds of it (uvloop's may hold a chunk);
            # the hub's socket reads, a few bytes per REQUEST_N, ride along
            hub_ahead = hub_read - gunzip["rchar"]
            assert hub_ahead <= PIPE + (16 + 3) * CHUNK, f"the hub read {hub_ahead} bytes past what gzip took"
            worst["gzip ahead"] = max(worst["gzip ahead"], ahead)
            worst["hub ahead"] = max(worst["hub ahead"], hub_ahead)

        sampler = Sampler(check)
        digest = await file_sink.done
        await sampler.stop()
        assert digest == sha256_file(root / "data.bin") == sha256_file(unpacked)
        assert sampler.samples >= 50
        print(worst, sampler.samples, "samples")


async def test_gzip_never_runs_ahead_of_a_remote_that_grants_one_chunk_at_a_time(tmp_path: Path) -> None:
    """The remote grants one item at a time: gzip -c has never written more than those items,
    the demand source's one held item, asyncio's read-ahead and its stdout pipe; the file
    has never been read more than gzip's stdin pipe and the item in hand past what gzip took."""
    original = make_file(tmp_path / "big.bin", 8 << 20, seed=8)
    received: list[bytes] = []
    granted = [0]
    router = rx.Router()

    @router.channel("slow", window=rx.Manual(0))
    async def slow(request: rx.Request) -> AsyncIterator[bytes]:
        assert request.inbound is not None
        while True:
            granted[0] += 1
            request.inbound.request(1)
            try:
                item = await request.inbound.next()
            except StopAsyncIteration:
                break
            received.append(item.data)
            await asyncio.sleep(0.004)  # a slow remote
        yield b"done"

    server = await rx.serve_tcp(router)
    source = FileSource(tmp_path / "big.bin")
    worst = {"gzip ahead": 0, "file ahead": 0}

    def check(packer: dict[str, int]) -> None:
        ahead = packer["wchar"] - granted[0] * CHUNK
        assert ahead <= CHUNK + READ_AHEAD + PIPE, f"gzip -c wrote {ahead} bytes past the remote's demand"
        # the file read past what gzip took: its stdin pipe, the item the demand source holds, the
        # one being written, and what the transport still holds of it (uvloop's may hold a chunk)
        file_ahead = source.read_offset - packer["rchar"]
        assert file_ahead <= PIPE + 4 * CHUNK, f"the file was read {file_ahead} bytes past what gzip took"
        worst["gzip ahead"] = max(worst["gzip ahead"], ahead)
        worst["file ahead"] = max(worst["file ahead"], file_ahead)

    try:
        async with await rx.connect_tcp("127.0.0.1", server.port) as peer:
            sink = rxc.remote_sink(peer, "slow")
            sampler = Sampler(check)
            rxc.from_async_iterable(source).pipe(rxc.through(["gzip", "-c", "-1"]), request_n(sink.demand)).subscribe(
                sink
            )
            replies: list[Any] = await sink.done
            await sampler.stop()
    finally:
        await server.close()
    assert [r.data for r in replies] == [b"done"]
    assert gzip.decompress(b"".join(received)) == original
    assert hashlib.sha256(gzip.decompress(b"".join(received))).hexdigest() == sha256_file(tmp_path / "big.bin")
    assert sampler.samples >= 50
    print(worst, sampler.samples, "samples")
