"""Whole-file transfers over a peer: list a hub's files, fetch one or a directory, push one."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict, Unpack

from rxchannel.core import JOINED_LATE, LAGGED, MetadataError, RemoteError
from rxchannel.runtime import Payload, Peer, RemoteStream

from ._common import CHUNK_SIZE, FETCH_WINDOW, IntegrityError, item_info, sha256_file
from .protocol import FileRequest, announced_digest
from .sandbox import PathRefusedError, resolve_inside
from .sink import FileSink, TargetExistsError
from .source import FileSource
from .swarm import DEFAULT_STALL_TIMEOUT, SourceReport, fetch_verified

__all__ = [
    "DirectoryResult",
    "Progress",
    "RemoteFile",
    "RemoteListing",
    "TransferResult",
    "fetch_directory",
    "fetch_file",
    "list_remote",
    "push_file",
]


@dataclass(frozen=True, slots=True)
class TransferResult:
    """What a completed transfer produced.

    Attributes:
        path: the verified file.
        size: its size in bytes.
        sha256: its SHA-256 (hex), the hub's and ours.
        received: bytes that crossed the wire this time (less than ``size`` after a resume).
        resumed_from: the offset this fetch resumed from (0: from the start).
        seconds: how long the transfer took.
        restarted: why a resume started over from 0 (the file had changed), if it did.
        shared: a byte count, not a flag: how many of the bytes came from the hub's shared
            read (``share/<path>``, ``fetch_file(..., shared=True)``); ``shared == size``
            means all of them, 0 that none did (not asked for, or a ``.part`` to resume).
        fallback: why the rest came from ``files/<path>`` instead (came late, detached for
            lagging, a partial file to resume), if it did.
        sources: per source, with per-chunk verification (``peers=`` or ``verify="chunks"``);
            empty otherwise.
    """

    path: Path
    size: int
    sha256: str
    received: int
    resumed_from: int
    seconds: float
    restarted: str | None = None
    shared: int = 0
    fallback: str | None = None
    sources: tuple[SourceReport, ...] = ()

    @property
    def mb_per_s(self) -> float:
        return self.received / self.seconds / 1e6 if self.seconds > 0 else 0.0


Progress = Callable[[int, int | None, int], None]  # (bytes so far, total or None, items in flight)


@dataclass(frozen=True, slots=True)
class RemoteFile:
    """A file a hub lists: its path under the hub's root and its size."""

    path: str
    size: int


@dataclass(slots=True)
class DirectoryResult:
    """What :func:`fetch_directory` did, file by file."""

    path: Path
    fetched: list[TransferResult]
    #: files already here with the hub's exact content (checked by digest, not fetched again)
    unchanged: list[Path]
    #: names the hub left out of its listing because they cannot be fetched, by reason
    skipped: dict[str, int]

    @property
    def size(self) -> int:
        return sum(r.size for r in self.fetched)


def _output(out: str | os.PathLike[str], remote_path: str) -> Path:
    """``out``, or ``out/<name>`` when ``out`` is a directory (or ends in a separator)."""
    text = os.fspath(out)
    path = Path(text)
    if text.endswith(("/", os.sep)) or path.is_dir():
        name = remote_path.rstrip("/").rsplit("/", 1)[-1]
        return path / name
    return path


class _Kept(TypedDict):
    """How either sink treats what is already there, and how much it may write."""

    resume: bool
    overwrite: bool
    max_size: int | None


async def fetch_file(
    peer: Peer,
    remote_path: str,
    out: str | os.PathLike[str],
    *,
    window: Any = None,
    resume: bool = True,
    progress: Progress | None = None,
    max_size: int | None = None,
    overwrite: bool = False,
    shared: bool = False,
    peers: Sequence[Peer | tuple[str, Peer]] = (),
    verify: str | None = None,
    stall_timeout: float = DEFAULT_STALL_TIMEOUT,
    feeding: Callable[[int], None] | None = None,
) -> TransferResult:
    """Fetch ``files/<remote_path>`` from a hub into ``out``, verified; resumes from ``out.part``.

    ``out`` may be a directory (existing, or written with a trailing ``/``): the file
    goes into it under its own name. An existing file is never replaced unless
    ``overwrite`` (checked before anything is asked of the hub, and again atomically
    when the verified file is moved into place). An item is acknowledged (freeing
    credit) only once it is written, so the writer's speed, not the network's, sets the
    pace. ``max_size`` caps what the hub can make us write (a hub announcing 2^60 bytes,
    or none, is stopped there).

    ``window`` is the chunks in flight: a number, ``"auto"`` or a replenish policy;
    ``None`` is :data:`FETCH_WINDOW` (8 MiB) from one source, ``"auto"`` per source from
    several.

    ``shared=True`` joins the hub's shared read of the file (``share/<path>``: one read
    for the workers that ask together); if the hub says this worker came late, or
    detaches it for holding the others back, the rest comes from ``files/<path>`` from
    what was written (the hub checks that prefix), and the whole file is verified as
    always. A partial file to resume skips the shared read.

    ``peers`` are more sources of the same file (hubs, or workers serving what they
    fetched), each a :class:`Peer` or ``(name, peer)``: the file is pulled from ``peer`` and
    all of them at once, in disjoint chunk ranges balanced by how fast each one keeps up
    (:mod:`.swarm`). ``peer`` is the authority for the file's manifest; a source whose
    manifest differs is not used, and one that stalls for ``stall_timeout`` seconds, fails
    or sends a chunk that does not match is dropped (its chunks come from the others).
    ``verify="chunks"`` (implied by ``peers``) checks every chunk against the manifest as
    it arrives, before it is written, and a resume keeps exactly the chunks of the
    ``.part`` that still match it; ``verify="file"`` (the default with one source) checks
    the whole file's SHA-256 at the end. ``result.sources`` says what each source did;
    ``feeding(n)`` is told how many sources are streaming as that changes.

    Raises:
        TargetExistsError: ``out`` exists and ``overwrite`` is False.
        RemoteError: the hub refused (missing file, path outside its root, ...); no
            empty ``.part`` is left behind.
        IntegrityError: size or digest mismatch.
        TooLargeError: the file is larger than ``max_size`` (the ``.part`` is kept).
        ConnectionLostError: the hub went away; the ``.part`` is kept for a resume.
    """
    loop = asyncio.get_running_loop()
    out = _output(out, remote_path)
    if not overwrite and out.exists():
        raise TargetExistsError(f"{out} already exists; it was not replaced")
    if verify not in (None, "file", "chunks") or (verify == "file" and peers) or (shared and peers):
        raise ValueError('verify is "file" or "chunks" ("chunks" with peers; shared reads have one source)')
    kept = _Kept(resume=resume, overwrite=overwrite, max_size=max_size)  # for either sink
    if peers or verify == "chunks":
        named = [(_peer_name(peer), peer)] + [p if isinstance(p, tuple) else (_peer_name(p), p) for p in peers]
        start = loop.time()
        chunk_sink, digest, reports = await fetch_verified(
            named,
            remote_path,
            out,
            window=window,
            progress=progress,
            feeding=feeding,
            stall_timeout=stall_timeout,
            **kept,
        )
        return TransferResult(
            path=chunk_sink.path,
            size=chunk_sink.manifest.size,
            sha256=digest,
            received=chunk_sink.written,
            resumed_from=chunk_sink.kept_bytes,
            seconds=loop.time() - start,
            sources=tuple(reports),
        )
    window = FETCH_WINDOW if window is None else window
    sink = FileSink(out, **kept)
    offset = await sink.open()
    start = loop.time()
    received_shared, fallback = 0, None
    try:
        fallback = "a partial file to resume" if shared and offset else None
        if shared and not offset:
            stream = peer.request_stream(f"share/{remote_path}", window=window, auto_ack=False)
            fallback = await _receive(stream, sink, progress, shared=True)
            received_shared = sink.written
        if not shared or fallback is not None:
            # the digest of what we have lets the hub check that it is still a prefix of its file
            here, prefix = sink.continue_here()
            data = FileRequest(here, prefix).to_bytes()
            stream = peer.request_stream(f"files/{remote_path}", data, window=window, auto_ack=False)
            await _receive(stream, sink, progress)
        digest = await sink.finish()
    except BaseException:
        await sink.abort()
        raise
    return TransferResult(
        path=sink.path,
        size=sink.offset + sink.written,
        sha256=digest,
        received=sink.written,
        resumed_from=sink.offset,
        seconds=loop.time() - start,
        restarted=sink.restarted,
        shared=received_shared,
        fallback=fallback,
    )


def _peer_name(peer: Peer) -> str:
    return str(getattr(peer, "url", None) or peer.transport.remote or repr(peer))


class RemoteListing:
    """The files a hub shares under a prefix, as an async iterable of :class:`RemoteFile`.

    After (or during) iteration, :attr:`skipped` counts the names the hub left out of its
    listing because they cannot be fetched, by reason.
    """

    def __init__(self, peer: Peer, prefix: str = "", page_size: int | None = None):
        self.peer, self.prefix, self.page_size = peer, prefix, page_size
        self.skipped: dict[str, int] = {}

    async def __aiter__(self) -> AsyncIterator[RemoteFile]:
        async for page, left_out in _pages(self.peer, self.prefix, self.page_size):
            for reason, count in left_out.items():
                self.skipped[reason] = self.skipped.get(reason, 0) + count
            for entry in page:
                yield entry


def list_remote(peer: Peer, prefix: str = "", *, page_size: int | None = None) -> RemoteListing:
    """The files a hub shares whose path starts with ``prefix``, in the hub's order, a page at a time.

    ``async for entry in list_remote(peer, "data/")``. Names the hub cannot serve are left
    out by the hub and counted in the listing's ``skipped``. Each page is checked: a hub
    that sends something else than ``[{"path", "size"}, ...]``, or cursors that do not
    move forward, is refused.

    Raises (while iterating):
        RemoteError: the hub refused the listing.
        IntegrityError: the hub's listing is malformed.
    """
    return RemoteListing(peer, prefix, page_size)


async def _pages(
    peer: Peer, prefix: str, page_size: int | None
) -> AsyncIterator[tuple[list[RemoteFile], dict[str, int]]]:
    cursor: str | None = None
    while True:
        spec: dict[str, Any] = {"prefix": prefix}
        if cursor is not None:
            spec["cursor"] = cursor
        if page_size is not None:
            spec["limit"] = page_size
        reply = await peer.request_response("files", json.dumps(spec).encode())
        try:
            info = item_info(reply)
            raw = json.loads(reply.data)
        except (MetadataError, ValueError, RecursionError) as exc:
            raise IntegrityError(f"the hub sent an unreadable listing: {exc}") from None
        if not isinstance(raw, list):
            raise IntegrityError("the hub's listing is not a JSON list")
        page = [_remote_file(entry) for entry in raw]
        skipped = info.get("skipped")
        left_out = skipped if isinstance(skipped, dict) else {}
        yield page, {str(k)[:100]: v for k, v in left_out.items() if isinstance(v, int) and not isinstance(v, bool)}
        following = info.get("next")
        if following is None:
            return
        if not isinstance(following, str) or (cursor is not None and following <= cursor) or not page:
            raise IntegrityError("the hub's listing does not move forward (a bad cursor)")
        cursor = following


def _remote_file(entry: object) -> RemoteFile:
    if not isinstance(entry, dict):
        raise IntegrityError("the hub's listing holds something other than {path, size} entries")
    path, size = entry.get("path"), entry.get("size")
    if not isinstance(path, str) or not path or isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise IntegrityError(f"the hub listed an impossible entry: {str(entry)[:100]}")
    return RemoteFile(path, size)


class _EachFile(TypedDict, total=False):
    """What :func:`fetch_directory` passes on to :func:`fetch_file` for every file."""

    window: Any
    resume: bool
    max_size: int | None
    progress: Progress | None


async def fetch_directory(
    peer: Peer, remote_dir: str, out: str | os.PathLike[str], *, overwrite: bool = False, **each: Unpack[_EachFile]
) -> DirectoryResult:
    """Fetch every file under ``remote_dir`` into the directory ``out``, each one verified.

    ``remote_dir`` ``""`` (or ``"/"``, ``"."``) is the hub's whole share.

    Each file is fetched as by :func:`fetch_file`, with the ``window``, ``resume``,
    ``max_size`` and ``progress`` given here, with :func:`fetch_file`'s defaults (so an
    interrupted directory fetch resumes file by file when run again); any other keyword is
    a TypeError at the call. A file already in ``out`` is compared with the
    hub's by digest without transferring it (the hub hashes its copy): the same content
    is kept as is (``unchanged``); a different one is a conflict, and conflicts are
    refused before anything is fetched unless ``overwrite``. Names the hub lists are
    checked to stay inside ``out``.

    Raises:
        TargetExistsError: files in ``out`` differ from the hub's (listed), without ``overwrite``.
        IntegrityError: the listing names a path outside ``remote_dir`` or ``out``.
        RemoteError / ConnectionLostError / ...: as :func:`fetch_file`.
    """
    unknown = each.keys() - _EachFile.__annotations__.keys()
    if unknown:
        raise TypeError(f"fetch_directory() got unexpected keyword argument(s): {', '.join(sorted(unknown))}")
    # "", "/", "." and "./" are the whole share (every file the hub lists)
    prefix = "" if remote_dir.strip("/") in ("", ".") else remote_dir.rstrip("/") + "/"
    root = Path(out)
    plan: list[tuple[RemoteFile, Path]] = []
    listing = list_remote(peer, prefix)
    async for entry in listing:
        if not entry.path.startswith(prefix):
            raise IntegrityError(f"the hub listed {entry.path[:200]!r}, which is not under {prefix!r}")
        try:
            plan.append((entry, resolve_inside(root, entry.path[len(prefix) :])))
        except PathRefusedError as exc:
            raise IntegrityError(f"the hub listed a name that cannot be written here: {exc}") from None
    unchanged: list[Path] = []
    conflicts: list[Path] = []
    todo: list[tuple[RemoteFile, Path]] = []
    for entry, local in plan:
        if local.exists():
            if await _same_as_remote(peer, entry, local):
                unchanged.append(local)
                continue
            if not overwrite:
                conflicts.append(local)
                continue
        todo.append((entry, local))
    if conflicts:
        more = f" and {len(conflicts) - 5} more" if len(conflicts) > 5 else ""
        shown = ", ".join(str(p) for p in conflicts[:5]) + more
        raise TargetExistsError(
            f"{len(conflicts)} file(s) already here differ from the hub's: {shown}; nothing was fetched"
        )
    fetched = [await fetch_file(peer, entry.path, local, overwrite=overwrite, **each) for entry, local in todo]
    return DirectoryResult(root, fetched, unchanged, listing.skipped)


async def _same_as_remote(peer: Peer, entry: RemoteFile, local: Path) -> bool:
    """Whether ``local`` has the hub's content: resume at its end and compare the final digest."""
    if not local.is_file() or local.stat().st_size != entry.size:
        return False
    digest = await asyncio.to_thread(sha256_file, local)
    stream = peer.request_stream(f"files/{entry.path}", FileRequest(entry.size, digest).to_bytes(), window=1)
    try:
        async for item in stream:
            info = item_info(item)
            return "restart" not in info and announced_digest(info) == digest and not item.data
        return False
    finally:
        await stream.aclose()


async def _receive(
    stream: RemoteStream, sink: FileSink, progress: Progress | None, *, shared: bool = False
) -> str | None:
    """Write a stream's items to ``sink``, acknowledging each once written.

    One item per trip to the disk thread: writing the items that had arrived together
    (tried, up to 4 and 8 per trip) made fetches sharing a process's disk threads unfair
    (tests/runtime/test_load.py: the first of 20 finished when the others had written 44-64 %
    of theirs instead of 76-86 %) for a gain seen only in pinned A/B pairs (docs/benchmarks.md).

    Returns:
        None when the stream completed; for a shared read the hub ended early (this worker
        came late, or was detached), why.
    """
    try:
        async for item in stream:
            await sink.write(item)
            stream.ack()
            if progress is not None:
                progress(sink.offset + sink.written, sink.expected_size, stream.in_flight)
    except RemoteError as exc:
        if shared and exc.code in (JOINED_LATE, LAGGED):
            return exc.message
        raise
    finally:
        await stream.aclose()
    return None


async def push_file(
    peer: Peer,
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
