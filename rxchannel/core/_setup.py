"""Connection establishment (Protocol.md "Connection Establishment", "SETUP Frame").

The client's SETUP says how it wants to operate; the server accepts it or refuses it with
the error code the spec assigns to the reason.
"""

from __future__ import annotations

from ._config import ConnectionConfig, Role
from ._errors import ErrorCode, RemoteProtocolError
from ._events import ResumeReceived, SetupReceived
from ._frames import ErrorFrame, FrameType, KeepaliveFrame, ResumeFrame, SetupFrame, encode_frame
from ._resume import token_matches

__all__ = [
    "SETUP_REFUSALS",
    "check_first_frame",
    "client_opening",
    "client_setup",
    "first_frame",
    "ignores_error",
    "setup_received",
    "setup_refusal",
]

#: The error codes that refuse a SETUP or a RESUME: the connection never gets going.
SETUP_REFUSALS = frozenset(
    {ErrorCode.INVALID_SETUP, ErrorCode.UNSUPPORTED_SETUP, ErrorCode.REJECTED_SETUP, ErrorCode.REJECTED_RESUME}
)


def setup_refusal(reason: str) -> bytes:
    """The frame a server sends instead of running a connection it will not take (it is at
    capacity, say): ERROR[REJECTED_SETUP] on stream 0, which a client reads as its SETUP refused."""
    return encode_frame(ErrorFrame(stream_id=0, code=ErrorCode.REJECTED_SETUP, message=reason))


def client_setup(config: ConnectionConfig) -> SetupFrame:
    """The SETUP frame a client with ``config`` sends first (with the R flag and token when resumable)."""
    return SetupFrame(
        keepalive_ms=int(config.keepalive_interval * 1000),
        lifetime_ms=int(config.max_lifetime * 1000),
        metadata_mime=config.metadata_mime,
        data_mime=config.data_mime,
        metadata=config.setup_metadata,
        data=config.setup_data,
        resume_token=config.resume_token,
    )


def first_frame(frame: object, config: ConnectionConfig) -> SetupReceived | ResumeReceived | RemoteProtocolError:
    """What the first frame a server receives is: an accepted SETUP, a RESUME (the runtime
    finds the session it names), or the connection error refusing it."""
    if isinstance(frame, ResumeFrame) and frame.stream_id == 0:
        if not config.resumable:
            return RemoteProtocolError("resumption is not supported", code=ErrorCode.REJECTED_RESUME)
        return ResumeReceived(frame=frame)
    refusal = check_first_frame(frame, config)
    if refusal is not None:
        return refusal
    assert isinstance(frame, SetupFrame)
    return setup_received(frame)


def ignores_error(role: Role, setup_confirmed: bool, resuming: bool, code: int) -> bool:
    """Whether an ERROR on stream 0 means nothing here (Handling the Unexpected): a server
    ignores setup errors, and so does a client once the server accepted its SETUP, except
    REJECTED_RESUME answering its RESUME."""
    if code not in SETUP_REFUSALS:
        return False
    if role is Role.SERVER:
        return True
    return setup_confirmed and not (resuming and code == ErrorCode.REJECTED_RESUME)


def client_opening(config: ConnectionConfig) -> list[bytes]:
    """The frames a client sends first: its SETUP, and when it asks for resumption a KEEPALIVE
    the server answers once it accepted the SETUP (RSocket has no SETUP acknowledgement)."""
    frames = [encode_frame(client_setup(config))]
    if config.resume_token is not None:
        frames.append(encode_frame(KeepaliveFrame(respond=True)))
    return frames


def check_first_frame(frame: object, config: ConnectionConfig) -> RemoteProtocolError | None:
    """Why a server refuses the first frame it received, or None to accept it as SETUP.

    A frame that is not a SETUP on stream 0 is INVALID_SETUP; an unsupported version,
    LEASE is UNSUPPORTED_SETUP; resumption asked of a server that does not resume is
    REJECTED_SETUP (Protocol.md: a server that does not resume MUST reject the R flag so);
    the application's own ``setup_check`` refuses with REJECTED_SETUP, and then a resume
    token the server cannot accept (minted without its secret) too. A check that raises refuses too, so a
    failing check can never leave the connection half set up.
    """
    if not isinstance(frame, SetupFrame) or frame.stream_id != 0:
        kind = getattr(frame, "type", None)
        name = kind.name if isinstance(kind, FrameType) else type(frame).__name__.removesuffix("Frame").upper()
        where = getattr(frame, "stream_id", "?")
        return RemoteProtocolError(
            f"expected SETUP on stream 0 as the first frame, got {name} on stream {where} "
            "(the peer's SETUP was lost on the way, or it never sent one)",
            code=ErrorCode.INVALID_SETUP,
        )
    reason, code = None, ErrorCode.UNSUPPORTED_SETUP
    if frame.version[0] != 1:
        reason = f"protocol version {frame.version[0]}.{frame.version[1]} is not supported (this peer speaks 1.0)"
    elif frame.resume_token is not None and not config.resumable:
        reason, code = "resumption is not supported; connect without the resume flag", ErrorCode.REJECTED_SETUP
    elif frame.lease:
        reason = "LEASE is not supported; connect without the lease flag"
    elif frame.keepalive_ms <= 0 or frame.lifetime_ms <= 0:
        reason, code = "keepalive interval and max lifetime must be positive", ErrorCode.INVALID_SETUP
    elif config.setup_check is not None:
        code = ErrorCode.REJECTED_SETUP
        try:
            reason = config.setup_check(frame)
        except Exception as exc:  # the check is application code: refuse, never half set up
            reason = f"the server could not check this SETUP ({type(exc).__name__})"
    if (
        reason is None
        and frame.resume_token is not None
        and not token_matches(frame.resume_token, config.resume_secret)
    ):
        # after authentication: a wrong secret is reported as such, not as a bad token
        reason, code = (
            "the resume token is not one this server accepts (16 random bytes, or 32 minted with its secret)",
            ErrorCode.REJECTED_SETUP,
        )
    return None if reason is None else RemoteProtocolError(reason, code=code)


def setup_received(frame: SetupFrame) -> SetupReceived:
    """The event an accepted SETUP becomes."""
    return SetupReceived(
        keepalive_ms=frame.keepalive_ms,
        lifetime_ms=frame.lifetime_ms,
        metadata_mime=frame.metadata_mime,
        data_mime=frame.data_mime,
        metadata=frame.metadata,
        data=frame.data,
        resume_token=frame.resume_token,
    )
