"""Events the connection hands to the runtime: frozen, slotted, keyword-only, stream id first."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from ._errors import RxChannelError
from ._frames import FrameType, ResumeFrame

__all__ = [
    "ConnectionClosed",
    "CreditGranted",
    "Detached",
    "Event",
    "InboundCompleted",
    "Interaction",
    "ItemsReceived",
    "MetadataPushed",
    "PayloadReceived",
    "RequestReceived",
    "ResumeReceived",
    "Resumed",
    "SetupConfirmed",
    "SetupReceived",
    "StreamCancelled",
    "StreamErrored",
]


class Interaction(IntEnum):
    """The four interaction models, valued as their request frame types."""

    RESPONSE = FrameType.REQUEST_RESPONSE
    FNF = FrameType.REQUEST_FNF
    STREAM = FrameType.REQUEST_STREAM
    CHANNEL = FrameType.REQUEST_CHANNEL


def _short(data: bytes | None) -> str:
    if data is None:
        return "None"
    return repr(data) if len(data) <= 16 else f"<{len(data)} bytes>"


@dataclass(frozen=True, slots=True, kw_only=True)
class SetupReceived:
    """The client's SETUP was accepted (server side)."""

    keepalive_ms: int
    lifetime_ms: int
    metadata_mime: str
    data_mime: str
    metadata: bytes | None
    data: bytes
    resume_token: bytes | None = field(default=None, repr=False)
    stream_id: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class SetupConfirmed:
    """Client side, when it asked for resumption: the server answered something other than a
    refusal, so it accepted the SETUP (a resumable client waits for this before requests)."""

    stream_id: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ResumeReceived:
    """Server side: a new connection's first frame is RESUME. Hand its transport to the session
    with ``frame.token`` (:meth:`Connection.accept_resume`), or :meth:`Connection.refuse_resume`."""

    frame: ResumeFrame = field(repr=False)
    stream_id: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Detached:
    """A resumable connection found its transport dead (no frame within the keepalive
    lifetime): drop the transport and resume on a new one; streams stay open."""

    reason: str
    stream_id: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Resumed:
    """The session was resumed on a new transport (``resumes``: how many times so far)."""

    resumes: int
    stream_id: int = 0


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class RequestReceived:
    """The peer opened a stream (or sent a fire-and-forget). ``complete`` is a channel's C flag.

    With composite metadata (the connection's metadata MIME type), ``route`` is the first
    routing tag and ``info`` the ``application/json`` entry; a request whose composite
    metadata cannot be parsed is refused with ERROR[INVALID] and never reported.
    """

    stream_id: int
    interaction: Interaction
    metadata: bytes | None
    data: bytes
    route: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    initial_n: int = 0
    complete: bool = False

    def __repr__(self) -> str:
        return (
            f"RequestReceived({self.stream_id}, {self.interaction.name}, route={self.route!r}, n={self.initial_n}, "
            f"metadata={_short(self.metadata)}, data={_short(self.data)})"
        )


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class PayloadReceived:
    """One item (reassembled if it was fragmented) arrived on an inbound direction."""

    stream_id: int
    data: bytes
    metadata: bytes | None = None

    def __repr__(self) -> str:
        return f"PayloadReceived({self.stream_id}, data={_short(self.data)}, metadata={_short(self.metadata)})"


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class ItemsReceived:
    """Several whole items in a row on one inbound direction, each data only (no metadata):
    what :meth:`Connection.receive_frames` emits instead of one :class:`PayloadReceived` per
    item, so a batch of a stream's items costs one event. :meth:`Connection.receive` never
    emits it."""

    stream_id: int
    items: list[bytes]

    def __repr__(self) -> str:
        return f"ItemsReceived({self.stream_id}, {len(self.items)} item(s))"


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundCompleted:
    """The peer completed the direction we receive on; no more items will arrive."""

    stream_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CreditGranted:
    """The peer granted ``n`` more items for the direction we send on."""

    stream_id: int
    n: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamCancelled:
    """The peer cancelled the direction we send on: stop producing and release resources."""

    stream_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamErrored:
    """The stream ended with an error in both directions.

    ``error`` is a :class:`RemoteError` when the peer sent ERROR, or a
    :class:`RemoteProtocolError` when the peer broke the protocol on this stream (we
    then sent it ERROR[INVALID] or ERROR[REJECTED]).
    """

    stream_id: int
    error: RxChannelError


@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataPushed:
    metadata: bytes
    stream_id: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionClosed:
    """The connection is over. ``error`` is None for a local, orderly close.

    Every stream still open is over too; the runtime fails them with ``error``.
    """

    error: RxChannelError | None
    stream_id: int = 0


Event = (
    SetupReceived
    | RequestReceived
    | PayloadReceived
    | ItemsReceived
    | InboundCompleted
    | CreditGranted
    | StreamCancelled
    | StreamErrored
    | MetadataPushed
    | ConnectionClosed
    | SetupConfirmed
    | ResumeReceived
    | Detached
    | Resumed
)
