"""A remote stream into an OS pipe (``aio.to_writer``, ``rxc.RxWriterSink``): credit follows
``drain()``, so a slow reader of the pipe slows the remote file source; a reader that goes
away cancels the remote stream. Real pipes and a real TCP connection; the reader is a thread."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import rxchannel as rx
from rxchannel import aio
from rxchannel import reactive as rxc
from rxchannel.files import FileSource
from rxchannel.operators import request_n
from rxchannel.pipes import PipeClosedError, stdout_writer
from tests.pipes.procfs import pipe_size
from tests.support import eventually, make_file

CHUNK = 64 * 1024
WINDOW = 4


class SlowReader(threading.Thread):
    """Reads the pipe ``fd`` a chunk every 5 ms for ``slow`` bytes, checking after each read that
    the file source has read at most what was taken + the pipe + the window (+ the item in hand);
    then the rest at full speed. With ``stop_after``, closes the pipe after that many bytes."""

    def __init__(self, fd: int, source: FileSource, slow: int, stop_after: int | None = None):
        super().__init__(daemon=True)
        self.fd, self.source, self.slow, self.stop_after = fd, source, slow, stop_after
        self.pipe = pipe_size(fd)
        self.digest = hashlib.sha256()
        self.consumed = 0
        self.worst = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while data := os.read(self.fd, CHUNK):
                self.digest.update(data)
                self.consumed += len(data)
                if self.stop_after is not None and self.consumed >= self.stop_after:
                    break
                if self.consumed < self.slow:
                    ahead = self.source.read_offset - self.consumed
                    assert ahead <= self.pipe + (WINDOW + 1) * CHUNK, f"the source read {ahead} bytes ahead"
                    self.worst = max(self.worst, ahead)
                    time.sleep(0.005)  # the reader's pace
        except BaseException as exc:
            self.error = exc
        finally:
            os.close(self.fd)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[rx.Peer, list[FileSource], bytes]]:
    data = make_file(tmp_path / "big.bin", 8 << 20, seed=3)
    sources: list[FileSource] = []
    router = rx.Router()

    @router.stream("big")
    def big(request: rx.Request) -> FileSource:
        sources.append(FileSource(tmp_path / "big.bin"))
        return sources[-1]

    server = await rx.serve_tcp(router)
    try:
        async with await rx.connect_tcp("127.0.0.1", server.port) as peer:
            yield peer, sources, data
    finally:
        await server.close()


async def copy(facade: str, peer: rx.Peer, fd: int) -> int:
    async with stdout_writer(fd) as writer:
        if facade == "aio":
            return await aio.to_writer(aio.request_stream(peer, "big", window=WINDOW), writer)
        sink = rxc.RxWriterSink(writer, window=WINDOW)
        rxc.request_stream(peer, "big").pipe(request_n(sink.demand)).subscribe(sink)
        return await sink.done


async def copying(
    served: tuple[rx.Peer, list[FileSource], bytes], facade: str, **reader: Any
) -> tuple[asyncio.Future[int], SlowReader, int]:
    """The served stream copied by ``facade`` into a pipe whose other end a started
    :class:`SlowReader` (given ``reader``) reads: the copy, the reader and the pipe's write end."""
    peer, sources, _ = served
    read_end, write_end = os.pipe()
    writing = asyncio.ensure_future(copy(facade, peer, write_end))
    await eventually(lambda: bool(sources), what="the stream to open")
    slow_reader = SlowReader(read_end, sources[0], **reader)
    slow_reader.start()
    return writing, slow_reader, write_end


@pytest.mark.parametrize("facade", ["aio", "rx"])
async def test_a_slow_reader_paces_the_remote_file_source(
    served: tuple[rx.Peer, list[FileSource], bytes], facade: str
) -> None:
    data = served[2]
    writing, reader, write_end = await copying(served, facade, slow=2 << 20)
    written = await writing
    os.close(write_end)
    await asyncio.to_thread(reader.join, 30)
    assert reader.error is None, reader.error
    assert written == len(data) and reader.digest.hexdigest() == hashlib.sha256(data).hexdigest()
    assert reader.worst > 0


@pytest.mark.parametrize("facade", ["aio", "rx"])
async def test_a_reader_that_goes_away_cancels_the_remote_stream(
    served: tuple[rx.Peer, list[FileSource], bytes], facade: str
) -> None:
    sources = served[1]
    writing, reader, write_end = await copying(served, facade, slow=0, stop_after=100)  # | head -c 100
    with pytest.raises(PipeClosedError, match="the reader went away"):
        await writing
    os.close(write_end)
    await eventually(sources[0].closed.is_set, what="the remote file source to close")
    assert not sources[0].finished and sources[0].read_offset <= (WINDOW + 2) * CHUNK + reader.pipe
