"""Standard output and standard input as a demand-driven sink and source.

A pipe, a socket or a terminal gets an asyncio transport (the loop's own, uvloop's too),
so a full pipe is a ``drain()`` that waits and a reader that went away is an error at
once; a regular file (``> out.bin``, ``< in.bin``) is written or read in a worker thread,
a chunk at a time, since the OS never makes a file wait for a reader.

The standard stream's file descriptor stays open; a duplicate of it is what the
transport owns and closes. Its non-blocking mode, which a transport sets on the open
file that the shell and other processes may share, is put back when done.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import AsyncIterator

from rxchannel.files import CHUNK_SIZE
from rxchannel.runtime import Payload

from ._streams import Writer, from_reader

__all__ = ["stdin_source", "stdout_writer"]


def _is_regular(fd: int) -> bool:
    return stat.S_ISREG(os.fstat(fd).st_mode)


class _FileWriter:
    """A regular file as a :class:`~._streams.Writer`: ``drain()`` writes what was given in a thread."""

    def __init__(self, fd: int):
        self._fd = fd
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        self._pending.append(bytes(data))

    async def drain(self) -> None:
        data, self._pending = b"".join(self._pending), []
        if data:
            await asyncio.to_thread(_write_all, self._fd, data)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@contextlib.asynccontextmanager
async def stdout_writer(fd: int = 1) -> AsyncIterator[Writer]:
    """Standard output (or another writable ``fd``) as a :class:`~._streams.Writer` whose
    ``drain()`` returns once the OS has taken everything written.

    On a pipe, socket or terminal it is an :class:`asyncio.StreamWriter` with a write
    buffer limit of zero: a ``drain()`` waits until the bytes are in the pipe, so what
    waits in this process is at most the item being written. Its ``drain()`` raises
    ``BrokenPipeError`` / ``ConnectionResetError`` once the reader is gone
    (:func:`~._streams.to_writer` turns that into :class:`~._streams.PipeClosedError`).
    """
    if _is_regular(fd):
        yield _FileWriter(fd)
        return
    loop = asyncio.get_running_loop()
    blocking = os.get_blocking(fd)
    pipe = os.fdopen(os.dup(fd), "wb", buffering=0)
    try:
        transport, protocol = await loop.connect_write_pipe(
            lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader()), pipe
        )
    except BaseException:
        pipe.close()
        os.set_blocking(fd, blocking)
        raise
    try:
        transport.set_write_buffer_limits(high=0)
        yield asyncio.StreamWriter(transport, protocol, None, loop)  # type: ignore[arg-type]
    finally:
        transport.close()
        with contextlib.suppress(OSError):
            os.set_blocking(fd, blocking)


@contextlib.asynccontextmanager
async def stdin_source(chunk_size: int = CHUNK_SIZE, fd: int = 0) -> AsyncIterator[AsyncIterator[Payload]]:
    """Standard input (or another readable ``fd``) as a source of :class:`Payload` items, read
    only as they are pulled (a chunk of at most ``chunk_size`` bytes per item).

    On a pipe, socket or terminal it is :func:`~._streams.from_reader` over an
    :class:`asyncio.StreamReader` whose ``limit`` is ``chunk_size``: asyncio reads ahead
    at most about two chunks (and one pipe's worth) before it stops reading, so a source
    pulled within a remote's credit leaves the rest in the pipe, and the writer of the
    pipe waits.

    Raises:
        ValueError: ``chunk_size`` is not positive.
    """
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    if _is_regular(fd):
        yield _file_reads(fd, chunk_size)
        return
    loop = asyncio.get_running_loop()
    blocking = os.get_blocking(fd)
    reader = asyncio.StreamReader(limit=chunk_size)
    pipe = os.fdopen(os.dup(fd), "rb", buffering=0)
    try:
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    except BaseException:
        pipe.close()
        os.set_blocking(fd, blocking)
        raise
    try:
        yield from_reader(reader, chunk_size=chunk_size)
    finally:
        transport.close()
        with contextlib.suppress(OSError):
            os.set_blocking(fd, blocking)


async def _file_reads(fd: int, chunk_size: int) -> AsyncIterator[Payload]:
    while data := await asyncio.to_thread(os.read, fd, chunk_size):
        yield Payload(data)
