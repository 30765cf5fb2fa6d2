"""Errors, named by who is at fault (docs/architecture.md, "Errors by blame").

* :class:`LocalProtocolError` — *you* misused the API (sent without credit,
  ``request(0)``, used a closed stream). Fix the calling code.
* :class:`RemoteProtocolError` — the *peer* broke the RSocket protocol. Carries the
  wire error code that was (or will be) sent back.
* :class:`RemoteError` and subclasses — the peer's application ended a stream with
  an ERROR frame (APPLICATION_ERROR, REJECTED, CANCELED, INVALID, ...).
* :class:`StreamCancelledError` — the stream was cancelled (locally or by the peer).
* :class:`ConnectionLostError` — the transport or the peer died; every open stream
  gets it.
* :class:`ClosedResourceError` — the connection or stream was closed locally.
* :class:`ApplicationError` — raised *by a handler* on purpose: its code and message are
  what the peer sees (any other exception reaches the peer only as a generic message).
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "ACK_TIMEOUT",
    "ENDPOINT_FAILED",
    "FILE_CHANGED",
    "JOINED_LATE",
    "LAGGED",
    "ApplicationError",
    "ClosedResourceError",
    "ConnectionLostError",
    "ErrorCode",
    "LocalProtocolError",
    "RemoteError",
    "RemoteProtocolError",
    "RxChannelError",
    "SetupRejectedError",
    "StreamCancelledError",
    "is_stream_code",
    "remote_error",
]


class ErrorCode(IntEnum):
    """Error codes of the ERROR frame (Protocol.md, "Error Codes")."""

    INVALID_SETUP = 0x001
    UNSUPPORTED_SETUP = 0x002
    REJECTED_SETUP = 0x003
    REJECTED_RESUME = 0x004
    CONNECTION_ERROR = 0x101
    CONNECTION_CLOSE = 0x102
    APPLICATION_ERROR = 0x201
    REJECTED = 0x202
    CANCELED = 0x203
    INVALID = 0x204

    @property
    def is_connection_level(self) -> bool:
        return self < 0x200


def is_stream_code(code: int) -> bool:
    """``code`` may end one stream (0x201..0xFFFFFFFE: APPLICATION_ERROR and above, not
    RESERVED_FOR_EXTENSION), as opposed to a connection (Protocol.md, "Error Codes")."""
    return 0x201 <= code <= 0xFFFFFFFE


#: rxchannel's own application error codes (Protocol.md leaves 0x301..0xFFFFFFFE to
#: applications), one table for the hub, the fan-out patterns and their clients:
#: the file changed while it was served (transient: fetching again gets the new version)
FILE_CHANGED = 0x00000301
#: a shared read had already moved past its first item when this subscriber asked to join
JOINED_LATE = 0x00000302
#: this subscriber held a shared read back too long and was detached
LAGGED = 0x00000303
#: a worker holding jobs answered none for ``ack_timeout`` seconds; its jobs went to others
ACK_TIMEOUT = 0x00000304
#: an endpoint's upstream failed (refused, timed out, reset, went silent)
ENDPOINT_FAILED = 0x00000305


class RxChannelError(Exception):
    """Base class of every error rxchannel raises on purpose."""


class LocalProtocolError(RxChannelError):
    """The local caller misused the API; nothing was sent to the peer."""


class RemoteProtocolError(RxChannelError):
    """The remote peer broke the protocol.

    Attributes:
        code: the RSocket error code sent back to the peer for this violation.
        stream_id: the stream it concerns, or 0 for the whole connection.
    """

    def __init__(self, message: str, *, code: int = ErrorCode.CONNECTION_ERROR, stream_id: int = 0):
        super().__init__(message)
        self.code = code
        self.stream_id = stream_id


class RemoteError(RxChannelError):
    """The peer ended a stream (or the connection) with an ERROR frame.

    Attributes:
        code: the error code from the frame.
        message: the peer's error text.
    """

    def __init__(self, code: int, message: str):
        try:
            name = ErrorCode(code).name
        except ValueError:
            name = f"0x{code:08x}"
        super().__init__(f"{name}: {message}" if message else name)
        self.code = code
        self.message = message


class SetupRejectedError(RemoteError):
    """The server refused our SETUP (INVALID_SETUP, UNSUPPORTED_SETUP, REJECTED_SETUP).

    :attr:`message` is the server's text; ``str()`` says it was the SETUP.
    """

    def __str__(self) -> str:
        return f"the server refused our SETUP ({super().__str__()})"


class StreamCancelledError(RxChannelError):
    """The stream was cancelled before it terminated; no more items will arrive."""


class ConnectionLostError(RxChannelError):
    """The transport or the peer went away; streams still open cannot finish.

    A resumable sink keeps its partial data; reconnect and retry.
    """


class ConnectFailedError(RxChannelError, ConnectionError):
    """A connection could not be opened: nothing listens, a server refused us, or no path worked.

    Attributes:
        status: the HTTP status when a server refused us (401: the shared secret, 403, 409:
            a name taken, 429: too many requests...), else ``None``.
        retry_after: seconds the refusal asked us to wait before trying again, if it said.
    """

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class ClosedResourceError(RxChannelError):
    """The connection or stream was already closed locally."""


class ApplicationError(RxChannelError):
    """Raise in a handler to end the stream with ERROR(code, message) sent to the peer.

    Other exceptions from handlers reach the peer only as a generic message, so no local
    detail (paths, stack traces) leaks. ``code`` is a stream-level code: APPLICATION_ERROR
    (the default), REJECTED, CANCELED, INVALID, or an application's own in
    0x301..0xFFFFFFFE.
    """

    def __init__(self, message: str, code: int = ErrorCode.APPLICATION_ERROR):
        if not is_stream_code(code):
            raise ValueError(f"error code 0x{code:x} is not a stream-level code (0x201..0xFFFFFFFE)")
        super().__init__(message)
        self.code = code
        self.message = message


def remote_error(code: int, message: str) -> RemoteError:
    """The :class:`RemoteError` subclass that fits an ERROR frame's code."""
    if code in (ErrorCode.INVALID_SETUP, ErrorCode.UNSUPPORTED_SETUP, ErrorCode.REJECTED_SETUP):
        return SetupRejectedError(code, message)
    return RemoteError(code, message)
