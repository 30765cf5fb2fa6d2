"""A sink that checks each chunk against the file's manifest before writing it into place.

Chunks may arrive in any order (from several sources at once); each is verified and then
written at its own offset of ``<path>.part``, so a chunk that fails its digest never
touches the disk. Resuming re-verifies what is on disk chunk by chunk: whatever matches
the manifest is kept (wherever it is: a partial file with holes resumes too), whatever
does not (a torn write, a byte changed by hand) is fetched again, and nothing else.

The whole file's SHA-256 is computed as its prefix of verified chunks grows (a chunk
written ahead of the prefix is read back from the page cache when the prefix reaches it)
and checked against the manifest's at :meth:`ChunkSink.finish`.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from pathlib import Path
from typing import BinaryIO

from rxchannel.core import LocalProtocolError

from ._common import IntegrityError
from .manifest import Manifest, chunk_digest
from .sink import TargetExistsError, TooLargeError, _fsync_close, _fsync_dir, _lock, _move_into_place, _unlink

__all__ = ["ChunkMismatchError", "ChunkSink"]


class ChunkMismatchError(IntegrityError):
    """A chunk's bytes do not match the manifest: the source sent something else than the file.

    Attributes:
        index: the chunk.
        source: who sent it (a URL, or the name given to the sink).
    """

    def __init__(self, message: str, *, index: int, source: str):
        super().__init__(message)
        self.index, self.source = index, source


class ChunkSink:
    """Writes verified chunks of one file into ``<path>.part``, then moves it into place.

    Use :meth:`open` (returns the chunks still missing), :meth:`write_chunk` for each,
    then :meth:`finish`; :meth:`abort` on failure (the ``.part`` is kept: every chunk in it
    was verified, and is verified again when resumed).

    Args:
        resume: keep what ``<path>.part`` holds that matches the manifest (False: start empty).
        overwrite: replace an existing ``path`` (else :meth:`finish` refuses, atomically).
        max_size: refuse a file larger than this (before anything is written).

    Attributes:
        kept: chunks found verified in the ``.part`` when opened.
        written: bytes written by this sink (verified chunks).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        manifest: Manifest,
        *,
        resume: bool = True,
        overwrite: bool = False,
        max_size: int | None = None,
    ):
        self.path = Path(path)
        self.part = self.path.with_name(self.path.name + ".part")
        self.manifest = manifest
        self.resume = resume
        self.overwrite = overwrite
        self.max_size = max_size
        self.kept = 0
        self.kept_bytes = 0
        self.written = 0
        self._have = bytearray(manifest.count)  # 1: verified and on disk
        self._missing = manifest.count
        self._handle: BinaryIO | None = None
        self._whole = hashlib.sha256()
        self._hashed = 0  # chunks in the whole-file digest (a prefix)
        self._lock = threading.Lock()  # the prefix digest, advanced from several writer threads

    @property
    def complete(self) -> bool:
        return self._missing == 0

    def has(self, index: int) -> bool:
        return bool(self._have[index])

    @property
    def done_bytes(self) -> int:
        """Bytes of the file verified and on disk."""
        return self.kept_bytes + self.written

    async def open(self) -> list[int]:
        """Open (and lock) the partial file, re-verify what it holds; returns the missing chunks in order.

        Raises:
            TooLargeError: the manifest's size exceeds ``max_size``.
            TargetExistsError: ``path`` exists and ``overwrite`` is False.
            FileBusyError: another transfer is writing this file.
        """
        if self.max_size is not None and self.manifest.size > self.max_size:
            raise TooLargeError(
                f"{self.path.name} is announced as {self.manifest.size} bytes, more than the {self.max_size} allowed"
            )
        if not self.overwrite and self.path.exists():
            raise TargetExistsError(f"{self.path} already exists; it was not replaced")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = await asyncio.to_thread(self._open_part)
        self.kept = self.manifest.count - self._missing
        self.kept_bytes = sum(self.manifest.length(i) for i in range(self.manifest.count) if self._have[i])
        return [i for i in range(self.manifest.count) if not self._have[i]]

    def _open_part(self) -> BinaryIO:
        fd = os.open(self.part, os.O_RDWR | os.O_CREAT, 0o644)
        handle = os.fdopen(fd, "r+b")
        try:
            _lock(handle, self.part)
            on_disk = os.fstat(fd).st_size if self.resume else 0
            if not self.resume:
                handle.truncate(0)
            for index in range(self.manifest.count):
                start, end = self.manifest.span(index)
                if end > on_disk:
                    break
                if chunk_digest(os.pread(fd, end - start, start)) == self.manifest.chunks[index]:
                    self._have[index] = 1
                    self._missing -= 1
            if on_disk != self.manifest.size:
                handle.truncate(self.manifest.size)  # a longer part is cut; a shorter one gets holes
            with self._lock:
                self._advance(fd)
            return handle
        except BaseException:
            handle.close()
            raise

    def _advance(self, fd: int, index: int | None = None, data: bytes | None = None) -> None:
        """Extend the whole-file digest over the verified prefix (``data``: chunk ``index``, in hand)."""
        while self._hashed < self.manifest.count and self._have[self._hashed]:
            if self._hashed == index and data is not None:
                self._whole.update(data)
            else:
                start, end = self.manifest.span(self._hashed)
                self._whole.update(os.pread(fd, end - start, start))
            self._hashed += 1

    async def write_chunk(self, index: int, data: bytes | bytearray, *, source: str = "the source") -> bool:
        """Verify chunk ``index`` and write it in place (in a thread). Returns False if it was here already.

        Raises:
            ChunkMismatchError: ``data`` is not that chunk (nothing is written); the message
                names the chunk and ``source``.
        """
        if self._handle is None:
            raise LocalProtocolError("ChunkSink.open() first")
        if not 0 <= index < self.manifest.count:
            raise LocalProtocolError(f"chunk {index} is not in a file of {self.manifest.count} chunks")
        if self._have[index]:
            return False
        new = await asyncio.to_thread(self._verify_and_write, self._handle.fileno(), index, bytes(data), source)
        if new:
            self._missing -= 1
            self.written += len(data)
        return new

    def _verify_and_write(self, fd: int, index: int, data: bytes, source: str) -> bool:
        if not self.manifest.matches(index, data):
            start, end = self.manifest.span(index)
            raise ChunkMismatchError(
                f"chunk {index} (bytes {start}-{end - 1}) from {source} does not match the manifest "
                f"({len(data)} bytes, {self.manifest.algorithm} differs): not written",
                index=index,
                source=source,
            )
        start = index * self.manifest.chunk_size
        view = memoryview(data)
        while view:
            view = view[os.pwrite(fd, view, start + len(data) - len(view)) :]
        with self._lock:
            if self._have[index]:
                return False  # the same chunk from two sources at once: the same bytes, written twice
            self._have[index] = 1  # before advancing: the prefix may now reach past it
            self._advance(fd, index, data)
        return True

    async def finish(self) -> str:
        """Check that every chunk is here and the whole-file SHA-256, fsync, move into place.

        Returns:
            the SHA-256 of the file.

        Raises:
            IntegrityError: chunks are missing (the ``.part`` is kept), or the whole-file
                digest differs from the manifest's (the manifest contradicts itself; the
                part is set aside as ``.corrupt``).
            TargetExistsError: ``overwrite`` is False and ``path`` appeared meanwhile.
        """
        handle = self._handle
        if handle is None:
            raise LocalProtocolError("ChunkSink.open() first")
        if self._missing:
            await self.abort()
            raise IntegrityError(f"{self._missing} of {self.manifest.count} chunks are missing; {self.part.name} kept")
        with self._lock:
            self._advance(handle.fileno())
        digest = self._whole.hexdigest()
        if digest != self.manifest.sha256:
            self._handle = None
            await asyncio.to_thread(_fsync_close, handle)
            corrupt = self.path.with_name(self.path.name + ".corrupt")
            await asyncio.to_thread(os.replace, self.part, corrupt)
            raise IntegrityError(
                f"every chunk of {self.path.name} matches the manifest but the whole file's SHA-256 does not: "
                f"the manifest contradicts itself; kept as {corrupt.name}"
            )
        self._handle = None
        await asyncio.to_thread(_fsync_close, handle)
        try:
            await asyncio.to_thread(_move_into_place, self.part, self.path, self.overwrite)
        except FileExistsError:
            raise TargetExistsError(f"{self.path.name} already exists; it was not replaced") from None
        await asyncio.to_thread(_fsync_dir, self.path.parent)
        return digest

    async def abort(self) -> Path | None:
        """Close after a failure (idempotent); the ``.part`` stays for a resume unless it holds no chunk."""
        handle, self._handle = self._handle, None
        if handle is None:
            return None
        await asyncio.to_thread(_fsync_close, handle)
        if self._missing == self.manifest.count:
            await asyncio.to_thread(_unlink, self.part)
            return None
        return self.part
