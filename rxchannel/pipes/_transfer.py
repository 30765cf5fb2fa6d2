"""Whole-file transfers between a hub and the OS's streams: a hub's file into a writer (a
pipe, standard output), a reader's bytes into a hub's inbox. No temporary file, no resume;
the end-to-end digest is still checked, at the end, after the bytes went out."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from rxchannel.core import MetadataError, parse_request_metadata
from rxchannel.files import IntegrityError, TooLargeError
from rxchannel.runtime import Payload, Peer, as_payload

from ._streams import Writer, aclose, to_writer

__all__ = ["PipeResult", "fetch_to", "push_from"]

#: (bytes so far, total or None, items in flight): the shape of rxchannel.files.Progress
Progress = Callable[[int, int | None, int], None]


@dataclass(frozen=True, slots=True)
class PipeResult:
    """What a transfer to or from an OS stream moved: its size, its SHA-256 (checked against the
    hub's), and how long it took."""

    size: int
    sha256: str
    seconds: float

    @property
    def mb_per_s(self) -> float:
        return self.size / self.seconds / 1e6 if self.seconds > 0 else 0.0


async def fetch_to(
    peer: Peer,
    remote_path: str,
    writer: Writer,
    *,
    window: Any = None,
    progress: Progress | None = None,
    max_size: int | None = None,
) -> PipeResult:
    """Fetch ``files/<remote_path>`` from a hub into ``writer`` (a pipe, a socket, standard output).

    Credit follows ``writer.drain()`` (:func:`~._streams.to_writer`): a slow reader slows
    the hub's reads of the file. The bytes go out as they arrive, so the size and the
    hub's SHA-256 can only be checked at the end: a mismatch raises after the bytes were
    written, and whoever reads them must discard them.

    Raises:
        PipeClosedError: the reader went away (the stream was cancelled on the hub).
        IntegrityError: the bytes written are not the hub's file (size or SHA-256), or
            the hub announced none.
        TooLargeError: the file is larger than ``max_size`` (nothing past it is written).
        RemoteError / ConnectionLostError / ...: as :func:`rxchannel.files.fetch_file`.
    """
    loop = asyncio.get_running_loop()
    start = loop.time()
    stream = peer.request_stream(f"files/{remote_path}", window=window)  # pulling the next frees the last
    check = _Check(remote_path, max_size)

    async def checked() -> AsyncIterator[Payload]:
        try:
            async for item in stream:
                check.item(item)
                yield item
        finally:
            await stream.aclose()  # left early (the reader went away, a check failed): CANCEL

    def written(item: Payload) -> None:
        if progress is not None:
            progress(check.size, check.expected_size, stream.in_flight)

    await to_writer(checked(), writer, on_written=written)
    digest = check.finish()
    return PipeResult(check.size, digest, loop.time() - start)


class _Check:
    """The size and SHA-256 of a file stream's bytes, against what its items announce."""

    def __init__(self, name: str, max_size: int | None):
        self.name, self.max_size = name, max_size
        self.size = 0
        self.expected_size: int | None = None
        self.expected_sha256: str | None = None
        self._digest = hashlib.sha256()
        self._first = True

    def item(self, item: Payload) -> None:
        try:
            info = parse_request_metadata(item.metadata)[1] if item.metadata else {}
        except MetadataError as exc:
            raise IntegrityError(f"unreadable item metadata from the hub: {exc}") from None
        if self._first:
            self._first = False
            size = info.get("size")
            if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
                raise IntegrityError(f"the hub announced an impossible size: {str(size)[:40]}")
            if info.get("offset", 0) != 0:
                raise IntegrityError("the hub started past the beginning of the file, which was not asked for")
            self.expected_size = size
            if size is not None and self.max_size is not None and size > self.max_size:
                raise TooLargeError(f"{self.name} is announced as {size} bytes, more than the {self.max_size} allowed")
        if "sha256" in info:
            self.expected_sha256 = str(info["sha256"])
        self.size += len(item.data)
        if self.max_size is not None and self.size > self.max_size:
            raise TooLargeError(f"{self.name} would exceed {self.max_size} bytes")
        if self.expected_size is not None and self.size > self.expected_size:
            raise IntegrityError(f"the hub sent more than the {self.expected_size} bytes it announced")
        self._digest.update(item.data)

    def finish(self) -> str:
        digest = self._digest.hexdigest()
        if self.expected_size is not None and self.size != self.expected_size:
            raise IntegrityError(
                f"the stream ended at {self.size} of {self.expected_size} bytes: what was written is incomplete"
            )
        if self.expected_sha256 is None:
            raise IntegrityError(f"the hub sent no digest for {self.name}: what was written cannot be verified")
        if digest != self.expected_sha256:
            raise IntegrityError(
                f"SHA-256 mismatch for {self.name}: the {self.size} bytes written are not the hub's file; discard them"
            )
        return digest


async def push_from(
    peer: Peer,
    source: AsyncIterable[Any],
    name: str,
    *,
    progress: Progress | None = None,
) -> tuple[dict[str, Any], PipeResult]:
    """Push ``source``'s bytes (standard input, a socket: its size unknown) into a hub's inbox as
    ``name`` (route ``push/<name>``), pulled only as the hub grants credit.

    Returns:
        the hub's receipt ``{"path", "size", "sha256"}``, and what was read, whose size
        and SHA-256 the receipt was checked against.

    Raises:
        IntegrityError: the hub stored other bytes than those read.
        RemoteError / ConnectionLostError / ...: the hub refused, or the connection failed.
    """
    loop = asyncio.get_running_loop()
    start = loop.time()
    digest = hashlib.sha256()
    sent = 0

    async def counted() -> AsyncIterator[Payload]:
        nonlocal sent
        items = source.__aiter__()
        try:
            async for item in items:
                payload = as_payload(item)
                digest.update(payload.data)
                sent += len(payload.data)
                if progress is not None:
                    progress(sent, None, 0)
                yield payload
        finally:
            await aclose(items)

    replies = [p async for p in peer.request_channel(f"push/{name}", counted())]
    if len(replies) != 1:
        raise IntegrityError(f"expected one receipt from the hub, got {len(replies)} items")
    try:
        receipt: dict[str, Any] = json.loads(replies[0].data)
    except ValueError:
        raise IntegrityError("the hub's receipt is not JSON") from None
    local = digest.hexdigest()
    if not isinstance(receipt, dict) or receipt.get("sha256") != local or receipt.get("size") != sent:
        size = receipt.get("size") if isinstance(receipt, dict) else None
        raise IntegrityError(f"the hub stored {size} bytes with another digest than the {sent} bytes read")
    return receipt, PipeResult(sent, local, loop.time() - start)
