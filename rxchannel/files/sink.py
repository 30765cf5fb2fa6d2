"""A verifying file sink: a partial file, checked, then moved into place atomically."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

from rxchannel.core import LocalProtocolError, MetadataError, RxChannelError
from rxchannel.runtime import Payload

from ._common import IntegrityError, hash_prefix, item_info
from .protocol import FileInfo, announced_digest

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

__all__ = ["FileBusyError", "FileSink", "TargetExistsError", "TooLargeError"]


class TargetExistsError(RxChannelError):
    """The destination already exists and the sink may not replace it (no-clobber)."""


class TooLargeError(RxChannelError):
    """The file is larger than this sink accepts (``max_size``): nothing past it is written."""


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
        max_size: the most bytes this file may have: a larger announced size is refused at
            the first item, and bytes past it as they arrive (:class:`TooLargeError`).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        resume: bool = True,
        require_digest: bool = True,
        private_part: bool = False,
        overwrite: bool = True,
        max_size: int | None = None,
    ):
        self.require_digest = require_digest
        self.path = Path(path)
        self.part = self.path.with_name(self.path.name + ".part")
        self.resume = resume and not private_part
        self.private_part = private_part
        self.overwrite = overwrite
        self.max_size = max_size
        self.offset = 0  # bytes already in the part when opened
        self.written = 0  # bytes written by this sink
        self.expected_size: int | None = None
        self.expected_sha256: str | None = None
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
            await asyncio.to_thread(hash_prefix, handle, self.offset, self._digest)
            await asyncio.to_thread(handle.seek, self.offset)
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
        await self.write_many((item,))

    async def write_many(self, items: Sequence[Payload | bytes]) -> None:
        """Append items in order, in one trip to the disk thread (for a receiver that has several
        at hand). The items before one that is refused are written; the refused one and those
        after it are not.

        Raises:
            IntegrityError: the sender's framing is inconsistent (the part will be set
                aside as ``.corrupt`` by :meth:`abort`).
            TooLargeError: past ``max_size``.
        """
        if self._handle is None:
            raise LocalProtocolError("FileSink.open() first")
        chunks: list[bytes] = []
        try:
            for item in items:
                chunks.append(await self._check(item if isinstance(item, Payload) else Payload(bytes(item)), chunks))
        finally:
            if chunks:
                await self._write(chunks)

    async def _write(self, chunks: list[bytes]) -> None:
        """Write and hash ``chunks`` in a worker thread, counted chunk by chunk.

        A cancelled caller still waits for the thread to finish (then the cancellation goes
        on): otherwise :meth:`abort` would close the handle under a thread still writing to
        it, and ``written`` would not match the part. A chunk that fails to write is not
        counted, the ones before it are.
        """
        handle = self._handle
        assert handle is not None
        wrote = [0]
        # the executor's future itself (no Task, no copied context): this runs once per chunk
        writing = asyncio.get_running_loop().run_in_executor(None, _write_and_hash, handle, self._digest, chunks, wrote)
        try:
            await asyncio.shield(writing)
        except asyncio.CancelledError:
            while not writing.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait({writing})
            if not writing.cancelled():
                writing.exception()  # retrieved: the cancellation is what the caller sees
            raise
        finally:
            self.written += wrote[0]

    async def _check(self, item: Payload, before: list[bytes]) -> bytes:
        """``item``'s data once its metadata and size are checked (``before``: the data
        accepted ahead of it and not written yet)."""
        try:
            info = item_info(item)
        except MetadataError as exc:
            raise self._refuse(f"unreadable item metadata: {exc}") from None
        if self._first:
            self._first = False
            await self._start(info)
        if (digest := announced_digest(info)) is not None:
            self.expected_sha256 = digest
        total = self.offset + self.written + sum(map(len, before)) + len(item.data)
        if self.max_size is not None and total > self.max_size:
            raise TooLargeError(f"{self.path.name} would exceed {self.max_size} bytes")
        if self.expected_size is not None and total > self.expected_size:
            raise self._refuse(f"received {total} bytes for a file announced as {self.expected_size}")
        return item.data

    async def _start(self, info: dict[str, Any]) -> None:
        try:
            first = FileInfo.from_info(info)
        except ValueError as exc:
            raise self._refuse(str(exc)) from None
        size, offset = first.size, first.offset
        if size is not None:
            if self.max_size is not None and size > self.max_size:
                raise TooLargeError(
                    f"{self.path.name} is announced as {size} bytes, more than the {self.max_size} allowed"
                )
            self.expected_size = size
        here = self.offset + self.written
        if offset == 0 and here and first.restart:
            # the sender's file is not the one our part came from: start over (If-Range)
            assert self._handle is not None
            await asyncio.to_thread(self._handle.seek, 0)
            await asyncio.to_thread(self._handle.truncate, 0)
            self._digest = hashlib.sha256()
            self.restarted = first.restart
            self.offset = self.written = 0
        elif offset != here:
            raise self._refuse(f"the sender started at offset {offset}, but {here} bytes are already here")

    def continue_here(self) -> tuple[int, str | None]:
        """Take the rest from another stream (a shared read this worker left early).

        Returns:
            the offset to ask for and the SHA-256 of the bytes before it (None at 0): the
            ``{"offset", "sha256"}`` of a ``files/`` resume. The next item written must be
            that stream's first (its metadata is checked again: size, offset, ``restart``).
        """
        if self._handle is None:
            raise LocalProtocolError("FileSink.open() first")
        self._first = True
        self.expected_sha256 = None
        here = self.offset + self.written
        return here, self._digest.copy().hexdigest() if here else None

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
        (it must not be resumed); a private part, or an empty one (the transfer was refused
        before any byte), is removed.
        """
        handle, self._handle = self._handle, None
        if handle is None:
            return None
        await asyncio.to_thread(_fsync_close, handle)
        if self.private_part:
            await asyncio.to_thread(_unlink, self.part)
            return None
        if self.offset + self.written == 0:  # refused before any byte: leave no empty part behind
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


def _write_and_hash(handle: BinaryIO, digest: Any, chunks: list[bytes], wrote: list[int]) -> None:
    """Write chunks and hash them, in a worker thread (hashlib releases the GIL: the loop goes
    on); ``wrote[0]`` counts the bytes written and hashed so far."""
    for data in chunks:
        handle.write(data)
        digest.update(data)
        wrote[0] += len(data)
