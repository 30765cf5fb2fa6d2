"""What the application asks of a connection: open streams, grant demand, send, cancel.

Every method here checks what the stream's state allows (refusing misuse with
:class:`LocalProtocolError`) and queues the frames it implies.
"""

from __future__ import annotations

import struct

from ._credit import InboundDemand, ReplenishPolicy, check_request_n
from ._errors import ClosedResourceError, ConnectionLostError, ErrorCode, LocalProtocolError, is_stream_code
from ._events import Interaction
from ._fragments import encode_item
from ._frames import (
    FLAG_COMPLETE,
    FLAG_NEXT,
    MAX_REQUEST_N,
    CancelFrame,
    ErrorFrame,
    FrameType,
    MetadataPushFrame,
    encode_frame,
    encode_payload,
)
from ._policies import Manual
from ._resume import CLOSED_BY_PEER, SessionState
from ._state import ConnectionState
from ._streams import Half, Signal, Stream

__all__ = ["LocalCalls"]

#: a PAYLOAD's header: stream id, then type and flags (Protocol.md "Frame Header Format")
_PAYLOAD_HEADER = struct.Struct(">IH")
_NEXT = (FrameType.PAYLOAD << 10) | FLAG_NEXT
_NEXT_COMPLETE = _NEXT | FLAG_COMPLETE


class LocalCalls(ConnectionState):
    """The local API of a :class:`Connection`."""

    # ------------------------------------------------------------------ local API: requests

    def _check_open(self) -> None:
        if self._closed:
            reason = self._close_error  # why it closed (a lost link, a refused SETUP...), as the cause
            detail = f" ({reason})" if reason is not None else ""
            raise ClosedResourceError(f"the connection is closed{detail}; open a new one") from reason
        if not self._setup_done:
            raise LocalProtocolError("the server cannot make requests before the client's SETUP arrived")
        if self._draining is not None:
            raise ClosedResourceError(
                f"the peer is closing the connection (CONNECTION_CLOSE: {self._draining}); open a new one"
            ) from self._draining

    def request(
        self,
        interaction: Interaction,
        *,
        metadata: bytes | None = None,
        data: bytes = b"",
        policy: ReplenishPolicy | None = None,
        initial_n: int = 0,
        auto_ack: bool = True,
        complete: bool = False,
        now: float,
    ) -> int:
        """Open a stream as requester and return its id. Queues the request frame(s).

        For STREAM and CHANNEL the demand of our inbound half follows ``policy`` (default:
        manual); the initial demand is ``initial_n`` if given, else the policy's, and must
        be at least 1. ``data`` of a CHANNEL is the first item we send; ``complete=True``
        says it is also the last.

        Raises:
            LocalProtocolError: bad demand, or stream ids exhausted.
            ClosedResourceError: the connection is closed.
        """
        self._check_open()
        demand: InboundDemand | None = None
        if interaction in (Interaction.STREAM, Interaction.CHANNEL):
            demand = InboundDemand(policy if policy is not None else Manual(), auto_ack=auto_ack)
            initial_n = check_request_n(demand.request(initial_n, now) if initial_n else demand.start(now))
        else:
            initial_n, complete = 0, False
            if interaction is Interaction.RESPONSE:
                demand = InboundDemand(Manual(1), auto_ack=auto_ack)
                demand.start(now)
        sid = self._next_stream_id
        if sid > MAX_REQUEST_N:
            raise LocalProtocolError("stream ids are exhausted on this connection; open a new one")
        self._next_stream_id += 2
        if interaction is not Interaction.FNF:
            s = Stream(sid, interaction, requester=True)
            s.demand = self._demand_of(sid, demand) if demand is not None else None
            if complete and interaction is Interaction.CHANNEL:  # its first item was its last
                self._streams.finish_outbound(s)
            self._streams.open(s)
        self._out.extend(
            encode_item(
                sid,
                FrameType(interaction),
                metadata,
                data,
                self.config.max_frame_size,
                initial_n=initial_n,
                complete=complete,
            )
        )
        return sid

    def metadata_push(self, metadata: bytes) -> None:
        """Send METADATA_PUSH. Queues it."""
        self._check_open()
        self._queue(encode_frame(MetadataPushFrame(metadata=metadata)))

    def fail_locally(self, reason: str) -> None:
        """This side cannot go on (a fault of its own: an unexpected exception, a transport
        that would not take a frame): queue ERROR[CONNECTION_ERROR] saying ``reason`` and
        close; every stream ends with :class:`ConnectionLostError` saying it. Emits
        :class:`ConnectionClosed`. Idempotent."""
        if not self._closed:
            message = f"the connection failed on this side: {reason}"
            self._queue(encode_frame(ErrorFrame(stream_id=0, code=ErrorCode.CONNECTION_ERROR, message=message)))
            self._close(ConnectionLostError(message))

    def close(self) -> None:
        """Close locally: every stream is over. Emits :class:`ConnectionClosed` (error None).

        A resumable connection first queues ERROR[CONNECTION_ERROR] "closed": a peer that
        only saw the transport end would keep the session waiting for a RESUME.
        """
        if not self._closed:
            session = self._session
            if session is not None and session.state is SessionState.ATTACHED and self._setup_done:
                self._queue(
                    encode_frame(ErrorFrame(stream_id=0, code=ErrorCode.CONNECTION_ERROR, message=CLOSED_BY_PEER))
                )
            self._close(None)

    # ------------------------------------------------------------------ local API: our inbound halves

    def _demand_of(self, stream_id: int, demand: InboundDemand) -> InboundDemand:
        """``demand`` bound to ``stream_id``: its grants queue REQUEST_N from now on. The
        application drives it directly (:meth:`demand`: take, ack, request); the connection
        feeds it what arrives and ends it with the stream."""
        out = self._out
        demand.on_grant = lambda n: out.request_n(stream_id, n)
        return demand

    def set_policy(self, stream_id: int, policy: ReplenishPolicy, now: float, *, auto_ack: bool = True) -> None:
        """Give a channel we respond to its inbound demand and grant its initial demand now.

        A responder answers REQUEST_CHANNEL with REQUEST_N (Protocol.md "Request Channel").
        May queue REQUEST_N.
        """
        s = self._streams.get(stream_id)
        if s is None or s.inbound is not Half.OPEN:
            return
        s.demand = self._demand_of(stream_id, InboundDemand(policy, auto_ack=auto_ack))
        s.demand.start(now)

    def cancel(self, stream_id: int) -> None:
        """Cancel our inbound half: the peer stops sending. Idempotent. Queues CANCEL.

        A channel's requester cancelling ends the whole stream (Protocol.md "Request
        Channel": "Upon sending a CANCEL, the stream is terminated on the Requester"): its
        outbound half ends too, and nothing more is sent on it.
        """
        s = self._streams.get(stream_id)
        if s is not None and self._streams.stop(s):
            self._queue(encode_frame(CancelFrame(stream_id=stream_id)))
            self._maybe_forget(s)

    # ------------------------------------------------------------------ local API: our outbound halves

    def send_payload(
        self, stream_id: int, data: bytes, metadata: bytes | None = None, *, complete: bool = False
    ) -> None:
        """Send one item on our outbound half (and complete it if asked). Queues PAYLOAD frame(s).

        Raises:
            LocalProtocolError: the outbound half is not open, or there is no credit
                (wait for :class:`CreditGranted`).
        """
        if self.send_item(stream_id, data, metadata, complete) < 0:
            self._outbound(stream_id, Signal.SEND)  # raises if the half is not open
            raise LocalProtocolError("no credit left: wait for the peer's REQUEST_N before sending")

    def send_item(self, stream_id: int, data: bytes, metadata: bytes | None = None, last: bool = False) -> int:
        """:meth:`send_payload` for a producer that checks nothing itself: sends one item if the
        outbound half is open and has credit. Queues PAYLOAD frame(s).

        Returns the credit left afterwards (0 or more), or -1 when nothing was sent (no
        credit, or the half is not open: ask :meth:`send_window` and :meth:`can_send`).
        """
        s = self._streams.get(stream_id)
        if s is None or s.outbound is not Half.OPEN:
            return -1
        left = s.send_credit.take()
        if left < 0:
            return -1
        if s.interaction is Interaction.RESPONSE:
            last = True
        limit = self.config.max_frame_size
        if metadata is None and len(data) + 64 < limit:
            self._out.add(_PAYLOAD_HEADER.pack(stream_id, _NEXT_COMPLETE if last else _NEXT) + data)
        elif (len(data) if metadata is None else len(data) + len(metadata)) + 64 < limit:
            self._out.add(encode_payload(stream_id, data, metadata, complete=last))
        else:
            self._out.extend(encode_item(stream_id, FrameType.PAYLOAD, metadata, data, limit, complete=last))
        if last:
            self._streams.finish_outbound(s)
            self._maybe_forget(s)
        return left

    def send_complete(self, stream_id: int) -> None:
        """Complete our outbound half. Queues PAYLOAD(COMPLETE).

        Raises:
            LocalProtocolError: the outbound half is not open.
        """
        s = self._outbound(stream_id, Signal.FINISH)
        self._queue(encode_payload(stream_id, b"", None, next=False, complete=True))
        self._maybe_forget(s)

    def _outbound(self, stream_id: int, signal: Signal) -> Stream:
        s = self._streams.get(stream_id)
        if s is None:
            raise LocalProtocolError(f"stream {stream_id} is not open for sending (no such stream, or it is over)")
        s.local(True, signal)
        return s

    def send_error(self, stream_id: int, code: int, message: str) -> bool:
        """End the stream in both directions with ERROR. Queues it.

        Returns False (and sends nothing) when the stream is already over.

        Raises:
            LocalProtocolError: ``code`` is not a stream-level code.
        """
        if not is_stream_code(code):
            raise LocalProtocolError(f"error code 0x{code:x} is not a stream-level code (0x201..0xFFFFFFFE)")
        s = self._streams.get(stream_id)
        if s is None:
            return False
        self._forget(s)
        self._queue(encode_frame(ErrorFrame(stream_id=stream_id, code=code, message=message)))
        return True
