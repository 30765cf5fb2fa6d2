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
import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

from ._types import ApplicationError, Payload
from .core import LocalProtocolError, RxChannelError, parse_request_metadata, request_metadata
from .core._metadata import MetadataError

__all__ = [  # noqa: F822 - RxFileSink resolves lazily through __getattr__
    "CHUNK_SIZE",
    "FILE_CHANGED",
    "RxFileSink",
    "FileChangedError",
    "FileSink",
    "FileBusyError",
    "FileSource",
    "IntegrityError",
    "TargetExistsError",
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


class FileChangedError(ApplicationError):
    """The file changed on the hub while it was being sent: what was sent is not one version of it.

    Sent to the peer as an application error with code :data:`FILE_CHANGED`; fetching
    again gets the new version (a resume notices that its partial copy no longer
    matches and starts over).
    """

    def __init__(self, message: str):
        super().__init__(message, code=FILE_CHANGED)


#: Application error code (Protocol.md reserves 0x301..0xFFFFFFFE for applications): the
#: file changed while it was served. Transient: fetching again gets the new version.
FILE_CHANGED = 0x00000301


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    """What must not change while a file is served (as rsync and HTTP validators use)."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class FileSource:
    """Chunks of a file as an async iterable of :class:`Payload`, read only as pulled.

    The last chunk is marked (``Payload.last``), so a sender completes the stream with it
    and never reads ahead of demand to find the end (``marks_last``).

    The file must stay as it was when it was opened: its identity, size and modification
    time are checked after every read (and so after the last one), and a change fails
    the stream with :class:`FileChangedError` rather than sending a mix of two versions.

    Resuming: ``offset`` skips what the receiver has; ``expect_prefix`` is the SHA-256 the
    receiver computed over those bytes. If the file's first ``offset`` bytes differ (it
    changed since the partial copy was made) or the file is now shorter, the source
    starts over at 0 and says so in the first item's metadata (``"restart"``), as an
    HTTP ``If-Range`` that no longer matches returns the whole entity.

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
        expect_prefix: str | None = None,
        tracker: set[FileSource] | None = None,
    ):
        """``tracker``: a set this source is in while it reads (from the first pull until closed).

        Raises:
            ValueError: a bad chunk size or offset, or (without ``expect_prefix``) an
                offset past the end of the file.
        """
        if chunk_size <= 0 or offset < 0:
            raise ValueError("chunk_size must be positive and offset non-negative")
        self.path = Path(path)
        self.chunk_size = chunk_size
        self.offset = offset
        self.expect_prefix = expect_prefix
        self.read_offset = offset
        self.chunks_read = 0
        self.closed = asyncio.Event()
        self._tracker = tracker
        self.size = self.path.stat().st_size
        if offset > self.size and expect_prefix is None:
            raise ValueError(
                f"offset {offset} is past the end of the file ({self.size} bytes): the partial copy is not "
                "of this file; fetch it again without resuming"
            )

    def __aiter__(self) -> AsyncIterator[Payload]:
        return self._chunks()

    def _open(self) -> tuple[BinaryIO, tuple[int, int, int, int], Any, int, str | None]:
        """Open, snapshot the identity, and hash the resumed prefix (in a worker thread)."""
        handle = open(self.path, "rb")  # noqa: SIM115 - closed by _chunks
        try:
            snapshot = _identity(os.fstat(handle.fileno()))
            self.size = snapshot[2]
            digest = hashlib.sha256()
            offset, restart = self.offset, None
            if offset > self.size:
                restart = "the file on the hub is shorter than your partial copy"
            elif offset:
                _hash_prefix(handle, offset, digest)
                if self.expect_prefix is not None and digest.hexdigest() != self.expect_prefix:
                    restart = "the file on the hub differs from your partial copy"
            if restart is not None:
                digest, offset = hashlib.sha256(), 0
                handle.seek(0)
            return handle, snapshot, digest, offset, restart
        except BaseException:
            handle.close()
            raise

    def _read(self, handle: BinaryIO, size: int, snapshot: tuple[int, int, int, int]) -> bytes:
        data = handle.read(size) if size else b""
        if len(data) < size or _identity(os.fstat(handle.fileno())) != snapshot:
            raise FileChangedError(
                f"{self.path.name} changed on the hub while it was being sent; fetch it again for its new version"
            )
        return data

    async def _chunks(self) -> AsyncIterator[Payload]:
        opened: BinaryIO | None = None
        if self._tracker is not None:
            self._tracker.add(self)
        try:
            handle, snapshot, digest, position, restart = await asyncio.to_thread(self._open)
            opened = handle
            self.offset = self.read_offset = position
            first = True
            while True:
                data = await asyncio.to_thread(self._read, handle, min(self.chunk_size, self.size - position), snapshot)
                position += len(data)
                self.read_offset = position
                self.chunks_read += 1
                digest.update(data)
                info: dict[str, Any] = {}
                if first:
                    info.update(size=self.size, offset=self.offset)
                    if restart is not None:
                        info["restart"] = restart
                last = position >= self.size
                if last:
                    info["sha256"] = digest.hexdigest()
                yield Payload(data, request_metadata(None, info) if info else None, last=last)
                first = False
                if last:
                    return
        finally:
            if opened is not None:
                await asyncio.to_thread(opened.close)
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
    restarted: str | None = None  # why a resume started over from 0 (the file had changed), if it did

    @property
    def mb_per_s(self) -> float:
        return self.received / self.seconds / 1e6 if self.seconds > 0 else 0.0


class TargetExistsError(RxChannelError):
    """The destination already exists and the sink may not replace it (no-clobber)."""


class FileBusyError(RxChannelError):
    """Another writer holds the partial file of this destination (two transfers to one file)."""


class FileSink:
    """Writes items to a partial file, verifies them, then moves it into place atomically.

    Use :meth:`open`, then :meth:`write` each item (in order), then :meth:`finish`;
    :meth:`abort` on failure. A resumable sink keeps ``<path>.part`` for the next attempt
    (and locks it while writing, so two transfers to one destination cannot interleave);
    a sink whose data cannot be trusted (the sender sent more than it announced, or the
    digest does not match) sets it aside as ``<path>.corrupt``. Nothing that looks
    complete is ever left unless it was verified.

    Args:
        resume: continue an existing ``<path>.part`` (the fetcher).
        require_digest: refuse a stream that announces no SHA-256 (False for a transformed
            stream; size and digest are still checked when announced).
        private_part: write to a new, exclusively created ``<path>.<random>.part`` that
            no other writer can share (uploads into an inbox); removed on abort.
        overwrite: replace an existing ``path``. If False, :meth:`finish` refuses when
            ``path`` exists, decided atomically when the file is moved into place (of
            two writers finishing together, exactly one wins).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        resume: bool = True,
        require_digest: bool = True,
        private_part: bool = False,
        overwrite: bool = True,
    ):
        self.require_digest = require_digest
        self.path = Path(path)
        self.part = self.path.with_name(self.path.name + ".part")
        self.resume = resume and not private_part
        self.private_part = private_part
        self.overwrite = overwrite
        self.offset = 0  # bytes already in the part when opened
        self.written = 0  # bytes written by this sink
        self.expected_size: int | None = None
        self.expected_sha256: str | None = None
        #: SHA-256 of the bytes already in the part (sent when resuming, so the sender can
        #: tell whether they still match its file), or None when starting from 0
        self.prefix_sha256: str | None = None
        #: why the sender started over instead of resuming (the file changed), or None
        self.restarted: str | None = None
        self._digest = hashlib.sha256()
        self._handle: BinaryIO | None = None
        self._first = True
        self._corrupt = False

    async def open(self) -> int:
        """Open the partial file (continuing it if resuming); returns the offset to request from.

        Raises:
            FileBusyError: another transfer is writing the same destination.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, self.part, self.offset = await asyncio.to_thread(self._open_part)
        self._handle = handle
        if self.offset:
            await asyncio.to_thread(_hash_prefix, handle, self.offset, self._digest)
            await asyncio.to_thread(handle.seek, self.offset)
            self.prefix_sha256 = self._digest.copy().hexdigest()
        return self.offset

    def _open_part(self) -> tuple[BinaryIO, Path, int]:
        if self.private_part:
            fd, name = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".part", dir=self.path.parent)
            return os.fdopen(fd, "r+b"), Path(name), 0
        fd = os.open(self.part, os.O_RDWR | os.O_CREAT, 0o644)
        handle = os.fdopen(fd, "r+b")
        try:
            _lock(handle, self.part)
            if not self.resume:
                handle.truncate(0)
            return handle, self.part, os.fstat(fd).st_size
        except BaseException:
            handle.close()
            raise

    def _refuse(self, message: str) -> IntegrityError:
        self._corrupt = True
        return IntegrityError(message)

    async def write(self, item: Payload | bytes) -> None:
        """Append one item.

        Raises:
            IntegrityError: the sender's framing is inconsistent (the part will be set
                aside as ``.corrupt`` by :meth:`abort`).
        """
        if not isinstance(item, Payload):
            item = Payload(bytes(item))
        if self._handle is None:
            raise LocalProtocolError("FileSink.open() first")
        try:
            info = item_info(item)
        except MetadataError as exc:
            raise self._refuse(f"unreadable item metadata: {exc}") from None
        if self._first:
            self._first = False
            await self._start(info)
        if "sha256" in info:
            self.expected_sha256 = str(info["sha256"])
        await asyncio.to_thread(self._handle.write, item.data)
        self._digest.update(item.data)
        self.written += len(item.data)
        total = self.offset + self.written
        if self.expected_size is not None and total > self.expected_size:
            raise self._refuse(f"received {total} bytes for a file announced as {self.expected_size}")

    async def _start(self, info: dict[str, Any]) -> None:
        size, offset = info.get("size"), info.get("offset", 0)
        if size is not None:
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise self._refuse(f"the sender announced an impossible size: {str(size)[:40]}")
            self.expected_size = size
        if isinstance(offset, bool) or not isinstance(offset, int):
            raise self._refuse(f"the sender announced an impossible offset: {str(offset)[:40]}")
        if offset == 0 and self.offset and info.get("restart"):
            # the sender's file is not the one our part came from: start over (If-Range)
            assert self._handle is not None
            await asyncio.to_thread(self._handle.seek, 0)
            await asyncio.to_thread(self._handle.truncate, 0)
            self._digest = hashlib.sha256()
            self.restarted = str(info["restart"])[:200]
            self.offset = 0
        elif offset != self.offset:
            raise self._refuse(f"the sender started at offset {offset}, but {self.offset} bytes are already here")

    async def finish(self) -> str:
        """Verify size and digest, fsync, and move into place. Returns the SHA-256.

        Raises:
            IntegrityError: incomplete (the part is kept to resume) or corrupt (set
                aside as ``.corrupt``; fetch again).
            TargetExistsError: ``overwrite=False`` and ``path`` exists.
        """
        if self._handle is None:
            raise LocalProtocolError("FileSink.open() first")
        total = self.offset + self.written
        if self.expected_size is not None and total != self.expected_size:
            await self.abort()
            raise IntegrityError(f"the stream ended at {total} of {self.expected_size} bytes; {self.part.name} kept")
        digest = self._digest.hexdigest()
        missing = self.expected_sha256 is None and self.require_digest
        if missing or (self.expected_sha256 is not None and digest != self.expected_sha256):
            self._corrupt = True
            where = await self.abort()
            why = "no digest was sent" if self.expected_sha256 is None else "SHA-256 mismatch"
            kept = f"kept as {where.name}; " if where is not None else ""
            raise IntegrityError(f"{why} for {self.path.name}: {kept}fetch it again")
        handle, self._handle = self._handle, None
        await asyncio.to_thread(_fsync_close, handle)
        try:
            await asyncio.to_thread(_move_into_place, self.part, self.path, self.overwrite)
        except FileExistsError:
            if self.private_part:
                await asyncio.to_thread(_unlink, self.part)
            raise TargetExistsError(f"{self.path.name} already exists; it was not replaced") from None
        await asyncio.to_thread(_fsync_dir, self.path.parent)
        return digest

    async def abort(self) -> Path | None:
        """Close after a failure. Idempotent. Returns where the partial data now is, if kept.

        A resumable part stays for the next attempt; a corrupt one becomes ``.corrupt``
        (it must not be resumed); a private part is removed (an upload cannot resume).
        """
        handle, self._handle = self._handle, None
        if handle is None:
            return None
        await asyncio.to_thread(_fsync_close, handle)
        if self.private_part:
            await asyncio.to_thread(_unlink, self.part)
            return None
        if self._corrupt:
            corrupt = self.path.with_name(self.path.name + ".corrupt")
            await asyncio.to_thread(os.replace, self.part, corrupt)
            return corrupt
        return self.part


def _lock(handle: BinaryIO, part: Path) -> None:
    """Hold an exclusive lock on the part for as long as it is open (released on close)."""
    if fcntl is None:  # pragma: no cover - not POSIX: no lock, as before
        return
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise FileBusyError(
            f"{part.name} is being written by another transfer to the same file; wait for it or choose another output"
        ) from None


def _move_into_place(part: Path, path: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(part, path)
        return
    try:
        os.link(part, path)  # fails if path exists: the no-clobber decision is atomic
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: check, then rename
        if path.exists():
            raise FileExistsError(path) from None
        os.replace(part, path)
        return
    os.unlink(part)


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


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
    # the digest of what we have lets the hub check that it is still a prefix of its file
    data = json.dumps({"offset": offset, "sha256": sink.prefix_sha256}).encode() if offset else b""
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
        resumed_from=sink.offset,
        seconds=loop.time() - start,
        restarted=sink.restarted,
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
