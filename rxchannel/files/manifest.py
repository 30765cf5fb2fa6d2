"""A file's manifest: its size, a digest per chunk and the digest of the whole file.

The hub computes a file's manifest once, keeps it while the file keeps its identity
(device, inode, size, modification time: what :class:`~.source.FileSource` snapshots),
serves it on route ``manifest/<path>`` and announces it in the first item of a
``files/<path>`` stream (``"manifest": {"id", "chunk_size", "chunks", "algorithm",
"sha256"}``) when it has one. A worker checks every chunk against it as the chunk arrives,
before writing it, whichever source it came from.

Wire form (JSON, the reply's data)::

    {"version": 1, "size": N, "chunk_size": C, "algorithm": "blake3",
     "chunks": ["<64 hex>", ...], "sha256": "<64 hex of the whole file>"}

Chunk ``i`` is bytes ``[i*C, min((i+1)*C, N))``; an empty file has no chunk. Per-chunk
digests are BLAKE3 (the ``blake3`` package, 256-bit output): on the machines this was
measured on it hashes 64 KiB chunks ~4x faster than SHA-256 (docs: the README's
"Verified as it arrives"). The whole-file digest stays SHA-256, the digest every other
part of rxchannel reports.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3

from ._common import CHUNK_SIZE, IntegrityError
from .source import FileChangedError

__all__ = [
    "MANIFEST_ALGORITHM",
    "MAX_MANIFEST_CHUNKS",
    "Manifest",
    "ManifestCache",
    "chunk_digest",
    "compute_manifest",
    "manifest_chunk_size",
]

MANIFEST_ALGORITHM = "blake3"
#: a manifest lists at most this many chunks: larger files get larger chunks (powers of two)
MAX_MANIFEST_CHUNKS = 8192
_HEX = frozenset("0123456789abcdef")

Identity = tuple[int, int, int, int]


def chunk_digest(data: bytes | bytearray | memoryview) -> str:
    """The manifest digest of one chunk (BLAKE3, hex)."""
    return blake3.blake3(data).hexdigest()


def manifest_chunk_size(size: int, base: int = CHUNK_SIZE) -> int:
    """The chunk size of a ``size``-byte file's manifest: ``base``, doubled until it has at most
    :data:`MAX_MANIFEST_CHUNKS` chunks (a 1 GiB file: 128 KiB chunks; a manifest of ~560 KB)."""
    chunk = base
    while -(-size // chunk) > MAX_MANIFEST_CHUNKS:
        chunk *= 2
    return chunk


@dataclass(frozen=True, slots=True)
class Manifest:
    """What a file is, chunk by chunk. Two manifests are the same file iff they are equal."""

    size: int
    chunk_size: int
    chunks: tuple[str, ...]
    sha256: str
    algorithm: str = MANIFEST_ALGORITHM

    @property
    def count(self) -> int:
        """How many chunks the file has."""
        return len(self.chunks)

    def span(self, index: int) -> tuple[int, int]:
        """Byte range ``[start, end)`` of chunk ``index``."""
        start = index * self.chunk_size
        return start, min(start + self.chunk_size, self.size)

    def length(self, index: int) -> int:
        start, end = self.span(index)
        return end - start

    def matches(self, index: int, data: bytes | bytearray | memoryview) -> bool:
        """Whether ``data`` is chunk ``index`` (its length and its digest)."""
        return len(data) == self.length(index) and chunk_digest(data) == self.chunks[index]

    @property
    def id(self) -> str:
        """A short name of this exact manifest (BLAKE3 of its canonical JSON, 32 hex)."""
        return blake3.blake3(self.encode()).hexdigest()[:32]

    def summary(self) -> dict[str, Any]:
        """What a ``files/`` stream announces of it (first item's metadata, key ``"manifest"``)."""
        return {
            "id": self.id,
            "chunk_size": self.chunk_size,
            "chunks": self.count,
            "algorithm": self.algorithm,
            "sha256": self.sha256,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "size": self.size,
            "chunk_size": self.chunk_size,
            "algorithm": self.algorithm,
            "chunks": list(self.chunks),
            "sha256": self.sha256,
        }

    def encode(self) -> bytes:
        """The canonical JSON (sorted keys, no spaces): what the hub sends."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> Manifest:
        """Parse and check a manifest received from a hub.

        Raises:
            IntegrityError: not a manifest, or an inconsistent one (the chunk count does
                not fit the size, a digest is not 64 hex digits, an unknown algorithm).
        """
        try:
            raw = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise IntegrityError(f"the hub sent an unreadable manifest: {exc}") from None
        if not isinstance(raw, dict) or raw.get("version") != 1:
            raise IntegrityError("the hub sent something other than a version-1 manifest")
        size, chunk_size, chunks, whole = raw.get("size"), raw.get("chunk_size"), raw.get("chunks"), raw.get("sha256")
        algorithm = raw.get("algorithm")
        if algorithm != MANIFEST_ALGORITHM:
            raise IntegrityError(f"the manifest's chunks use {str(algorithm)[:20]!r}; this worker knows blake3")
        if not (isinstance(size, int) and _count(size) and isinstance(chunk_size, int) and _count(chunk_size)) or not (
            chunk_size > 0 and isinstance(chunks, list)
        ):
            raise IntegrityError("the manifest's size, chunk size or chunk list is malformed")
        if len(chunks) != -(-size // chunk_size):
            raise IntegrityError(f"the manifest lists {len(chunks)} chunks for {size} bytes in chunks of {chunk_size}")
        if not all(_hex64(c) for c in chunks) or not isinstance(whole, str) or not _hex64(whole):
            raise IntegrityError("the manifest holds a digest that is not 64 hex digits")
        return cls(size, chunk_size, tuple(chunks), whole, algorithm)


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _hex64(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


def identity(st: os.stat_result) -> Identity:
    """What must not change for a manifest to stay valid (as :class:`~.source.FileSource` checks)."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def compute_manifest(
    path: str | os.PathLike[str], *, base: int = CHUNK_SIZE, on_read: Callable[[int], object] | None = None
) -> tuple[Manifest, Identity]:
    """Read a file once and build its manifest (blocking: run it in a thread).

    Returns:
        the manifest and the file identity it describes.

    Raises:
        FileChangedError: the file changed while it was read.
    """
    with open(path, "rb") as handle:
        before = identity(os.fstat(handle.fileno()))
        size = before[2]
        chunk = manifest_chunk_size(size, base)
        whole = hashlib.sha256()
        digests = []
        for start in range(0, size, chunk):
            data = os.pread(handle.fileno(), min(chunk, size - start), start)
            if len(data) != min(chunk, size - start):
                raise FileChangedError(f"{Path(path).name} changed while its manifest was computed")
            whole.update(data)
            digests.append(chunk_digest(data))
            if on_read is not None:
                on_read(len(data))
        if identity(os.fstat(handle.fileno())) != before:
            raise FileChangedError(f"{Path(path).name} changed while its manifest was computed")
    return Manifest(size, chunk, tuple(digests), whole.hexdigest()), before


class ManifestCache:
    """Manifests by file, each kept while its file keeps its identity (bounded, least recent out).

    Two requests for one file while it is being hashed share the one computation.

    Attributes:
        computed: how many manifests were computed (tests check the cache is used).
    """

    def __init__(
        self, *, base: int = CHUNK_SIZE, max_entries: int = 1024, on_read: Callable[[int], object] | None = None
    ):
        self.base = base
        self.max_entries = max_entries
        self.computed = 0
        self._on_read = on_read
        self._entries: OrderedDict[Path, tuple[Identity, Manifest]] = OrderedDict()
        self._pending: dict[tuple[Path, Identity], asyncio.Future[Manifest]] = {}

    def lookup(self, path: Path, ident: Identity) -> Manifest | None:
        """The cached manifest of ``path`` if it was computed for this identity (no I/O)."""
        entry = self._entries.get(path)
        if entry is None or entry[0] != ident:
            return None
        self._entries.move_to_end(path)
        return entry[1]

    async def get(self, path: Path) -> Manifest:
        """The manifest of ``path``, computed (in a thread) if not cached for its current identity.

        Raises:
            FileChangedError: the file kept changing while it was hashed.
            OSError: it cannot be read.
        """
        ident = identity(await asyncio.to_thread(os.stat, path))
        cached = self.lookup(path, ident)
        if cached is not None:
            return cached
        key = (path, ident)
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Manifest] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            manifest = await self._compute(path)
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc if isinstance(exc, Exception) else FileChangedError(str(exc)))
                future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        finally:
            self._pending.pop(key, None)
        future.set_result(manifest)
        return manifest

    async def _compute(self, path: Path) -> Manifest:
        for attempt in range(2):  # a file being written may settle: try once more
            try:
                manifest, ident = await asyncio.to_thread(compute_manifest, path, base=self.base, on_read=self._on_read)
            except FileChangedError:
                if attempt:
                    raise
                continue
            self.computed += 1
            self._entries[path] = (ident, manifest)
            self._entries.move_to_end(path)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
            return manifest
        raise AssertionError("unreachable")  # pragma: no cover
