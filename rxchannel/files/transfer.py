"""Whole-file transfers over a peer: fetch a hub's file, push one into its inbox."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rxchannel.core import RemoteError
from rxchannel.runtime import JOINED_LATE, LAGGED, Payload, Peer, RemoteStream

from ._common import CHUNK_SIZE, IntegrityError, sha256_file
from .sink import FileSink
from .source import FileSource

__all__ = ["Progress", "TransferResult", "fetch_file", "push_file"]


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
    shared: int = 0  # bytes received from a shared read (share/<path>)
    fallback: str | None = None  # why the rest came from files/<path> instead (late, or detached), if it did

    @property
    def mb_per_s(self) -> float:
        return self.received / self.seconds / 1e6 if self.seconds > 0 else 0.0


Progress = Callable[[int, int | None, int], None]  # (bytes so far, total or None, items in flight)


async def fetch_file(
    peer: Peer,
    remote_path: str,
    out: str | os.PathLike[str],
    *,
    window: Any = None,
    resume: bool = True,
    progress: Progress | None = None,
    max_size: int | None = None,
    shared: bool = False,
) -> TransferResult:
    """Fetch ``files/<remote_path>`` from a hub into ``out``, verified; resumes from ``out.part``.

    An item is acknowledged (freeing credit) only once it is written, so the writer's
    speed, not the network's, sets the pace. ``max_size`` caps what the hub can make us
    write (a hub announcing 2^60 bytes, or none, is stopped there).

    ``shared=True`` joins the hub's shared read of the file (``share/<path>``: one read
    for the workers that ask together); if the hub says this worker came late, or
    detaches it for holding the others back, the rest comes from ``files/<path>`` from
    what was written (the hub checks that prefix), and the whole file is verified as
    always. A partial file to resume skips the shared read.

    Raises:
        RemoteError: the hub refused (missing file, path outside its root, ...).
        IntegrityError: size or digest mismatch.
        TooLargeError: the file is larger than ``max_size`` (the ``.part`` is kept).
        ConnectionLostError: the hub went away; the ``.part`` is kept for a resume.
    """
    loop = asyncio.get_running_loop()
    sink = FileSink(out, resume=resume, max_size=max_size)
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
            data = json.dumps({"offset": here, "sha256": prefix}).encode() if here else b""
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


async def _receive(
    stream: RemoteStream, sink: FileSink, progress: Progress | None, *, shared: bool = False
) -> str | None:
    """Write a stream's items to ``sink``, acknowledging each once written.

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
