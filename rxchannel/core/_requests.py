"""A request from the peer, before it becomes a stream (Protocol.md "Stream Identifiers",
"Request Stream", "Handling the Unexpected"): whose stream ids it may use, when it is
refused, and the event it becomes."""

from __future__ import annotations

from typing import Any

from ._config import ConnectionConfig, Role
from ._errors import ErrorCode, RemoteProtocolError
from ._events import Interaction, RequestReceived
from ._frames import MAX_REQUEST_N, RequestFrame

__all__ = ["request_received", "request_refusal", "stream_id_violation"]


def stream_id_violation(role: Role, frame: RequestFrame) -> RemoteProtocolError | None:
    """The connection error for a request on a stream id the peer may not use (clients odd,
    servers even, never 0), or None."""
    sid = frame.stream_id
    peer_is_client = role is Role.SERVER
    if sid != 0 and (sid % 2 == 1) == peer_is_client:
        return None
    parity = "odd" if peer_is_client else "even"
    return RemoteProtocolError(
        f"{frame.type.name} on stream {sid}: "
        f"the {'client' if peer_is_client else 'server'} must use {parity} stream ids",
        code=ErrorCode.CONNECTION_ERROR,
    )


def request_refusal(
    config: ConnectionConfig, draining: bool, open_streams: int, interaction: Interaction, frame: RequestFrame
) -> tuple[int, str] | None:
    """The stream ERROR (code, message) refusing a new request, or None to take it."""
    if draining:
        return ErrorCode.REJECTED, "the connection is closing (CONNECTION_CLOSE): no new streams"
    if open_streams >= config.max_streams:
        return ErrorCode.REJECTED, f"too many concurrent streams (limit {config.max_streams})"
    if interaction in (Interaction.STREAM, Interaction.CHANNEL) and not 1 <= frame.initial_n <= MAX_REQUEST_N:
        return ErrorCode.INVALID, f"initial request n of {frame.initial_n} is outside 1..{MAX_REQUEST_N}"
    if frame.metadata is not None and len(frame.metadata) > config.max_metadata_size:
        return ErrorCode.REJECTED, f"request metadata exceeds {config.max_metadata_size} bytes"
    return None


def request_received(
    stream_id: int,
    interaction: Interaction,
    frame: RequestFrame,
    metadata: bytes | None,
    data: bytes,
    route: str | None,
    info: dict[str, Any],
    complete: bool,
) -> RequestReceived:
    """The event a whole request becomes (its fragments, if any, reassembled)."""
    return RequestReceived(
        stream_id=stream_id,
        interaction=interaction,
        metadata=metadata,
        data=data,
        route=route,
        info=info,
        initial_n=frame.initial_n,
        complete=complete,
    )
