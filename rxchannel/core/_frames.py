"""RSocket 1.0 frames: encode and decode (Protocol.md, "Framing" and "Frame Types").

Every frame is a frozen dataclass; :func:`decode_frame` turns the bytes of exactly one
frame into one of them or raises :class:`FrameDecodeError`; :func:`encode_frame` does
the reverse. Length prefixes (the TCP binding) live in :mod:`._framing`, fragmentation
in :mod:`._fragments`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from ._errors import ErrorCode, LocalProtocolError, RemoteProtocolError

__all__ = [
    "HIGH_FLAGS",
    "IGNORE_BIT",
    "unexpected_frame_error",
    "MAX_FRAME_SIZE",
    "MAX_REQUEST_N",
    "CancelFrame",
    "ErrorFrame",
    "Frame",
    "FrameDecodeError",
    "FrameType",
    "KeepaliveFrame",
    "LeaseFrame",
    "MetadataPushFrame",
    "PayloadFrame",
    "RequestFrame",
    "RequestNFrame",
    "ResumeFrame",
    "ResumeOkFrame",
    "SetupFrame",
    "UnsupportedFrame",
    "decode_frame",
    "encode_frame",
    "encode_payload",
    "fit_frame",
]

#: Frames (header + body) are limited to 2^24-1 bytes (Protocol.md, "Max Frame Size").
MAX_FRAME_SIZE = 0xFFFFFF
#: The largest REQUEST_N value; demand of this size means "unbounded".
MAX_REQUEST_N = 0x7FFFFFFF

FLAG_IGNORE = 0x200
FLAG_METADATA = 0x100
FLAG_FOLLOWS = 0x80
FLAG_COMPLETE = 0x40
FLAG_NEXT = 0x20
FLAG_RESPOND = 0x80  # KEEPALIVE
FLAG_RESUME = 0x80  # SETUP
FLAG_LEASE = 0x40  # SETUP


class FrameType(IntEnum):
    SETUP = 0x01
    LEASE = 0x02
    KEEPALIVE = 0x03
    REQUEST_RESPONSE = 0x04
    REQUEST_FNF = 0x05
    REQUEST_STREAM = 0x06
    REQUEST_CHANNEL = 0x07
    REQUEST_N = 0x08
    CANCEL = 0x09
    PAYLOAD = 0x0A
    ERROR = 0x0B
    METADATA_PUSH = 0x0C
    RESUME = 0x0D
    RESUME_OK = 0x0E
    EXT = 0x3F


REQUEST_TYPES = frozenset(
    {FrameType.REQUEST_RESPONSE, FrameType.REQUEST_FNF, FrameType.REQUEST_STREAM, FrameType.REQUEST_CHANNEL}
)
_WITH_INITIAL_N = frozenset({FrameType.REQUEST_STREAM, FrameType.REQUEST_CHANNEL})


class FrameDecodeError(RemoteProtocolError):
    """The bytes are not a valid RSocket frame; the connection must end (CONNECTION_ERROR)."""


_HEADER = struct.Struct(">IH")
#: the I flag, and the I and M flags, as they stand in a frame's fifth byte (the top two of
#: the 10 flag bits): what the receiving hot path looks at before decoding
IGNORE_BIT = FLAG_IGNORE >> 8
HIGH_FLAGS = (FLAG_IGNORE | FLAG_METADATA) >> 8
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
_SETUP_FIXED = struct.Struct(">HHII")
_LEASE_FIXED = struct.Struct(">II")
_KEEPALIVE_FIXED = struct.Struct(">Q")
_POSITION = struct.Struct(">Q")
_VERSION = struct.Struct(">HH")


def _header(stream_id: int, frame_type: int, flags: int) -> bytes:
    return _HEADER.pack(stream_id, (frame_type << 10) | flags)


def _u24(n: int) -> bytes:
    return n.to_bytes(3, "big")


@dataclass(frozen=True, slots=True, kw_only=True)
class SetupFrame:
    keepalive_ms: int
    lifetime_ms: int
    metadata_mime: str
    data_mime: str
    metadata: bytes | None = None
    data: bytes = b""
    version: tuple[int, int] = (1, 0)
    lease: bool = False
    resume_token: bytes | None = None
    stream_id: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseFrame:
    ttl_ms: int
    count: int
    metadata: bytes | None = None
    stream_id: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class KeepaliveFrame:
    respond: bool
    position: int = 0
    data: bytes = b""
    stream_id: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestFrame:
    """REQUEST_RESPONSE / REQUEST_FNF / REQUEST_STREAM / REQUEST_CHANNEL (``type`` says which)."""

    stream_id: int
    type: FrameType
    metadata: bytes | None = None
    data: bytes = b""
    initial_n: int = 0
    follows: bool = False
    complete: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestNFrame:
    stream_id: int
    n: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelFrame:
    stream_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PayloadFrame:
    stream_id: int
    metadata: bytes | None = None
    data: bytes = b""
    follows: bool = False
    complete: bool = False
    next: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorFrame:
    stream_id: int
    code: int
    message: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataPushFrame:
    metadata: bytes
    stream_id: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ResumeFrame:
    """RESUME (Protocol.md "Resume Operation"): the client's token and positions on a new transport."""

    token: bytes
    last_received_server_position: int
    first_available_client_position: int
    version: tuple[int, int] = (1, 0)
    stream_id: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ResumeOkFrame:
    """RESUME_OK: the server accepts, and says the last position it received from the client."""

    last_received_client_position: int
    stream_id: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class UnsupportedFrame:
    """A frame this implementation does not process (RESUME, RESUME_OK, EXT, LEASE-less extensions)."""

    stream_id: int
    type: int
    ignorable: bool


Frame = (
    SetupFrame
    | LeaseFrame
    | KeepaliveFrame
    | RequestFrame
    | RequestNFrame
    | CancelFrame
    | PayloadFrame
    | ErrorFrame
    | MetadataPushFrame
    | ResumeFrame
    | ResumeOkFrame
    | UnsupportedFrame
)


# --------------------------------------------------------------------------- encode


def _metadata_and_data(flags: int, metadata: bytes | None, data: bytes) -> tuple[int, bytes]:
    if metadata is None:
        return flags, data
    return flags | FLAG_METADATA, _u24(len(metadata)) + metadata + data


def encode_payload(
    stream_id: int,
    data: bytes,
    metadata: bytes | None = None,
    *,
    next: bool = True,
    complete: bool = False,
    follows: bool = False,
) -> bytes:
    """Encode one PAYLOAD frame (the hot path: no intermediate object)."""
    flags = (FLAG_NEXT if next else 0) | (FLAG_COMPLETE if complete else 0) | (FLAG_FOLLOWS if follows else 0)
    if metadata is None:
        return _HEADER.pack(stream_id, 0x2800 | flags) + data
    return _HEADER.pack(stream_id, 0x2800 | flags | FLAG_METADATA) + _u24(len(metadata)) + metadata + data


def encode_frame(frame: Frame) -> bytes:
    """Encode a frame object into its bytes (without any length prefix)."""
    if isinstance(frame, PayloadFrame):
        return encode_payload(
            frame.stream_id, frame.data, frame.metadata, next=frame.next, complete=frame.complete, follows=frame.follows
        )
    if isinstance(frame, RequestFrame):
        flags = (FLAG_FOLLOWS if frame.follows else 0) | (FLAG_COMPLETE if frame.complete else 0)
        flags, body = _metadata_and_data(flags, frame.metadata, frame.data)
        if frame.type in _WITH_INITIAL_N:
            body = _U32.pack(frame.initial_n) + body
        return _header(frame.stream_id, frame.type, flags) + body
    if isinstance(frame, RequestNFrame):
        return _header(frame.stream_id, FrameType.REQUEST_N, 0) + _U32.pack(frame.n)
    if isinstance(frame, CancelFrame):
        return _header(frame.stream_id, FrameType.CANCEL, 0)
    if isinstance(frame, ErrorFrame):
        return _header(frame.stream_id, FrameType.ERROR, 0) + _U32.pack(frame.code) + frame.message.encode()
    if isinstance(frame, KeepaliveFrame):
        flags = FLAG_RESPOND if frame.respond else 0
        return _header(frame.stream_id, FrameType.KEEPALIVE, flags) + _KEEPALIVE_FIXED.pack(frame.position) + frame.data
    if isinstance(frame, MetadataPushFrame):
        return _header(frame.stream_id, FrameType.METADATA_PUSH, FLAG_METADATA) + frame.metadata
    if isinstance(frame, SetupFrame):
        flags = (FLAG_LEASE if frame.lease else 0) | (FLAG_RESUME if frame.resume_token is not None else 0)
        parts = [_SETUP_FIXED.pack(frame.version[0], frame.version[1], frame.keepalive_ms, frame.lifetime_ms)]
        if frame.resume_token is not None:
            parts.append(_U16.pack(len(frame.resume_token)) + frame.resume_token)
        for mime in (frame.metadata_mime, frame.data_mime):
            raw = mime.encode("ascii")
            parts.append(bytes([len(raw)]) + raw)
        flags, body = _metadata_and_data(flags, frame.metadata, frame.data)
        return _header(frame.stream_id, FrameType.SETUP, flags) + b"".join(parts) + body
    if isinstance(frame, ResumeFrame):
        return (
            _header(frame.stream_id, FrameType.RESUME, 0)
            + _VERSION.pack(*frame.version)
            + _U16.pack(len(frame.token))
            + frame.token
            + _POSITION.pack(frame.last_received_server_position)
            + _POSITION.pack(frame.first_available_client_position)
        )
    if isinstance(frame, ResumeOkFrame):
        return _header(frame.stream_id, FrameType.RESUME_OK, 0) + _POSITION.pack(frame.last_received_client_position)
    if isinstance(frame, LeaseFrame):
        flags = FLAG_METADATA if frame.metadata is not None else 0
        return (
            _header(frame.stream_id, FrameType.LEASE, flags)
            + _LEASE_FIXED.pack(frame.ttl_ms, frame.count)
            + (frame.metadata or b"")
        )
    raise TypeError(f"cannot encode {type(frame).__name__}")


def fit_frame(frame: bytes, limit: int) -> bytes:
    """``frame`` cut down to ``limit`` bytes where RSocket lets it be, for frames that cannot be
    fragmented: a KEEPALIVE's data is shortened (an echo of 256 KiB to a peer whose transport
    takes 64 KiB would never arrive, and would break the connection trying), an ERROR's
    message is shortened on a character boundary and marked with an ellipsis.

    Raises:
        LocalProtocolError: any other frame over ``limit`` (a SETUP or METADATA_PUSH built
            too large by the application): it cannot be sent whole nor cut.
    """
    if len(frame) <= limit:
        return frame
    kind = frame[4] >> 2
    if kind == FrameType.KEEPALIVE:
        return frame[: max(limit, 14)]  # header, position, as much of the data as fits
    if kind == FrameType.ERROR:
        message = frame[10:].decode("utf-8", "replace").encode()[: max(0, limit - 10 - 3)]
        return frame[:10] + message.decode("utf-8", "ignore").encode() + "…".encode()
    raise LocalProtocolError(
        f"a {FrameType(kind).name if kind in set(FrameType) else kind} frame of {len(frame)} bytes "
        f"does not fit the transport's {limit}-byte messages and cannot be fragmented"
    )


# --------------------------------------------------------------------------- decode


def _fail(message: str) -> FrameDecodeError:
    return FrameDecodeError(message, code=ErrorCode.CONNECTION_ERROR)


def split_metadata(buf: bytes, offset: int, flags: int) -> tuple[bytes | None, bytes]:
    """Split ``buf[offset:]`` into (metadata, data) using the 24-bit metadata length."""
    if not flags & FLAG_METADATA:
        return None, buf[offset:]
    if len(buf) - offset < 3:
        raise _fail("metadata flag set but the frame ends before the 3-byte metadata length")
    length = int.from_bytes(buf[offset : offset + 3], "big")
    start = offset + 3
    if start + length > len(buf):
        raise _fail(f"metadata length {length} runs past the end of the frame ({len(buf) - start} bytes left)")
    return buf[start : start + length], buf[start + length :]


def _need(buf: bytes, size: int, what: str) -> None:
    if len(buf) < size:
        raise _fail(f"{what} frame truncated: {len(buf)} bytes, needs at least {size}")


def decode_frame(buf: bytes) -> Frame:
    """Decode exactly one frame.

    Raises:
        FrameDecodeError: the bytes are not a well-formed frame (the caller must
            answer ERROR[CONNECTION_ERROR] and close, per Protocol.md "Metadata
            Optional Header"). No other exception escapes for any input.
    """
    if len(buf) < 6:
        raise _fail(f"frame of {len(buf)} bytes is shorter than the 6-byte header")
    if len(buf) > MAX_FRAME_SIZE:
        raise _fail(f"frame of {len(buf)} bytes exceeds the protocol maximum of {MAX_FRAME_SIZE}")
    stream_id, type_and_flags = _HEADER.unpack_from(buf)
    stream_id &= 0x7FFFFFFF
    ftype = type_and_flags >> 10
    flags = type_and_flags & 0x3FF
    if ftype == FrameType.PAYLOAD:
        metadata, data = split_metadata(buf, 6, flags)
        return PayloadFrame(
            stream_id=stream_id,
            metadata=metadata,
            data=data,
            follows=bool(flags & FLAG_FOLLOWS),
            complete=bool(flags & FLAG_COMPLETE),
            next=bool(flags & FLAG_NEXT),
        )
    if ftype == FrameType.REQUEST_N:
        _need(buf, 10, "REQUEST_N")
        return RequestNFrame(stream_id=stream_id, n=_U32.unpack_from(buf, 6)[0])
    if FrameType.REQUEST_RESPONSE <= ftype <= FrameType.REQUEST_CHANNEL:
        rtype = FrameType(ftype)
        initial_n, offset = 0, 6
        if rtype in _WITH_INITIAL_N:
            _need(buf, 10, rtype.name)
            initial_n, offset = _U32.unpack_from(buf, 6)[0], 10
        metadata, data = split_metadata(buf, offset, flags)
        return RequestFrame(
            stream_id=stream_id,
            type=rtype,
            metadata=metadata,
            data=data,
            initial_n=initial_n,
            follows=bool(flags & FLAG_FOLLOWS),
            complete=bool(flags & FLAG_COMPLETE) and rtype == FrameType.REQUEST_CHANNEL,
        )
    if ftype == FrameType.CANCEL:
        return CancelFrame(stream_id=stream_id)
    if ftype == FrameType.ERROR:
        _need(buf, 10, "ERROR")
        message = bytes(buf[10:]).decode("utf-8", errors="replace")
        return ErrorFrame(stream_id=stream_id, code=_U32.unpack_from(buf, 6)[0], message=message)
    if ftype == FrameType.KEEPALIVE:
        _need(buf, 14, "KEEPALIVE")
        return KeepaliveFrame(
            stream_id=stream_id,
            respond=bool(flags & FLAG_RESPOND),
            position=_KEEPALIVE_FIXED.unpack_from(buf, 6)[0],
            data=buf[14:],
        )
    if ftype == FrameType.METADATA_PUSH:
        return MetadataPushFrame(stream_id=stream_id, metadata=buf[6:])
    if ftype == FrameType.SETUP:
        return _decode_setup(buf, stream_id, flags)
    if ftype == FrameType.LEASE:
        _need(buf, 14, "LEASE")
        ttl, count = _LEASE_FIXED.unpack_from(buf, 6)
        metadata = buf[14:] if flags & FLAG_METADATA else None
        return LeaseFrame(stream_id=stream_id, ttl_ms=ttl, count=count, metadata=metadata)
    if ftype == FrameType.RESUME:
        _need(buf, 12, "RESUME")
        major, minor = _VERSION.unpack_from(buf, 6)
        (token_len,) = _U16.unpack_from(buf, 10)
        _need(buf, 12 + token_len + 16, "RESUME")
        token = bytes(buf[12 : 12 + token_len])
        server, client = _POSITION.unpack_from(buf, 12 + token_len)[0], _POSITION.unpack_from(buf, 20 + token_len)[0]
        if (server | client) >> 63:
            raise _fail("RESUME positions are 63-bit values")
        return ResumeFrame(
            stream_id=stream_id,
            version=(major, minor),
            token=token,
            last_received_server_position=server,
            first_available_client_position=client,
        )
    if ftype == FrameType.RESUME_OK:
        _need(buf, 14, "RESUME_OK")
        position = _POSITION.unpack_from(buf, 6)[0]
        if position >> 63:
            raise _fail("RESUME_OK position is a 63-bit value")
        return ResumeOkFrame(stream_id=stream_id, last_received_client_position=position)
    return UnsupportedFrame(stream_id=stream_id, type=ftype, ignorable=bool(flags & FLAG_IGNORE))


def _decode_setup(buf: bytes, stream_id: int, flags: int) -> SetupFrame:
    _need(buf, 18, "SETUP")
    major, minor, keepalive, lifetime = _SETUP_FIXED.unpack_from(buf, 6)
    offset = 18
    token = None
    if flags & FLAG_RESUME:
        _need(buf, offset + 2, "SETUP")
        (token_len,) = _U16.unpack_from(buf, offset)
        offset += 2
        _need(buf, offset + token_len, "SETUP")
        token = buf[offset : offset + token_len]
        offset += token_len
    mimes = []
    for _ in range(2):
        _need(buf, offset + 1, "SETUP")
        mime_len = buf[offset]
        offset += 1
        _need(buf, offset + mime_len, "SETUP")
        # US-ASCII is only a SHOULD for the sender: other bytes are kept (Latin-1 maps each to one
        # character), so such a SETUP is accepted and its MIME type compared as given
        mimes.append(bytes(buf[offset : offset + mime_len]).decode("latin-1"))
        offset += mime_len
    metadata, data = split_metadata(buf, offset, flags)
    return SetupFrame(
        stream_id=stream_id,
        version=(major, minor),
        keepalive_ms=keepalive,
        lifetime_ms=lifetime,
        resume_token=token,
        lease=bool(flags & FLAG_LEASE),
        metadata_mime=mimes[0],
        data_mime=mimes[1],
        metadata=metadata,
        data=data,
    )


def unexpected_frame_error(frame: Frame) -> RemoteProtocolError | None:
    """The connection error a frame an established connection does not process is (a
    RESUME; an unsupported type without the IGNORE flag), or None: the frame is ignored
    (Protocol.md "Handling the Unexpected")."""
    if isinstance(frame, ResumeFrame):
        return RemoteProtocolError("RESUME on an established connection", code=ErrorCode.CONNECTION_ERROR)
    if isinstance(frame, UnsupportedFrame) and not frame.ignorable:
        return RemoteProtocolError(
            f"frame type 0x{frame.type:02x} is not supported here and its IGNORE flag is not set",
            code=ErrorCode.CONNECTION_ERROR,
        )
    return None
