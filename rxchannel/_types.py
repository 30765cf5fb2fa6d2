"""Values users handle: payloads, incoming requests, and errors handlers raise on purpose."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rxchannel.core import ErrorCode, Interaction, RxChannelError

if TYPE_CHECKING:
    from .peer import Peer
    from .remote import RemoteStream

__all__ = ["ApplicationError", "Payload", "Request", "as_payload"]


@dataclass(frozen=True, slots=True)
class Payload:
    """One item: data, and optional metadata.

    ``last=True`` on an item a source yields says it is the stream's last: it goes out as
    one PAYLOAD with NEXT|COMPLETE, and the source is not pulled again. A source that
    knows its length (a file, a single receipt) should say so; any other source's end is
    found by pulling one item ahead, which needs no credit (Reactive Streams §2.9:
    onComplete needs no demand). ``last`` is a hint for sending and is not compared.
    """

    data: bytes = b""
    metadata: bytes | None = None
    last: bool = field(default=False, compare=False, kw_only=True)

    def __repr__(self) -> str:
        data = repr(self.data) if len(self.data) <= 16 else f"<{len(self.data)} bytes>"
        meta = "" if self.metadata is None else f", metadata=<{len(self.metadata)} bytes>"
        return f"Payload({data}{meta}{', last=True' if self.last else ''})"


def as_payload(item: object) -> Payload:
    """Accept ``Payload``, ``bytes``-like, or ``str`` (UTF-8) as an item to send."""
    if isinstance(item, Payload):
        return item
    if isinstance(item, bytes):
        return Payload(item)
    if isinstance(item, (bytearray, memoryview)):
        return Payload(bytes(item))
    if isinstance(item, str):
        return Payload(item.encode())
    raise TypeError(f"cannot send a {type(item).__name__}: yield bytes, str or rxchannel.Payload")


@dataclass(slots=True, kw_only=True)
class Request:
    """A request as a handler sees it.

    Attributes:
        route: the routing tag of the request's composite metadata (or None).
        info: the request's ``application/json`` metadata entry (empty if none).
        data: the request payload's data.
        inbound: for a channel, the requester's items (pulled with a bounded window).
    """

    stream_id: int
    interaction: Interaction
    route: str | None
    info: dict[str, Any]
    data: bytes
    metadata: bytes | None
    peer: Peer
    initial_n: int = 0
    inbound: RemoteStream | None = field(default=None, repr=False)


class ApplicationError(RxChannelError):
    """Raise in a handler to end the stream with ERROR(code, message) sent to the peer.

    Other exceptions from handlers reach the peer only as a generic message, so no
    local detail (paths, stack traces) leaks.
    """

    def __init__(self, message: str, code: int = ErrorCode.APPLICATION_ERROR):
        super().__init__(message)
        self.code = code
        self.message = message
