"""A demand-driven file source: one chunk read per item pulled, never ahead of demand.

Wire format of a file stream (route ``files/<path>``): each PAYLOAD's data is a chunk; the
first PAYLOAD's metadata (composite, ``application/json``) has ``{"type": "file", "size", "offset"}`` (and
``"restart"`` when a resume had to start over), the last one's has ``{"sha256"}`` of the
*whole* file, which the receiver checks end to end (:mod:`.protocol` writes and reads them).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, BinaryIO

from rxchannel.core import FILE_CHANGED, ApplicationError, request_metadata
from rxchannel.runtime import Payload

from ._common import CHUNK_SIZE, hash_prefix
from .protocol import FileInfo, digest_info

__all__ = ["FILE_CHANGED", "FileChangedError", "FileSource"]


class FileChangedError(ApplicationError):
    """The file changed on the hub while it was being sent: what was sent is not one version of it.

    Sent to the peer as an application error with code :data:`FILE_CHANGED`; fetching
    again gets the new version (a resume notices that its partial copy no longer
    matches and starts over).
    """

    def __init__(self, message: str):
        super().__init__(message, code=FILE_CHANGED)


#: Linux (4.14+): read only what the page cache holds, never waiting for the disk
_NOWAIT = hasattr(os, "preadv") and hasattr(os, "RWF_NOWAIT")
#: larger chunks are read in a thread anyway (copying and hashing them is worth a thread hop)
_NOWAIT_MAX = 256 * 1024


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
        finished: whether the last chunk was handed over.
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
        on_read: Callable[[int], object] | None = None,
        end: int | None = None,
        announce: Callable[[tuple[int, int, int, int]], dict[str, Any] | None] | None = None,
    ):
        """``tracker``: a set this source is in while it reads (from the first pull until closed);
        ``on_read(n)`` is called for every ``n`` bytes read from the disk (a resumed prefix's
        hashing included), so a hub can count its reads.

        ``end`` makes it a range: bytes ``[offset, end)`` only (``end`` past the file's end
        is its end), with no whole-file digest (nothing hashed: the receiver checks each
        chunk against the file's manifest). ``announce(identity)`` adds entries to the first
        item's metadata for the file as opened (the hub's manifest of that version).

        Raises:
            ValueError: a bad chunk size or offset, or (without ``expect_prefix``) an
                offset past the end of the file.
        """
        if chunk_size <= 0 or offset < 0 or (end is not None and end < offset):
            raise ValueError("chunk_size must be positive, offset non-negative and end not before offset")
        self.path = Path(path)
        self.chunk_size = chunk_size
        self.offset = offset
        self.expect_prefix = expect_prefix
        self.read_offset = offset
        self.chunks_read = 0
        #: set once the last chunk was handed over (False: cancelled or failed before the end)
        self.finished = False
        self.closed = asyncio.Event()
        self._tracker = tracker
        self._on_read = on_read
        self.end = end
        self._announce = announce
        self.size = self.path.stat().st_size
        if offset > self.size and (expect_prefix is None or end is not None):
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
            if self.end is not None:  # a range: checked per chunk by the receiver, nothing to hash
                if offset > self.size:
                    raise FileChangedError(f"{self.path.name} is shorter than the range asked for")
                return handle, snapshot, None, offset, None
            if offset > self.size:
                restart = "the file on the hub is shorter than your partial copy"
            elif offset:
                hash_prefix(handle, offset, digest)
                if self.expect_prefix is not None and digest.hexdigest() != self.expect_prefix:
                    restart = "the file on the hub differs from your partial copy"
            if restart is not None:
                digest, offset = hashlib.sha256(), 0
                handle.seek(0)
            return handle, snapshot, digest, offset, restart
        except BaseException:
            handle.close()
            raise

    def _read(
        self, handle: BinaryIO, size: int, position: int, snapshot: tuple[int, int, int, int], digest: Any
    ) -> bytes:
        """Read and hash one chunk (in a worker thread: hashlib releases the GIL, the loop goes on)."""
        data = os.pread(handle.fileno(), size, position) if size else b""
        self._check(handle, data, size, snapshot)
        if digest is not None:
            digest.update(data)
        return data

    def _read_cached(
        self, handle: BinaryIO, size: int, position: int, snapshot: tuple[int, int, int, int], digest: Any
    ) -> bytes | None:
        """The chunk if the page cache has all of it, read without blocking (RWF_NOWAIT), else None.

        A file being served is usually in the page cache (it was just written, or is read by
        several workers): reading it then costs a syscall, not a round trip through a thread.
        Whatever would wait for the disk still goes to a thread (:meth:`_read`).
        """
        if not _NOWAIT or not 0 < size <= _NOWAIT_MAX:
            return None
        buffer = bytearray(size)
        try:
            got = os.preadv(handle.fileno(), [buffer], position, os.RWF_NOWAIT)
        except OSError:  # EAGAIN: not cached; EOPNOTSUPP: a file system without it
            return None
        if got < size:
            return None  # partly cached (or the file shrank): the thread's read decides
        data = bytes(buffer)
        self._check(handle, data, size, snapshot)
        if digest is not None:
            digest.update(data)
        return data

    def _check(self, handle: BinaryIO, data: bytes, size: int, snapshot: tuple[int, int, int, int]) -> None:
        if len(data) < size or _identity(os.fstat(handle.fileno())) != snapshot:
            raise FileChangedError(
                f"{self.path.name} changed on the hub while it was being sent; fetch it again for its new version"
            )

    async def _chunks(self) -> AsyncIterator[Payload]:
        opened: BinaryIO | None = None
        if self._tracker is not None:
            self._tracker.add(self)
        try:
            handle, snapshot, digest, position, restart = await asyncio.to_thread(self._open)
            opened = handle
            if self._on_read is not None and 0 < self.offset <= self.size and self.end is None:
                self._on_read(self.offset)  # the resumed prefix was read to hash it
            self.offset = self.read_offset = position
            first = True
            stop = self.size if self.end is None else min(self.end, self.size)
            while True:
                size = min(self.chunk_size, stop - position)
                data = self._read_cached(handle, size, position, snapshot, digest)
                if data is None:
                    data = await asyncio.to_thread(self._read, handle, size, position, snapshot, digest)
                position += len(data)
                self.read_offset = position
                self.chunks_read += 1
                if self._on_read is not None:
                    self._on_read(len(data))
                info: dict[str, Any] = {}
                if first:
                    end = None if self.end is None else stop
                    info.update(FileInfo(self.size, self.offset, end, restart).to_info())
                    if self._announce is not None:
                        info.update(self._announce(snapshot) or {})
                last = position >= stop
                if last and digest is not None:
                    info.update(digest_info(digest.hexdigest()))
                self.finished = last  # the runtime does not resume us after the last chunk
                yield Payload(data, request_metadata(None, info) if info else None, last=last)
                first = False
                if last:
                    return
        finally:
            # no await here: a cancellation must not skip any of it (closing a read-only
            # handle is one quick syscall, nothing to flush)
            if opened is not None:
                opened.close()
            self.closed.set()
            if self._tracker is not None:
                self._tracker.discard(self)
