"""Whole-file transfers over a peer: fetch a hub's file, push one into its inbox."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rxchannel.runtime import Payload, Peer

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
) -> TransferResult:
    """Fetch ``files/<remote_path>`` from a hub into ``out``, verified; resumes from ``out.part``.

    An item is acknowledged (freeing credit) only once it is written, so the writer's
    speed, not the network's, sets the pace. ``max_size`` caps what the hub can make us
    write (a hub announcing 2^60 bytes, or none, is stopped there).

    Raises:
        RemoteError: the hub refused (missing file, path outside its root, ...).
        IntegrityError: size or digest mismatch.
        TooLargeError: the file is larger than ``max_size`` (the ``.part`` is kept).
        ConnectionLostError: the hub went away; the ``.part`` is kept for a resume.
    """
    loop = asyncio.get_running_loop()
    sink = FileSink(out, resume=resume, max_size=max_size)
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
                progress(sink.offset + sink.written, sink.expected_size, stream.in_flight)
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
