"""A subprocess as a transform stage (:func:`rxchannel.pipes.through`), with real processes:
what comes out, how it fails, and that it never outlives its stream."""

from __future__ import annotations

import asyncio
import gzip
import os
from asyncio.subprocess import PIPE
from collections.abc import AsyncIterator

import pytest
from reactivex import Observable
from reactivex import operators as ops

from rxchannel import aio
from rxchannel import reactive as rxc
from rxchannel.pipes import ProcessFailedError, Through, through
from rxchannel.runtime import Payload

DATA = os.urandom(1 << 20)


async def chunks(data: bytes, size: int = 64 * 1024, *, closed: list[bool] | None = None) -> AsyncIterator[bytes]:
    try:
        for i in range(0, len(data), size):
            yield data[i : i + size]
    finally:
        if closed is not None:
            closed.append(True)


async def output(stage: Through) -> bytes:
    return b"".join([item.data async for item in stage])


async def test_gzip_and_back() -> None:
    packed = await output(aio.through(["gzip", "-c"], chunks(DATA)))
    assert gzip.decompress(packed) == DATA
    assert await output(through(["gzip", "-dc"], chunks(packed))) == DATA


async def test_a_non_zero_exit_fails_with_the_status_and_the_tail_of_stderr() -> None:
    with pytest.raises(ProcessFailedError) as failed:
        await output(through(["gzip", "-dc"], chunks(b"this is not gzip")))
    assert failed.value.returncode == 1 and "not in gzip format" in str(failed.value)
    assert str(failed.value).startswith("gzip -dc exited with status 1: ")

    noisy = ["sh", "-c", "cat >/dev/null; head -c 100000 /dev/zero | tr '\\0' x >&2; echo the end >&2; exit 3"]
    with pytest.raises(ProcessFailedError) as failed:
        await output(through(noisy, chunks(DATA)))
    assert failed.value.returncode == 3
    assert failed.value.stderr.endswith(b"the end\n") and len(failed.value.stderr) <= 4096  # the tail, bounded

    with pytest.raises(ProcessFailedError, match="was killed by SIGKILL"):
        await output(through(["sh", "-c", "kill -9 $$"], chunks(DATA)))


async def test_a_failing_source_kills_the_process_rather_than_end_its_output() -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield DATA[:1000]
        raise RuntimeError("the source broke")

    stage = through(["gzip", "-c"], broken())
    with pytest.raises(RuntimeError, match="the source broke"):
        await output(stage)  # never a complete-looking gzip of a partial input
    assert stage.process is not None and stage.process.returncode == -9


async def test_a_process_that_stops_reading_closes_the_source_and_its_output_counts() -> None:
    closed: list[bool] = []
    stage = through(["head", "-c", "100"], chunks(DATA * 8, closed=closed))
    assert await output(stage) == DATA[:100]
    assert closed == [True] and stage.fed < len(DATA) * 8  # the source was not read to its end


async def test_leaving_early_terminates_the_process_and_closes_the_source() -> None:
    closed: list[bool] = []
    stage = through(["cat"], chunks(DATA * 64, closed=closed), chunk_size=4096)
    async for _item in stage:
        break
    await stage.aclose()
    assert stage.process is not None and stage.process.returncode is not None
    assert closed == [True]


class Source:
    """A source that says whether it was closed (as a remote stream is cancelled), pulled or not."""

    def __init__(self) -> None:
        self.closed = False

    def __aiter__(self) -> Source:
        return self

    async def __anext__(self) -> bytes:
        return b"x"

    async def aclose(self) -> None:
        self.closed = True


async def test_a_missing_program_is_an_error_and_closes_the_source() -> None:
    source = Source()
    with pytest.raises(FileNotFoundError):
        await output(through(["no-such-program-rxchannel"], source))
    assert source.closed


async def test_arguments_are_checked_when_the_stage_is_built() -> None:
    with pytest.raises(TypeError, match="list of arguments"):
        through("gzip -c", chunks(DATA))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        through([], chunks(DATA))
    with pytest.raises(TypeError, match="list of arguments"):
        rxc.through("gzip -c")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="on_backpressure"):
        Observable().pipe(rxc.through(["cat"]))  # a plain Observable has no demand to pull it by


async def test_the_rx_operator_and_from_reader() -> None:
    last = await rxc.from_iterable([DATA[:300_000], DATA[300_000:]]).pipe(rxc.through(["gzip", "-c"]))
    assert isinstance(last, Payload)
    items = await rxc.from_iterable([DATA]).pipe(rxc.through(["gzip", "-c"]), ops.to_list())
    assert gzip.decompress(b"".join(item.data for item in items)) == DATA

    for facade in ("rx", "aio"):
        zeros = await asyncio.create_subprocess_exec("head", "-c", "300000", "/dev/zero", stdout=PIPE)
        assert zeros.stdout is not None
        if facade == "rx":
            got = await rxc.from_reader(zeros.stdout, chunk_size=50_000).pipe(ops.to_list())
        else:
            got = [item async for item in aio.from_reader(zeros.stdout, chunk_size=50_000)]
        assert b"".join(item.data for item in got) == bytes(300_000)
        assert max(len(item.data) for item in got) <= 50_000
        await zeros.wait()
