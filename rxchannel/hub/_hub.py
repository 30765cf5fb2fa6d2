"""The file-sharing hub: the routes of docs/architecture.md ("The hub's routes") over any
transport, sandboxed to one root.

| route                | interaction      | what                                                     |
|----------------------|------------------|----------------------------------------------------------|
| ``files/<path>``     | request-stream   | the chunks, read on demand; ``{"offset"}`` resumes, ``+"end"`` a range |
| ``manifest/<path>``  | request-response | the file's manifest (a digest per chunk, :mod:`rxchannel.files.manifest`) |
| ``share/<path>``     | request-stream   | the same chunks from one read shared by the workers that ask together |
| ``files``            | request-response | JSON list of ``{"path", "size"}``; ``{"prefix", "cursor", "limit"}`` |
| ``path``             | request-response | ``{"path"}``: the path this connection takes as the hub sees it |
| ``buffers/<path>``   | request-response | the whole file as one payload, up to ``max_buffer`` bytes |
| ``push/<path>``      | request-channel  | the requester streams a file into the inbox; receipt back |
| ``endpoints/<n>/<path>`` | stream, response, channel | an HTTP request to a configured upstream (:mod:`.endpoints`) |

Every stream's first item says what it is in its metadata (JSON entry): ``"type"`` is
``"file"`` (``files/``, ``share/``), ``"buffer"`` (``buffers/``) or ``"endpoint"``. The JSON
of a ``files/`` stream (the request, the file info) is :mod:`rxchannel.files.protocol`'s.

A listing comes a page at a time: the reply's metadata (JSON entry) has ``{"next": cursor}``
when more remain (never a silent cut), and ``{"skipped": {reason: count}}`` for names that
cannot be fetched.

Shared reads (``share/<path>``): the workers that ask for one file within
``share_join_window`` seconds of the first get the same chunks from one read of it (a
:class:`~rxchannel.runtime.Broadcast`): the file is read at the pace of their demand, at
most ``share_max_lag`` chunks ahead of the slowest, and that many chunks is all the hub
keeps. A worker that asks once the read has moved on gets ERROR :data:`JOINED_LATE`, and
one that has held the others back for ``share_patience`` seconds in total is detached
with ERROR :data:`LAGGED`; either continues from its own offset on ``files/<path>``
(``fetch_file(..., shared=True)`` does). The stream is exactly a ``files/`` stream (size
first, SHA-256 of the whole file last), and the file must not change while it is read.

Any path that is absolute, contains ``..``, or resolves (symlinks included) outside the
root is refused with ERROR[REJECTED] saying why; error texts name only the requested
relative path, never a local one.

Limits (each refusal names the limit and how to raise it): files open at once
(``max_open_files``), upload size (``max_upload``) and free space left in the inbox
(``min_free``), listing page size (``max_list``). Listings run on a thread of their own,
so many of them cannot starve file reads.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import time
import warnings
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rxchannel.core import ApplicationError, ErrorCode, request_metadata
from rxchannel.fanout.broadcast import Broadcast, Subscription
from rxchannel.files._common import IntegrityError
from rxchannel.files.listing import list_page
from rxchannel.files.manifest import ManifestCache
from rxchannel.files.protocol import RESUME_SHAPE, FileRequest
from rxchannel.files.sandbox import resolve_inside
from rxchannel.files.sink import FileSink, TargetExistsError, TooLargeError
from rxchannel.files.source import FileSource
from rxchannel.runtime import Payload, Request, Router
from rxchannel.runtime.values import as_payload
from rxchannel.transports.admission import PROVEN, Admission, ThrottledLog

from ._parts import HeldFile, InboxBudget, host_of, make_parents, remove_empty
from .endpoints import Endpoint, EndpointLimits, EndpointRoutes
from .limits import LIMIT_NAMES, HubLimits

#: One line per transfer (event ``transfer``) and upload (event ``upload``).
log = logging.getLogger("rxchannel.hub")

#: Partial uploads not written to for this long are removed from the inbox (left by a hub
#: that was killed mid-push; a push that stalls while its hub runs ends after ``upload_idle``).
STALE_UPLOAD = 600.0
#: How often the inbox is swept for such partials (at the next push after this many seconds).
SWEEP_EVERY = 60.0

__all__ = ["HeldFile", "Hub", "HubLimits"]


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def _with_old_limits(limits: HubLimits, old: dict[str, Any]) -> HubLimits:
    """``Hub(root, chunk_size=...)``, the keyword arguments before :class:`HubLimits`: still
    taken for one release, with a warning."""
    if not old:
        return limits
    unknown = sorted(set(old) - LIMIT_NAMES)
    if unknown:
        raise TypeError(f"Hub() got unexpected keyword arguments: {', '.join(unknown)}")
    warnings.warn(
        f"Hub({', '.join(f'{name}=' for name in old)}...) is deprecated: pass limits=HubLimits(...)",
        DeprecationWarning,
        stacklevel=3,
    )
    return limits.replace(**old)


class Hub:
    """Serves the files under ``root`` (and receives pushes into ``inbox``).

    Args:
        inbox: where pushed files go; by default a directory beside the root
            (``<root>.inbox``), so that workers cannot download each other's uploads.
        limits: what the hub allows (:class:`~rxchannel.hub.HubLimits`: chunk size, open
            files, buffers, uploads, shared reads); over a limit, a request is REJECTED with
            a message naming it.
        endpoints: HTTP upstreams served as ``endpoints/<name>/<path>``: ``{"name":
            "http://HOST:PORT[/prefix]"}`` (see :mod:`rxchannel.hub.endpoints`).
        endpoint_limits: sizes and times one endpoint request may take.

    Attributes:
        sources: file sources currently open (tests and benchmarks read their offsets).
        bytes_read: bytes read from files for streams, in all (prefixes hashed to resume included).
        files_opened: file sources opened for streams (a shared read counts once).
        shares: the shared reads under way, by file.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        inbox: str | os.PathLike[str] | None = None,
        limits: HubLimits | None = None,
        endpoints: Mapping[str, str | Endpoint] | None = None,
        endpoint_limits: EndpointLimits | None = None,
        **old_limits: Any,
    ):
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise NotADirectoryError(f"{root} is not a directory")
        self.limits = _with_old_limits(limits or HubLimits(), old_limits)
        default_inbox = self.root.parent / f"{self.root.name}.inbox"
        self.inbox = Path(inbox).resolve() if inbox is not None else default_inbox
        limits = self.limits
        #: file streams accepted and not over yet, by connection: when it is full, a stream
        #: that has waited ``stream_idle`` for demand makes room for a new one
        self.files = Admission(
            "file streams",
            ThrottledLog(log),
            limit=limits.max_open_files,
            per_key=limits.max_files_per_connection,
            limit_hint=", --max-open-files",
            key_name="connection",
            grace=0.0,
        )
        #: whole-file buffers being read or sent (never evicted: a slot lasts until its reply is queued)
        self.buffers = Admission("whole-file buffers", ThrottledLog(log), limit=limits.max_buffers, grace=0.0)
        #: what each address holds in the inbox: its finished pushes (path: size) and unfinished bytes
        self.inbox_budget = InboxBudget(limits.max_upload_per_address)
        self.sources: set[FileSource] = set()
        self.bytes_read = 0
        self.files_opened = 0
        self.shares: dict[Path, Broadcast[Payload]] = {}
        self.uploads: set[Path] = set()
        self._last_sweep = 0.0
        self._lister = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rxchannel-list")
        self.router = Router()
        self.router.stream("files/")(self.stream_file)
        self.router.stream("share/")(self.share_file)
        self.router.response("files")(self.list_files)
        self.router.response("path")(self.path_seen)
        self.router.response("buffers/")(self.buffer)
        #: manifests computed once per file version (route ``manifest/``, announced by ``files/``)
        self.manifests = ManifestCache(base=limits.chunk_size)
        self.router.response("manifest/")(self.manifest)
        self.router.channel("push/")(self.receive_push)
        self.endpoints = EndpointRoutes(endpoints, endpoint_limits)
        self.endpoints.register(self.router)

    @property
    def streams_open(self) -> int:
        """File streams accepted and not over yet."""
        return self.files.total

    @property
    def buffers_in_flight(self) -> int:
        """Whole-file buffers being read or sent."""
        return self.buffers.total

    def first_files(self, limit: int) -> tuple[list[tuple[str, int]], bool]:
        """The first ``limit`` files (``(path, size)``, in the listing's order) and whether
        more remain: what the worker page shows before it has connected (a blocking call)."""
        page = list_page(self.root, limit=min(limit, self.limits.max_list))
        return [(str(e["path"]), int(e["size"])) for e in page.entries], page.next is not None  # type: ignore[call-overload]

    def close(self) -> None:
        """Stop the listing thread (the hub serves no more listings)."""
        self._lister.shutdown(wait=False, cancel_futures=True)

    def _file(self, request: Request, prefix: str) -> Path:
        relative = (request.route or "")[len(prefix) :]
        path = resolve_inside(self.root, relative)
        try:
            is_file = path.is_file()
        except OSError:
            is_file = False
        if not is_file:
            shown = relative[:200]
            if relative and _is_dir(path):
                name = shown.rstrip("/") + "/"
                raise ApplicationError(
                    f"{shown!r} is a directory, not a file: name it {name!r} (with the '/') to fetch the files in it",
                    code=ErrorCode.REJECTED,
                )
            raise ApplicationError(f"no such file: {shown!r}", code=ErrorCode.REJECTED)
        return path

    async def stream_file(self, request: Request) -> HeldFile:
        path = self._file(request, "files/")
        asked = FileRequest.from_bytes(request.data)
        held = self._reserve_file(request)  # first: a stream refused for the budget opens no file
        try:
            source = self._source(path, offset=asked.offset, expect_prefix=asked.sha256, end=asked.end)
        except ValueError as exc:
            raise ApplicationError(str(exc), code=ErrorCode.INVALID) from None
        held.source = source
        started = time.monotonic()

        def logged() -> None:
            sent = source.read_offset - source.offset
            outcome = "complete" if source.finished else "stopped"
            log.info(
                "sent %s to %s: %d bytes from offset %d in %.2f s (%s)",
                source.path.relative_to(self.root),
                request.remote,
                sent,
                source.offset,
                time.monotonic() - started,
                outcome,
                extra={
                    "event": "transfer",
                    "fields": {
                        "path": str(source.path.relative_to(self.root)),
                        "remote": request.remote,
                        "bytes": sent,
                        "offset": source.offset,
                        "seconds": round(time.monotonic() - started, 3),
                        "outcome": outcome,
                    },
                },
            )

        request.on_finish(logged)
        return held

    def _source(
        self, path: Path, *, offset: int = 0, expect_prefix: str | None = None, end: int | None = None
    ) -> FileSource:
        def announce(identity: tuple[int, int, int, int]) -> dict[str, Any] | None:
            manifest = self.manifests.lookup(path, identity)
            return {"manifest": manifest.summary()} if manifest is not None else None

        source = FileSource(
            path,
            chunk_size=self.limits.chunk_size,
            offset=offset,
            expect_prefix=expect_prefix,
            tracker=self.sources,
            on_read=self._count_read,
            end=end,
            announce=announce,
        )
        self.files_opened += 1
        return source

    async def manifest(self, request: Request) -> bytes:
        """The file's manifest (JSON), computed on first request and kept while the file is unchanged."""
        path = self._file(request, "manifest/")
        return (await self.manifests.get(path)).encode()

    def _count_read(self, n: int) -> None:
        self.bytes_read += n

    async def share_file(self, request: Request) -> Subscription[Payload]:
        """Join the shared read of a file (or start one); see the module docstring."""
        path = self._file(request, "share/")
        relative = (request.route or "")[len("share/") :]
        if request.data not in (b"", b"{}"):
            raise ApplicationError(
                f"share/ streams start at the first byte; resume from an offset on files/{relative[:200]} with "
                + RESUME_SHAPE,
                ErrorCode.INVALID,
            )
        self._reserve_file(request)  # released when the stream is over, however it ends (never idle: LAGGED is)
        group = self.shares.get(path)
        if group is None or group.closed:
            group = Broadcast(
                self._source(path),
                max_lag=self.limits.share_max_lag,
                patience=self.limits.share_patience,
                join_window=self.limits.share_join_window,
                name=f"the shared read of {relative[:200]!r}",
                on_close=lambda: self._share_over(path, group),
            )
            self.shares[path] = group
        subscription = group.subscribe()  # JoinedLateError (an ApplicationError) reaches the worker as is
        request.on_finish(subscription.close)  # however the stream ends, even before its first chunk
        return subscription

    def _share_over(self, path: Path, group: Broadcast[Payload] | None) -> None:
        if self.shares.get(path) is group:
            del self.shares[path]

    def _reserve_file(self, request: Request) -> HeldFile:
        """Count one more file stream in (released when the stream is over, or when it made
        room for another after waiting ``stream_idle`` for demand), or refuse it."""
        held = HeldFile(self.limits.stream_idle)
        ticket = self.files.admit(str(id(request.peer)), held.evict, rank=PROVEN)
        if ticket is None:
            if self.files.last_cap == "key":
                raise ApplicationError(
                    f"this connection already has {self.files.by_key[str(id(request.peer))]} file streams open "
                    f"(limit {self.limits.max_files_per_connection} per connection): finish or cancel one first",
                    ErrorCode.REJECTED,
                )
            raise ApplicationError(
                f"the hub has {self.files.total} file streams open (limit {self.limits.max_open_files}, "
                "--max-open-files): try again when a transfer finishes",
                ErrorCode.REJECTED,
            )
        ticket.idle = held.idle
        request.on_finish(ticket.leave)
        return held

    async def path_seen(self, request: Request) -> Payload:
        """The path of the requester's connection as this side sees it: a libwebrtc peer knows
        only its own end of the selected candidate pair, so a worker relayed through the hub's
        TURN allocation sees ``webrtc-host`` where the hub sees ``webrtc-relay``."""
        return Payload(json.dumps({"path": request.path}).encode())

    async def list_files(self, request: Request) -> Payload:
        """A page of the listing; its metadata's JSON entry has ``next`` when more remain."""
        prefix, cursor, limit = "", None, self.limits.max_list
        if request.data:
            try:
                spec = json.loads(request.data)
                prefix, cursor, limit = (
                    spec.get("prefix", ""),
                    spec.get("cursor"),
                    spec.get("limit", self.limits.max_list),
                )
            except (ValueError, AttributeError, RecursionError):
                raise ApplicationError(
                    'request data must be JSON {"prefix": "...", "cursor": "...", "limit": N}', ErrorCode.INVALID
                ) from None
            if not isinstance(prefix, str) or not (cursor is None or isinstance(cursor, str)):
                raise ApplicationError("prefix and cursor must be strings", ErrorCode.INVALID)
            if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= self.limits.max_list:
                raise ApplicationError(f"limit must be an integer in 1..{self.limits.max_list}", ErrorCode.INVALID)
        loop = asyncio.get_running_loop()
        page = await loop.run_in_executor(
            self._lister, lambda: list_page(self.root, prefix=prefix, cursor=cursor, limit=limit)
        )
        info: dict[str, Any] = {}
        if page.next is not None:
            info["next"] = page.next
        if page.skipped:
            info["skipped"] = page.skipped
        return Payload(json.dumps(page.entries).encode(), request_metadata(None, info) if info else None)

    async def buffer(self, request: Request) -> Payload:
        """The whole file as one reply, up to ``max_buffer`` bytes, ``max_buffers`` at a time hub-wide.

        A slot is held from the read until the reply is queued for the transport (and the
        runtime queues a reply only when the connection has room), so a peer that asks
        for buffers and never reads them holds at most its slots, not the hub's memory.
        """
        path = self._file(request, "buffers/")
        size = path.stat().st_size
        if size > self.limits.max_buffer:
            raise ApplicationError(
                f"{path.name} is {size} bytes; buffers are limited to {self.limits.max_buffer}: stream it from files/",
                code=ErrorCode.REJECTED,
            )
        ticket = self.buffers.admit(request.remote, lambda _reason: None, rank=PROVEN)  # proven, never idle
        if ticket is None:
            raise ApplicationError(
                f"the hub is already sending {self.buffers.total} whole-file buffers "
                f"(limit {self.limits.max_buffers}): "
                "stream the file from files/ or try again shortly",
                ErrorCode.REJECTED,
            )
        request.on_finish(ticket.leave)
        data = await asyncio.to_thread(path.read_bytes)
        return Payload(data, request_metadata(None, {"type": "buffer", "size": len(data)}))

    async def receive_push(self, request: Request) -> AsyncIterator[Payload]:
        """Write the requester's items to the inbox, then send one receipt.

        Each upload writes its own private temporary file; the finished file is moved into
        place only if the name is free (decided atomically), so concurrent uploads of one
        name never mix, and the receipt describes exactly the bytes on disk (its SHA-256 is
        the stored file's: the sender compares it with what it sent). The announced
        size (``info["size"]``) is checked against ``max_upload`` and the free space before
        anything is written, and the bytes actually received against ``max_upload`` as
        they arrive.
        """
        relative = (request.route or "")[len("push/") :]
        size = request.info.get("size")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise ApplicationError(
                f"the announced size must be a non-negative integer, got {str(size)[:40]}", ErrorCode.INVALID
            )
        if size is not None and size > self.limits.max_upload:
            raise ApplicationError(
                f"the upload is {size} bytes; this hub accepts at most {self.limits.max_upload} (--max-upload)",
                ErrorCode.REJECTED,
            )
        await asyncio.to_thread(self._prepare_inbox)
        target = resolve_inside(self.inbox, relative)
        await asyncio.to_thread(self._check_room, size or 0)
        address = host_of(request.remote)
        budget = self.inbox_budget
        if budget.limit is not None:
            await asyncio.to_thread(budget.check, address, size or 0)
        if target.exists():
            raise ApplicationError(
                f"inbox/{relative[:200]} already exists: send it under another name (send --name)", ErrorCode.REJECTED
            )
        assert request.inbound is not None
        # a digest the sender announces (a file it pushes as is) is checked here; one that cannot
        # know it in advance (a transformed stream) checks the receipt's instead
        sink = FileSink(
            target, private_part=True, overwrite=False, max_size=self.limits.max_upload, require_digest=False
        )
        created = await asyncio.to_thread(make_parents, target.parent, self.inbox)
        await sink.open()
        self.uploads.add(sink.part)
        items = request.inbound.__aiter__()
        mine = 0  # this push's bytes, counted in what its address holds while it is under way
        try:
            while True:
                try:  # pulling the next one acknowledges the last: writes set the pace
                    async with asyncio.timeout(self.limits.upload_idle):
                        item = await items.__anext__()
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    raise ApplicationError(
                        f"nothing of this upload arrived for {self.limits.upload_idle:.0f} s: it was abandoned and its "
                        "partial file removed; send it again",
                        ErrorCode.REJECTED,
                    ) from None
                if budget.limit is not None:
                    size_now = len(as_payload(item).data)
                    mine += size_now
                    budget.add(address, size_now)
                await sink.write(item)
            digest = await sink.finish()
        except TooLargeError:
            await sink.abort()
            raise ApplicationError(
                f"the upload exceeds {self.limits.max_upload} bytes, the most this hub accepts (--max-upload)",
                ErrorCode.REJECTED,
            ) from None
        except IntegrityError as exc:
            await sink.abort()
            raise ApplicationError(str(exc), code=ErrorCode.INVALID) from None
        except TargetExistsError:
            raise ApplicationError(
                f"inbox/{relative[:200]} already exists (another upload finished first): send it under another name",
                ErrorCode.REJECTED,
            ) from None
        except BaseException:
            await sink.abort()
            await asyncio.to_thread(remove_empty, created)
            raise
        finally:
            self.uploads.discard(sink.part)
            budget.release(address, mine)
        if budget.limit is not None:
            budget.stored(address, target, sink.written)
        log.info(
            "received inbox/%s from %s: %d bytes",
            relative,
            request.remote,
            sink.written,
            extra={"event": "upload", "fields": {"path": relative, "remote": request.remote, "bytes": sink.written}},
        )
        yield Payload(json.dumps({"path": relative, "size": sink.written, "sha256": digest}).encode(), last=True)

    def _prepare_inbox(self) -> None:
        """Create the inbox if needed, and now and then remove partial uploads whose sender vanished."""
        self.inbox.mkdir(parents=True, exist_ok=True)
        now = time.time()
        if now - self._last_sweep < SWEEP_EVERY:
            return
        self._last_sweep = now
        for part in self.inbox.rglob("*.part"):
            try:
                if part not in self.uploads and now - part.stat().st_mtime > STALE_UPLOAD:
                    part.unlink()
            except OSError:
                continue

    def _check_room(self, size: int) -> None:
        free = shutil.disk_usage(self.inbox).free
        if free - size < self.limits.min_free:
            raise ApplicationError(
                f"not enough space for {size} bytes: the hub keeps {self.limits.min_free >> 20} MiB free "
                f"and has {free >> 20} MiB; try later or ask the operator",
                ErrorCode.REJECTED,
            )
