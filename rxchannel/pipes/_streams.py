"""Byte streams of the operating system as demand-driven sinks and sources.

* :func:`to_writer` — items into an :class:`asyncio.StreamWriter` (a socket, a pipe, a
  subprocess's stdin): the next item is pulled only once ``drain()`` returned, so the
  reader's pace is the demand (a remote stream's auto-ack: pulling the next item frees
  the credit of the last);
* :func:`from_reader` — an :class:`asyncio.StreamReader` as a source: one read per item
  pulled, so it is read only as far as demand asks (plus the reader's own buffer, which
  asyncio bounds by its ``limit``).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any, Protocol

from rxchannel.core import RxChannelError
from rxchannel.files import CHUNK_SIZE
from rxchannel.runtime import Payload, as_payload

__all__ = ["GONE", "PipeClosedError", "Writer", "aclose", "drain", "from_reader", "to_writer"]

#: what writing to a pipe or socket whose reader went away raises (EPIPE, ECONNRESET)
GONE = (BrokenPipeError, ConnectionResetError)


class PipeClosedError(RxChannelError):
    """The reader of what we write went away (EPIPE: ``| head -c 100`` has had enough, a socket
    was reset). Nothing more can be written; the stream that fed the writer was closed (a
    remote stream was cancelled). Not a failure of the stream: a command stops quietly, as
    ``cat`` does under ``head``."""


class Writer(Protocol):
    """What :func:`to_writer` writes to: the part of :class:`asyncio.StreamWriter` it uses."""

    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...


async def aclose(iterator: object) -> None:
    """Close an async iterator if it can be closed (an async generator, a remote stream)."""
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()


async def drain(writer: Writer, written: int = 0) -> None:
    """``await writer.drain()``; a reader that went away is :class:`PipeClosedError` (``written``:
    the bytes that went out before, for its message)."""
    try:
        await writer.drain()
    except GONE as exc:
        raise PipeClosedError(f"the reader went away after {written} bytes ({exc.__class__.__name__})") from exc


async def to_writer(
    items: AsyncIterable[Any], writer: Writer, *, on_written: Callable[[Payload], object] | None = None
) -> int:
    """Write every item's data to ``writer``, pulling the next item only once ``drain()`` returned.

    With a remote stream (auto-ack) as ``items``, pulling the next item is what frees the
    last one's credit, so credit follows ``drain()``: a slow reader on the other end of a
    pipe or socket slows the remote source, and what is in flight stays within the
    stream's window plus the writer's buffer (its high-water mark) and the OS's.
    ``on_written(item)`` is called after each item was drained. ``items`` is closed when
    this returns or raises (a remote stream left early is cancelled).

    Returns:
        the number of bytes written.

    Raises:
        PipeClosedError: the reader went away (EPIPE, a reset connection); ``items`` was closed.
    """
    written = 0
    iterator = items.__aiter__()
    try:
        async for item in iterator:
            payload = as_payload(item)
            if payload.data:
                writer.write(payload.data)
                await drain(writer, written)
                written += len(payload.data)
            if on_written is not None:
                on_written(payload)
    finally:
        await aclose(iterator)
    return written


def from_reader(reader: Any, *, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[Payload]:
    """An :class:`asyncio.StreamReader` as a source of :class:`Payload` items, one read per pull.

    Each item is what one ``reader.read(chunk_size)`` returns (at most ``chunk_size``
    bytes, as soon as some are there: a trickle is not held back to fill a chunk); the
    source ends at EOF. Nothing is read before an item is pulled, so a source pulled
    within credit (a remote sink's, a producer's) reads the reader only as the remote
    asks; what asyncio reads ahead into the reader is bounded by its ``limit`` (it
    pauses its transport past twice that).

    Raises:
        ValueError: ``chunk_size`` is not positive.
    """
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    return _reads(reader, chunk_size)


async def _reads(reader: Any, chunk_size: int) -> AsyncIterator[Payload]:
    while data := await reader.read(chunk_size):
        yield Payload(data)
