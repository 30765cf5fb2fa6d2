"""The parameters and limits of one connection, and its role."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from ._fragments import MIN_FRAME_SIZE, Budget
from ._frames import MAX_FRAME_SIZE, SetupFrame
from ._metadata import COMPOSITE_METADATA, OCTET_STREAM

__all__ = ["ConnectionConfig", "Role"]

#: SETUP's keepalive interval and max lifetime are positive 31-bit counts of milliseconds.
_MAX_SECONDS = (2**31 - 1) / 1000


class Role(Enum):
    """The client dials and sends SETUP (over WebRTC: the side that makes the offer)."""

    CLIENT = "client"
    SERVER = "server"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionConfig:
    """Limits and parameters of one connection (safe defaults; see docs/architecture.md,
    "Flow control: two levels" and "Errors by blame").

    Attributes:
        keepalive_interval: seconds between the client's KEEPALIVE frames.
        max_lifetime: seconds without any frame from the peer before the connection is
            declared dead (client: its own setting; server: what the client's SETUP says,
            but never more than this).
        max_frame_size: frames larger than this are fragmented (a transport's maximum
            message size; at least 64).
        max_payload_size: largest reassembled item accepted from the peer, in bytes.
        max_metadata_size: largest request metadata accepted from the peer, in bytes.
        max_reassembly_bytes: bytes all of this connection's unfinished fragmented items may
            hold together; a fragment past it ends its stream with REJECTED.
        shared_reassembly: a budget several connections draw from (a server's), or None.
        max_streams: streams the peer may have open on us at once; more are REJECTED.
        setup_check: server only: called with the client's SETUP; returns None to
            accept or a reason to refuse it with ERROR[REJECTED_SETUP].
        resume_token: client only: ask for a resumable session with this token
            (:func:`~rxchannel.core.make_token`); None: no resumption.
        resumable: server only: accept SETUPs that ask for resumption (and RESUMEs).
        resume_store_bytes: the most bytes of sent, unacknowledged frames a resumable
            connection keeps for retransmission; sending items waits while it is full.
        resume_session_timeout: seconds a session whose transport broke is kept (server)
            or tried to be resumed (client) before its streams fail.
        resume_ack_timeout: seconds the resume store may stay full with the peer
            acknowledging nothing; then the session stops being resumable (logged) and
            its streams go on without it, instead of waiting for ever on a peer that
            never reports its position.
        resume_secret: a shared secret resume tokens must be minted with (see
            :func:`~rxchannel.core.make_token`); set by ``with_secret``.
    """

    keepalive_interval: float = 20.0
    max_lifetime: float = 90.0
    max_frame_size: int = MAX_FRAME_SIZE
    max_payload_size: int = 64 * 1024 * 1024
    max_metadata_size: int = 1024 * 1024
    max_reassembly_bytes: int = 64 * 1024 * 1024
    shared_reassembly: Budget | None = field(default=None, compare=False)
    max_streams: int = 1024
    metadata_mime: str = COMPOSITE_METADATA
    data_mime: str = OCTET_STREAM
    setup_metadata: bytes | None = None
    setup_data: bytes = b""
    setup_check: Callable[[SetupFrame], str | None] | None = None
    resume_token: bytes | None = field(default=None, repr=False)
    resumable: bool = False
    resume_store_bytes: int = 8 << 20
    resume_session_timeout: float = 120.0
    resume_ack_timeout: float = 30.0
    resume_secret: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not MIN_FRAME_SIZE <= self.max_frame_size <= MAX_FRAME_SIZE:
            raise ValueError(f"max_frame_size must be in {MIN_FRAME_SIZE}..{MAX_FRAME_SIZE}, got {self.max_frame_size}")
        if not 0.001 <= self.keepalive_interval <= _MAX_SECONDS or not 0.001 <= self.max_lifetime <= _MAX_SECONDS:
            raise ValueError(
                "keepalive_interval and max_lifetime must be from 1 ms to 2^31-1 ms (24.8 days): SETUP sends them "
                "as positive 31-bit milliseconds"
            )
        if self.max_streams <= 0 or self.max_payload_size <= 0 or self.max_reassembly_bytes <= 0:
            raise ValueError("max_streams, max_payload_size and max_reassembly_bytes must be positive")
        if self.resume_store_bytes < 64 << 10 or self.resume_session_timeout <= 0 or self.resume_ack_timeout <= 0:
            raise ValueError(
                "resume_store_bytes must be at least 64 KiB, resume_session_timeout and resume_ack_timeout positive"
            )
        if self.resume_token is not None and not 16 <= len(self.resume_token) <= 0xFFFF:
            raise ValueError("a resume token has 16 bytes at least (128 bits; make_token() makes one)")
