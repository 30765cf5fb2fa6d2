"""A worker asking a hub's endpoint: status and headers first, then the body with demand.

::

    response = await request_endpoint(peer, "api", "/items", query={"limit": "5"})
    print(response.status, response.headers.get("content-type"))
    async for chunk in response:          # each pull frees one credit: the hub reads on
        ...

    items = await (await request_endpoint(peer, "api", "/items")).json()

The stream is a plain request-stream of route ``endpoints/<name>/<path>`` (a
request-channel when ``body`` is an iterable: the upload is streamed with the hub's
demand); :func:`head_of` reads the first item's metadata of any stream, so
``peer.request_stream("endpoints/api/items")`` works as well. A status of 400 or more is
not an exception: the body is the upstream's error page (:meth:`EndpointResponse.raise_for_status`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from rxchannel.core import MetadataError, RxChannelError
from rxchannel.files._common import IntegrityError, item_info
from rxchannel.runtime import Payload, Peer, RemoteStream
from rxchannel.runtime.closing import ClosesOnExit

__all__ = ["EndpointResponse", "EndpointStatusError", "endpoint_route", "head_of", "request_endpoint"]


class EndpointStatusError(RxChannelError):
    """The endpoint answered with a status of 400 or more (:meth:`EndpointResponse.raise_for_status`).

    Attributes:
        status: the HTTP status.
        reason: its reason phrase.
        first_line: the first line of the body (the upstream's message, usually).
    """

    def __init__(self, status: int, reason: str, first_line: str):
        super().__init__(f"HTTP {status} {reason}".rstrip() + (f": {first_line}" if first_line else ""))
        self.status, self.reason, self.first_line = status, reason, first_line


def endpoint_route(name: str, path: str = "") -> str:
    """The route of ``path`` (``/items?x=1``, or ``items``) of the endpoint ``name``."""
    return f"endpoints/{name}/{path.lstrip('/')}"


def head_of(item: Payload) -> dict[str, Any]:
    """What the first item of a hub's stream says about it: ``{"type", "status", "reason",
    "headers", "size"}`` for an endpoint (``{"type": "file", "size", ...}`` for a file).

    Raises:
        IntegrityError: the metadata is unreadable, or not an endpoint's when ``type`` is
            ``endpoint`` (a status that is not an integer, headers that are not strings).
    """
    try:
        info = item_info(item)
    except MetadataError as exc:
        raise IntegrityError(f"the hub sent unreadable metadata: {exc}") from None
    if info.get("type") == "endpoint":
        status, headers = info.get("status"), info.get("headers", {})
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 999:
            raise IntegrityError(f"the hub announced an impossible status: {str(status)[:40]}")
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise IntegrityError("the hub announced headers that are not strings")
    return info


@dataclass(slots=True)
class EndpointResponse(ClosesOnExit):
    """An endpoint's response: the head at once, the body as an async iterator of bytes.

    Iterate it once; each chunk pulled frees one credit, so the hub reads the upstream
    as fast as this loop goes and no faster. Leaving the loop early (or :meth:`aclose`)
    cancels the stream, and the hub aborts its upstream request.

    Attributes:
        status, reason: the upstream's status line.
        headers: its headers the hub passes on (names in lower case).
        size: the body's length when the upstream said (Content-Length), else None.
        info: the whole first metadata (``type``, ``status``, ``headers``, ``size``...).
        stream: the underlying remote stream (its ``in_flight``, for instance).
    """

    status: int
    reason: str
    headers: dict[str, str]
    size: int | None
    info: dict[str, Any]
    stream: RemoteStream = field(repr=False)
    _first: bytes | None = field(default=None, repr=False)
    received: int = 0

    @property
    def ok(self) -> bool:
        """Whether the status is under 400."""
        return self.status < 400

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        first, self._first = self._first, None
        try:
            if first:
                self.received += len(first)
                yield first
            async for item in self.stream:
                if item.data:
                    self.received += len(item.data)
                    yield item.data
        finally:
            await self.stream.aclose()
        if self.size is not None and self.received != self.size:
            raise IntegrityError(f"the endpoint's body ended at {self.received} of the {self.size} bytes announced")

    async def read(self, limit: int | None = None) -> bytes:
        """The whole body (at most ``limit`` bytes: past it the stream is cancelled and
        :class:`ValueError` raised)."""
        parts, total = [], 0
        async for chunk in self:
            total += len(chunk)
            if limit is not None and total > limit:
                await self.aclose()
                raise ValueError(f"the endpoint's body is larger than {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)

    async def text(self, encoding: str = "utf-8") -> str:
        return (await self.read()).decode(encoding)

    async def json(self) -> Any:
        return json.loads(await self.read())

    async def raise_for_status(self) -> None:
        """Raise :class:`EndpointStatusError` (with the body's first line) for a status of 400
        or more; the stream is closed then."""
        if self.ok:
            return
        first = b""
        async for chunk in self:
            first += chunk
            if b"\n" in first or len(first) >= 4096:
                break
        await self.aclose()
        line = first.split(b"\n", 1)[0].decode("utf-8", "replace").strip()[:300]
        raise EndpointStatusError(self.status, self.reason, line)

    async def aclose(self) -> None:
        """Cancel the stream (the hub aborts the upstream request) unless it is over. Idempotent."""
        self._first = None
        await self.stream.aclose()


async def request_endpoint(
    peer: Peer,
    name: str,
    path: str = "",
    *,
    method: str | None = None,
    query: dict[str, str | list[str]] | str | None = None,
    headers: dict[str, str] | None = None,
    body: bytes | AsyncIterable[bytes | Payload] | Iterable[bytes | Payload] | None = None,
    size: int | None = None,
    window: Any = None,
) -> EndpointResponse:
    """Ask endpoint ``name`` of the hub for ``path``; returns once the head has arrived.

    Args:
        method: the HTTP method (default GET; POST with an iterable ``body``).
        query: added to any query in ``path``.
        headers: request headers (the hub passes only its allow-list on).
        body: bytes (sent in the request), or an iterable / async iterable of chunks,
            streamed as a request-channel: a chunk is taken only as the hub grants credit,
            i.e. as it writes them upstream.
        size: the streamed body's length, if known (sent as Content-Length; otherwise chunked).
        window: the body's chunks in flight (an item count, ``"auto"`` or a policy).

    Raises:
        RemoteError: the hub refused (no such endpoint, a path out of it, a limit) or the
            upstream failed (code ``ENDPOINT_FAILED``: refused, timed out, reset).
        IntegrityError: what came back is not an endpoint's response.
    """
    info: dict[str, Any] = {}
    if method is not None:
        info["method"] = method
    if query is not None:
        info["query"] = query
    if headers:
        info["headers"] = headers
    route = endpoint_route(name, path)
    if body is None or isinstance(body, bytes | bytearray | memoryview):
        stream = peer.request_stream(route, bytes(body or b""), info=info, window=window)
    else:
        if size is not None:
            info["size"] = size
        stream = peer.request_channel(route, body, info=info, window=window)
    try:
        first = await stream.next()
    except StopAsyncIteration:
        raise IntegrityError("the hub ended the endpoint's stream without a response") from None
    except BaseException:
        await stream.aclose()
        raise
    try:
        head = head_of(first)
        if head.get("type") != "endpoint":
            raise IntegrityError(f"{route[:200]} is not an endpoint's stream (type {head.get('type')!r})")
    except BaseException:
        await stream.aclose()
        raise
    announced = head.get("size")
    return EndpointResponse(
        status=head["status"],
        reason=str(head.get("reason", "")),
        headers=dict(head.get("headers", {})),
        size=announced if isinstance(announced, int) and not isinstance(announced, bool) else None,
        info=head,
        stream=stream,
        _first=first.data,
    )
