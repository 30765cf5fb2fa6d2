"""Demand-driven file sources and verifying, resumable file sinks.

A :class:`FileSource` reads one chunk per item *pulled*, in a worker thread, so it never
reads ahead of demand: the runtime pulls only when the remote sink has granted credit.
A :class:`FileSink` writes ``<name>.part``, checks size and SHA-256 at the end, fsyncs and
renames atomically; a failed or cancelled transfer leaves the ``.part`` to resume from,
never a file that looks complete.

Wire format of a file stream (route ``files/<path>``): each PAYLOAD's data is a chunk; the
first PAYLOAD's metadata (composite, ``application/json``) has ``{"size", "offset"}``, the
last one's has ``{"sha256"}`` of the *whole* file, which the receiver checks end to end.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ._types import Payload
from .core import RxChannelError, parse_request_metadata, request_metadata
from .core._metadata import MetadataError

__all__ = [  # noqa: F822 - RxFileSink resolves lazily through __getattr__
    "CHUNK_SIZE",
    "RxFileSink",
    "FileSink",
    "FileSource",
    "IntegrityError",
    "TransferResult",
    "fetch_file",
    "push_file",
]

#: Default chunk: 64 KiB of data per item.
CHUNK_SIZE = 64 * 1024
_HASH_BLOCK = 1 << 20


class IntegrityError(RxChannelError):
    """The received file does not match what the sender announced (size or SHA-256)."""


def item_info(payload: Payload) -> dict[str, Any]:
    """The JSON information in an item's metadata (empty when it has none)."""
    if not payload.metadata:
        return {}
    _, info = parse_request_metadata(payload.metadata)
    return info


def _hash_prefix(handle: BinaryIO, length: int, digest: Any) -> None:
    handle.seek(0)
    left = length
    while left > 0:
        block = handle.read(min(_HASH_BLOCK, left))
        if not block:
            raise IntegrityError(f"the file is shorter than the {length} bytes to resume from")
        digest.update(block)
        left -= len(block)


class FileSource:
    """Chunks of a file as an async iterable of :class:`Payload`, read only as pulled.

    The last chunk is marked (``Payload.last``), so a sender completes the stream with it
    and never reads ahead of demand to find the end (``marks_last``).

    Attributes:
        read_offset: how far into the file has been read (for demand bounds in tests).
        closed: set once the file handle is closed (completion, error or cancel).
    """

    #: the last chunk says it is the last: the runtime never pulls ahead of credit
    marks_last = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        chunk_size: int = CHUNK_SIZE,
        offset: int = 0,
        tracker: set[FileSource] | None = None,
    ):
        """``tracker``: a set this source is in while it reads (from the first pull until closed)."""
        if chunk_size <= 0 or offset < 0:
            raise ValueError("chunk_size must be positive and offset non-negative")
        self.path = Path(path)
        self.chunk_size = chunk_size
        self.offset = offset
        self.read_offset = offset
        self.chunks_read = 0
        self.closed = asyncio.Event()
        self._tracker = tracker
        self.size = self.path.stat().st_size
        if offset > self.size:
            raise ValueError(f"offset {offset} is past the end of the file ({self.size} bytes)")

    def __aiter__(self) -> AsyncIterator[Payload]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[Payload]:
        handle: BinaryIO | None = None
        if self._tracker is not None:
            self._tracker.add(self)
        try:
            handle = await asyncio.to_thread(open, self.path, "rb")
            digest = hashlib.sha256()
            if self.offset:
                await asyncio.to_thread(_hash_prefix, handle, self.offset, digest)
            position = self.offset
            first = True
            while True:
                want = min(self.chunk_size, self.size - position)
                data = await asyncio.to_thread(handle.read, want) if want else b""
                if len(data) < want:
                    raise IntegrityError(f"{self.path.name} shrank while being read")
                position += len(data)
                self.read_offset = position
                self.chunks_read += 1
                digest.update(data)
                info: dict[str, Any] = {}
                if first:
                    info.update(size=self.size, offset=self.offset)
                last = position >= self.size
                if last:
                    info["sha256"] = digest.hexdigest()
                yield Payload(data, request_metadata(None, info) if info else None, last=last)
                first = False
                if last:
                    return
        finally:
            if handle is not None:
                await asyncio.to_thread(handle.close)
            self.closed.set()
            if self._tracker is not None:
                self._tracker.discard(self)


@dataclass(frozen=True, slots=True)
class TransferResult:
    """What a completed transfer produced."""

    path: Path
    size: int
    sha256: str
    received: int  # bytes that crossed the wire this time (less than size after a resume)
    resumed_from: int
    seconds: float

    @property
    def mb_per_s(self) -> float:
        return self.received / self.seconds / 1e6 if self.seconds > 0 else 0.0


class FileSink:
    """Writes items to ``<path>.part``, verifies, then renames to ``path``.

    Use :meth:`open`, then :meth:`write` each item (in order), then :meth:`finish`;
    :meth:`abort` on failure keeps the ``.part``.
    """

    def __init__(self, path: str | os.PathLike[str], *, resume: bool = True, require_digest: bool = True):
        """``require_digest=False`` accepts a stream that announces no SHA-256 (a transformed
        stream); size and digest are still checked when the sender announced them."""
        self.require_digest = require_digest
        self.path = Path(path)
        self.part = self.path.with_name(self.path.name + ".part")
        self.resume = resume
        self.offset = 0  # bytes already in .part when opened
        self.written = 0  # bytes written by this sink
        self.expected_size: int | None = None
        self.expected_sha256: str | None = None
        self._digest = hashlib.sha256()
        self._handle: BinaryIO | None = None
        self._first = True

    async def open(self) -> int:
        """Open the ``.part`` (continuing it if resuming); returns the offset to request from."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.resume and self.part.exists():
            self._handle = await asyncio.to_thread(open, self.part, "r+b")
            self.offset = await asyncio.to_thread(os.path.getsize, self.part)
            await asyncio.to_thread(_hash_prefix, self._handle, self.offset, self._digest)
            await asyncio.to_thread(self._handle.seek, self.offset)
        else:
            self._handle = await asyncio.to_thread(open, self.part, "wb")
            self.offset = 0
        return self.offset

    async def write(self, item: Payload | bytes) -> None:
        """Append one item. Raises :class:`IntegrityError` if the sender's framing is inconsistent."""
        if not isinstance(item, Payload):
            item = Payload(bytes(item))
        if self._handle is None:
            raise RuntimeError("FileSink.open() first")
        try:
            info = item_info(item)
        except MetadataError as exc:
            raise IntegrityError(f"unreadable item metadata: {exc}") from None
        if self._first:
            self._first = False
            if "size" in info:
                self.expected_size = int(info["size"])
            if int(info.get("offset", 0)) != self.offset:
                raise IntegrityError(
                    f"the sender started at offset {info.get('offset', 0)}, but {self.offset} bytes are already here"
                )
        if "sha256" in info:
            self.expected_sha256 = str(info["sha256"])
        await asyncio.to_thread(self._handle.write, item.data)
        self._digest.update(item.data)
        self.written += len(item.data)
        total = self.offset + self.written
        if self.expected_size is not None and total > self.expected_size:
            raise IntegrityError(f"received {total} bytes for a file announced as {self.expected_size}")

    async def finish(self) -> str:
        """Verify size and digest, fsync, and rename into place. Returns the SHA-256.

        Raises:
            IntegrityError: incomplete or corrupt; a corrupt ``.part`` is renamed
                ``.corrupt`` (it cannot be resumed), an incomplete one stays.
        """
        assert self._handle is not None
        total = self.offset + self.written
        if self.expected_size is not None and total != self.expected_size:
            await self.abort()
            raise IntegrityError(f"the stream ended at {total} of {self.expected_size} bytes; {self.part.name} kept")
        digest = self._digest.hexdigest()
        missing = self.expected_sha256 is None and self.require_digest
        if missing or (self.expected_sha256 is not None and digest != self.expected_sha256):
            await self.abort()
            corrupt = self.part.with_name(self.path.name + ".corrupt")
            await asyncio.to_thread(os.replace, self.part, corrupt)
            why = "no digest was sent" if self.expected_sha256 is None else "SHA-256 mismatch"
            raise IntegrityError(f"{why} for {self.path.name}: kept as {corrupt.name}; fetch it again")
        handle, self._handle = self._handle, None
        await asyncio.to_thread(_fsync_close, handle)
        await asyncio.to_thread(os.replace, self.part, self.path)
        await asyncio.to_thread(_fsync_dir, self.path.parent)
        return digest

    async def abort(self) -> None:
        """Close, keeping the ``.part`` for a later resume. Idempotent."""
        handle, self._handle = self._handle, None
        if handle is not None:
            await asyncio.to_thread(_fsync_close, handle)


def _fsync_close(handle: BinaryIO) -> None:
    try:
        handle.flush()
        os.fsync(handle.fileno())
    finally:
        handle.close()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


Progress = Callable[[int, int | None, int], None]  # (bytes so far, total or None, items in flight)


async def fetch_file(
    peer: Any,
    remote_path: str,
    out: str | os.PathLike[str],
    *,
    window: Any = None,
    resume: bool = True,
    progress: Progress | None = None,
) -> TransferResult:
    """Fetch ``files/<remote_path>`` from a hub into ``out``, verified; resumes from ``out.part``.

    An item is acknowledged (freeing credit) only once it is written, so the writer's
    speed, not the network's, sets the pace.

    Raises:
        RemoteError: the hub refused (missing file, path outside its root, ...).
        IntegrityError: size or digest mismatch.
        ConnectionLostError: the hub went away; the ``.part`` is kept for a resume.
    """
    loop = asyncio.get_running_loop()
    sink = FileSink(out, resume=resume)
    offset = await sink.open()
    data = json.dumps({"offset": offset}).encode() if offset else b""
    start = loop.time()
    stream = peer.request_stream(f"files/{remote_path}", data, window=window, auto_ack=False)
    try:
        async for item in stream:
            await sink.write(item)
            stream.ack()
            if progress is not None:
                credit = peer.connection.stream(stream.stream_id)
                in_flight = credit.receive_credit.in_flight if credit is not None else 0
                progress(sink.offset + sink.written, sink.expected_size, in_flight)
        digest = await sink.finish()
    except BaseException:
        await sink.abort()
        raise
    finally:
        await stream.aclose()
    return TransferResult(
        path=sink.path,
        size=sink.offset + sink.written,
        sha256=digest,
        received=sink.written,
        resumed_from=offset,
        seconds=loop.time() - start,
    )


async def push_file(
    peer: Any,
    path: str | os.PathLike[str],
    remote_name: str | None = None,
    *,
    chunk_size: int = CHUNK_SIZE,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Push a local file to a hub's inbox (route ``push/<name>``); returns the hub's receipt
    ``{"path", "size", "sha256"}`` after checking it against the local digest.

    Raises:
        IntegrityError: the hub's digest differs from ours.
    """
    source = FileSource(path, chunk_size=chunk_size)
    name = remote_name or source.path.name
    sent = 0

    async def counted() -> AsyncIterator[Payload]:
        nonlocal sent
        async for item in source:
            sent += len(item.data)
            if progress is not None:
                progress(sent, source.size, 0)
            yield item

    replies = [p async for p in peer.request_channel(f"push/{name}", counted(), info={"size": source.size})]
    if len(replies) != 1:
        raise IntegrityError(f"expected one receipt from the hub, got {len(replies)} items")
    receipt: dict[str, Any] = json.loads(replies[0].data)
    local = await asyncio.to_thread(sha256_file, source.path)
    if receipt.get("sha256") != local or receipt.get("size") != source.size:
        raise IntegrityError(f"the hub stored {receipt.get('size')} bytes with a different digest")
    return receipt


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def __getattr__(name: str) -> Any:
    # the ReactiveX sink lives with the Rx facade, so importing files does not import reactivex
    if name == "RxFileSink":
        from .rx import RxFileSink

        return RxFileSink
    raise AttributeError(f"module 'rxchannel.files' has no attribute {name!r}")
