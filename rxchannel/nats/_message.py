"""JetStream messages as rxchannel items, and what an item's headers carry across JetStream."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field

from nats.aio.msg import Msg

from rxchannel.core import ApplicationError, ErrorCode
from rxchannel.runtime import Payload

from ._wire import ack_info

__all__ = [
    "END_HEADER",
    "ERROR_CODE_HEADER",
    "ERROR_HEADER",
    "METADATA_HEADER",
    "InProgress",
    "Message",
    "Nak",
    "Term",
    "end_headers",
    "headers_for",
]

#: an item's RSocket metadata, base64 (a header value is one line of text)
METADATA_HEADER = "Rxc-Metadata"
#: on the message after a stream's last item: ``complete``, or ``error`` (with the two below)
END_HEADER = "Rxc-End"
ERROR_HEADER = "Rxc-Error"
ERROR_CODE_HEADER = "Rxc-Error-Code"


@dataclass(frozen=True, slots=True, kw_only=True)
class Message(Payload):
    """A JetStream message as an item: a :class:`~rxchannel.Payload` (so it can be sent to a
    peer or written to a file as it is) with where it came from.

    ``metadata`` is the RSocket metadata it was published with (the ``Rxc-Metadata`` header),
    so a file's chunks keep their size and digest across JetStream.
    """

    subject: str = ""
    #: its stream sequence (what identifies it in the stream)
    seq: int = 0
    #: 1 on its first delivery; more means it was delivered before and not acknowledged
    deliveries: int = 1
    headers: Mapping[str, str] | None = field(default=None, repr=False, compare=False)
    reply: str = field(default="", repr=False, compare=False)

    @classmethod
    def from_msg(cls, msg: Msg) -> Message:
        """The item for a message a pull request brought."""
        seq, deliveries = ack_info(msg.reply)
        headers = msg.headers
        metadata = None
        if headers:
            encoded = headers.get(METADATA_HEADER)
            if encoded:
                try:
                    metadata = base64.b64decode(encoded, validate=True)
                except (binascii.Error, ValueError):
                    metadata = None  # not ours: the header stays readable in .headers
        return cls(
            msg.data, metadata, subject=msg.subject, seq=seq, deliveries=deliveries, headers=headers, reply=msg.reply
        )

    @property
    def end(self) -> str | None:
        """``complete`` or ``error`` when this message marks the end of a bridged stream, else None."""
        return self.headers.get(END_HEADER) if self.headers else None

    def end_error(self) -> ApplicationError:
        """The error an ``error`` end marker carries (its code and message, as the source's peer sent them)."""
        headers = self.headers or {}
        code = headers.get(ERROR_CODE_HEADER, "")
        return ApplicationError(
            headers.get(ERROR_HEADER, "the stream published into JetStream failed"),
            int(code) if code.isdigit() else ErrorCode.APPLICATION_ERROR,
        )

    def __repr__(self) -> str:
        data = repr(self.data) if len(self.data) <= 16 else f"<{len(self.data)} bytes>"
        return f"Message({data}, subject={self.subject!r}, seq={self.seq}, deliveries={self.deliveries})"


def headers_for(payload: Payload) -> dict[str, str] | None:
    """The headers that carry ``payload``'s metadata across JetStream (None without metadata)."""
    if payload.metadata:
        return {METADATA_HEADER: base64.b64encode(payload.metadata).decode()}
    return None


def end_headers(error: BaseException | None) -> dict[str, str]:
    """The headers of the message that marks a stream's end (``complete``, or ``error`` and why)."""
    if error is None:
        return {END_HEADER: "complete"}
    code = getattr(error, "code", ErrorCode.APPLICATION_ERROR)
    text = str(getattr(error, "message", None) or error or type(error).__name__)
    return {
        END_HEADER: "error",
        ERROR_HEADER: " ".join(text.split())[:500],  # one line: a header value cannot hold a line break
        ERROR_CODE_HEADER: str(int(code)) if isinstance(code, int) else str(int(ErrorCode.APPLICATION_ERROR)),
    }


@dataclass(frozen=True, slots=True)
class Nak:
    """A verdict for ``acks=``: the oldest ``count`` unacknowledged messages failed; JetStream
    redelivers them (after ``delay`` seconds, if given). They free their window slots."""

    count: int = 1
    delay: float | None = None


@dataclass(frozen=True, slots=True)
class Term:
    """A verdict for ``acks=``: the oldest ``count`` unacknowledged messages can never be
    processed; JetStream never redelivers them (a work-queue stream drops them)."""

    count: int = 1


@dataclass(frozen=True, slots=True)
class InProgress:
    """A verdict for ``acks=``: still working on every unacknowledged message; JetStream
    restarts their ``ack_wait`` (long work is not redelivered while this keeps coming)."""
