"""Composite metadata and routing (RSocket extensions ``CompositeMetadata.md`` and ``Routing.md``).

rxchannel requests carry a composite metadata with a routing entry
(``message/x.rsocket.routing.v0``) and, optionally, an ``application/json`` entry with
per-stream information (size, offset, window hints, digest).
"""

from __future__ import annotations

import json
from typing import Any

from ._errors import ErrorCode, RemoteProtocolError

__all__ = [
    "AUTHENTICATION",
    "COMPOSITE_METADATA",
    "JSON",
    "OCTET_STREAM",
    "ROUTING",
    "MetadataError",
    "decode_composite",
    "decode_route",
    "encode_composite",
    "encode_route",
    "parse_request_metadata",
    "request_metadata",
]

COMPOSITE_METADATA = "message/x.rsocket.composite-metadata.v0"
ROUTING = "message/x.rsocket.routing.v0"
AUTHENTICATION = "message/x.rsocket.authentication.v0"
JSON = "application/json"
OCTET_STREAM = "application/octet-stream"

# The well-known MIME ids this implementation names (WellKnownMimeTypes.md); other ids
# decode as "well-known:0xNN" and round-trip unchanged.
_WELL_KNOWN: dict[int, str] = {
    0x01: "application/cbor",
    0x05: JSON,
    0x06: OCTET_STREAM,
    0x21: "text/plain",
    0x7A: "message/x.rsocket.mime-type.v0",
    0x7B: "message/x.rsocket.accept-mime-types.v0",
    0x7C: AUTHENTICATION,
    0x7D: "message/x.rsocket.tracing-zipkin.v0",
    0x7E: ROUTING,
    0x7F: COMPOSITE_METADATA,
}
_WELL_KNOWN_IDS = {mime: id_ for id_, mime in _WELL_KNOWN.items()}


class MetadataError(RemoteProtocolError):
    """Request metadata that cannot be parsed; the stream is refused with ERROR[INVALID]."""

    def __init__(self, message: str, *, stream_id: int = 0):
        super().__init__(message, code=ErrorCode.INVALID, stream_id=stream_id)


def encode_composite(entries: list[tuple[str, bytes]]) -> bytes:
    """Encode ``[(mime, content), ...]`` as composite metadata."""
    out = bytearray()
    for mime, content in entries:
        if mime.startswith("well-known:"):
            out.append(0x80 | int(mime.split(":", 1)[1], 16))
        elif mime in _WELL_KNOWN_IDS:
            out.append(0x80 | _WELL_KNOWN_IDS[mime])
        else:
            raw = mime.encode("ascii")
            if not 1 <= len(raw) <= 128:
                raise ValueError(f"MIME type {mime!r} must be 1..128 ASCII characters")
            out.append(len(raw) - 1)
            out += raw
        if len(content) > 0xFFFFFF:
            raise ValueError("a composite metadata entry is limited to 16 MiB")
        out += len(content).to_bytes(3, "big")
        out += content
    return bytes(out)


def decode_composite(metadata: bytes) -> list[tuple[str, bytes]]:
    """Decode composite metadata into ``[(mime, content), ...]``.

    Raises:
        MetadataError: truncated or malformed entries.
    """
    entries = []
    i, end = 0, len(metadata)
    while i < end:
        head = metadata[i]
        i += 1
        if head & 0x80:
            mime = _WELL_KNOWN.get(head & 0x7F, f"well-known:0x{head & 0x7F:02x}")
        else:
            mime_len = head + 1
            if i + mime_len > end:
                raise MetadataError("composite metadata: MIME type runs past the end")
            try:
                mime = bytes(metadata[i : i + mime_len]).decode("ascii")
            except UnicodeDecodeError:
                raise MetadataError("composite metadata: MIME type is not ASCII") from None
            i += mime_len
        if i + 3 > end:
            raise MetadataError("composite metadata: entry length runs past the end")
        length = int.from_bytes(metadata[i : i + 3], "big")
        i += 3
        if i + length > end:
            raise MetadataError(f"composite metadata: entry of {length} bytes runs past the end")
        entries.append((mime, bytes(metadata[i : i + length])))
        i += length
    return entries


def encode_route(*tags: str) -> bytes:
    """Encode routing tags (each UTF-8, at most 255 bytes)."""
    out = bytearray()
    for tag in tags:
        raw = tag.encode()
        if not 1 <= len(raw) <= 255:
            raise ValueError(f"route tag {tag[:40]!r}... must be 1..255 bytes of UTF-8")
        out.append(len(raw))
        out += raw
    return bytes(out)


def decode_route(content: bytes) -> list[str]:
    """Decode routing tags. Raises :class:`MetadataError` on malformed content."""
    tags, i = [], 0
    while i < len(content):
        length = content[i]
        i += 1
        if i + length > len(content):
            raise MetadataError("routing metadata: tag runs past the end")
        try:
            tags.append(bytes(content[i : i + length]).decode())
        except UnicodeDecodeError:
            raise MetadataError("routing metadata: tag is not UTF-8") from None
        i += length
    return tags


def request_metadata(route: str | None, info: dict[str, Any] | None = None) -> bytes:
    """Composite metadata for a request: a routing tag and an optional JSON entry."""
    entries = []
    if route is not None:
        entries.append((ROUTING, encode_route(route)))
    if info:
        entries.append((JSON, json.dumps(info, separators=(",", ":")).encode()))
    return encode_composite(entries)


def parse_request_metadata(metadata: bytes | None) -> tuple[str | None, dict[str, Any]]:
    """The route and the JSON information of a request's composite metadata.

    Raises:
        MetadataError: malformed composite metadata, routing, or JSON.
    """
    route: str | None = None
    info: dict[str, Any] = {}
    if not metadata:
        return route, info
    for mime, content in decode_composite(metadata):
        if mime == ROUTING:
            tags = decode_route(content)
            if tags and route is None:
                route = tags[0]
        elif mime == JSON:
            try:
                value = json.loads(content)
            except (ValueError, UnicodeDecodeError):
                raise MetadataError("the application/json metadata entry is not valid JSON") from None
            if not isinstance(value, dict):
                raise MetadataError("the application/json metadata entry must be an object")
            info.update(value)
    return route, info
