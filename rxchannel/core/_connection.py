"""The sans-IO RSocket connection: bytes of frames in, events out, frames to send out.

Nothing here does I/O or reads a clock: every method that depends on time takes ``now``
(seconds, any monotonic origin). Methods that queue frames say so; drain them with
:meth:`Connection.frames_to_send` and the events with :meth:`Connection.events`.

What a frame means for a stream is decided by the stream's transition tables
(:mod:`._streams`); SETUP by :mod:`._setup`; fragmentation by :mod:`._fragments`; demand
by each stream's :class:`~._credit.InboundDemand`.
"""

from __future__ import annotations

from collections import deque

from ._config import ConnectionConfig, Role
from ._credit import InboundDemand, ReplenishPolicy, check_request_n
from ._errors import (
    ClosedResourceError,
    ConnectionLostError,
    ErrorCode,
    LocalProtocolError,
    RemoteProtocolError,
    RxChannelError,
    SetupRejectedError,
    remote_error,
)
from ._events import (
    ConnectionClosed,
    CreditGranted,
    Event,
    InboundCompleted,
    Interaction,
    MetadataPushed,
    PayloadReceived,
    RequestReceived,
    SetupReceived,
    StreamCancelled,
    StreamErrored,
)
from ._fragments import Reassembly, encode_item
from ._frames import (
    FLAG_COMPLETE,
    FLAG_FOLLOWS,
    FLAG_METADATA,
    FLAG_NEXT,
    MAX_REQUEST_N,
    CancelFrame,
    ErrorFrame,
    FrameDecodeError,
    FrameType,
    KeepaliveFrame,
    MetadataPushFrame,
    PayloadFrame,
    RequestFrame,
    RequestNFrame,
    SetupFrame,
    UnsupportedFrame,
    decode_frame,
    encode_frame,
    encode_payload,
    split_metadata,
)
from ._policies import Manual
from ._setup import check_first_frame, client_setup
from ._streams import INBOUND, OUTBOUND, Half, Outcome, Signal, Stream, transition

__all__ = ["Connection"]

_SETUP_ERRORS = frozenset(
    {ErrorCode.INVALID_SETUP, ErrorCode.UNSUPPORTED_SETUP, ErrorCode.REJECTED_SETUP, ErrorCode.REJECTED_RESUME}
)


class Connection:
    """One RSocket connection, either role, as a pure state machine.

    A client queues its SETUP frame on construction.
    """

    def __init__(self, role: Role, config: ConnectionConfig | None = None, *, now: float):
        self.role = role
        self.config = config or ConnectionConfig()
        self._streams: dict[int, Stream] = {}
        self._out: list[bytes] = []
        self._events: deque[Event] = deque()
        self._next_stream_id = 1 if role is Role.CLIENT else 2
        self._setup_done = role is Role.CLIENT
        self._closed = False
        self._last_received = now
        self._lifetime = self.config.max_lifetime
        self._keepalive_due: float | None = None
        #: frames dropped because the spec says to ignore them (unknown stream, late frame ...)
        self.ignored_frames = 0
        #: (stream id, n) of a REQUEST_N that is the last queued frame, so the next one merges into it
        self._last_request_n: tuple[int, int] | None = None
        if role is Role.CLIENT:
            self._keepalive_due = now + self.config.keepalive_interval
            self._queue(encode_frame(client_setup(self.config)))

    # ------------------------------------------------------------------ output

    def frames_to_send(self) -> list[bytes]:
        """Drain the frames queued for the transport, oldest first (one frame per item)."""
        out, self._out = self._out, []
        self._last_request_n = None
        return out

    def events(self) -> list[Event]:
        """Drain the pending events, oldest first."""
        events = list(self._events)
        self._events.clear()
        return events

    def next_event(self) -> Event | None:
        """Pop the oldest pending event, or None."""
        return self._events.popleft() if self._events else None

    def _queue(self, frame: bytes) -> None:
        self._out.append(frame)
        self._last_request_n = None

    # ------------------------------------------------------------------ queries

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    @property
    def reassembly_bytes(self) -> int:
        """Bytes held for items whose fragments are still arriving."""
        return sum(s.partial.size for s in self._streams.values() if s.partial is not None)

    def stream_ids(self) -> list[int]:
        return list(self._streams)

    def stream(self, stream_id: int) -> Stream | None:
        """One stream's state for inspection (read it; drive it through the methods), or None once over."""
        return self._streams.get(stream_id)

    def demand(self, stream_id: int) -> InboundDemand | None:
        """The demand of our inbound half of ``stream_id`` (read it), or None once it is over."""
        s = self._streams.get(stream_id)
        return s.demand if s is not None and s.inbound is Half.OPEN else None

    def send_window(self, stream_id: int) -> int:
        """Items we may still send on ``stream_id`` now (0 if none or the stream is over)."""
        s = self._streams.get(stream_id)
        if s is None or s.outbound is not Half.OPEN:
            return 0
        return MAX_REQUEST_N if s.send_credit.unbounded else s.send_credit.available

    def can_send(self, stream_id: int) -> bool:
        s = self._streams.get(stream_id)
        return s is not None and s.outbound is Half.OPEN

    # ------------------------------------------------------------------ time

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called, or None."""
        if self._closed:
            return None
        deadline = self._last_received + self._lifetime
        if self._keepalive_due is not None:
            deadline = min(deadline, self._keepalive_due)
        return deadline

    def handle_timer(self, now: float) -> None:
        """Send a due KEEPALIVE or declare a silent peer dead. Queues frames."""
        if self._closed:
            return
        if now >= self._last_received + self._lifetime:
            silent = now - self._last_received
            self._queue(
                encode_frame(ErrorFrame(stream_id=0, code=ErrorCode.CONNECTION_ERROR, message="keepalive timeout"))
            )
            self._close(
                ConnectionLostError(
                    f"no frame from the peer for {silent:.1f} s (keepalive limit {self._lifetime:.1f} s): "
                    "the peer or the network is gone; reconnect to continue"
                )
            )
            return
        if self._keepalive_due is not None and now >= self._keepalive_due:
            self._queue(encode_frame(KeepaliveFrame(respond=True)))
            self._keepalive_due = now + self.config.keepalive_interval

    # ------------------------------------------------------------------ input

    def receive(self, data: bytes, now: float) -> None:
        """Process the bytes of exactly one frame. May queue frames and events.

        Never raises for any input: a malformed frame ends the connection with
        ERROR[CONNECTION_ERROR] and a :class:`ConnectionClosed` event.
        """
        if self._closed:
            return
        self._last_received = now
        if len(data) >= 6 and data[4] >> 2 == FrameType.PAYLOAD and self._setup_done:
            self._receive_payload(data, now)
            return
        try:
            frame = decode_frame(data)
        except FrameDecodeError as exc:
            self._fail(exc)
            return
        if not self._setup_done:
            self._on_first_frame(frame)
        elif isinstance(frame, (PayloadFrame, RequestNFrame, CancelFrame)):
            self._on_stream_frame(frame, now)
        elif isinstance(frame, RequestFrame):
            self._on_request(frame)
        elif isinstance(frame, ErrorFrame):
            self._on_error_frame(frame)
        elif isinstance(frame, KeepaliveFrame):
            if frame.respond:
                self._queue(encode_frame(KeepaliveFrame(respond=False, data=frame.data)))
        elif isinstance(frame, MetadataPushFrame) and frame.stream_id == 0:
            self._events.append(MetadataPushed(metadata=frame.metadata))
        elif isinstance(frame, UnsupportedFrame) and not frame.ignorable:
            self._fail(
                RemoteProtocolError(
                    f"frame type 0x{frame.type:02x} is not supported here and its IGNORE flag is not set",
                    code=ErrorCode.CONNECTION_ERROR,
                )
            )
        else:
            # SETUP after setup, LEASE we never asked for, METADATA_PUSH off stream 0,
            # ignorable extensions (Protocol.md "Handling the Unexpected")
            self.ignored_frames += 1

    def _receive_payload(self, data: bytes, now: float) -> None:
        """The hot path: a PAYLOAD frame on an open inbound half, decoded in place (no frame object)."""
        sid = int.from_bytes(data[:4], "big") & 0x7FFFFFFF
        s = self._streams.get(sid)
        if s is None:
            self.ignored_frames += 1
            return
        if s.pending_request is not None or s.inbound is not Half.OPEN:
            try:
                frame = decode_frame(data)
            except FrameDecodeError as exc:
                self._fail(exc)
                return
            self._on_stream_frame(frame, now)  # type: ignore[arg-type]
            return
        flags = ((data[4] & 3) << 8) | data[5]
        metadata: bytes | None = None
        if flags & FLAG_METADATA:
            try:
                metadata, payload = split_metadata(data, 6, flags)
            except FrameDecodeError as exc:
                self._fail(exc)
                return
        else:
            payload = data[6:]
        self._on_payload(
            s, metadata, payload, bool(flags & FLAG_FOLLOWS), bool(flags & FLAG_COMPLETE), bool(flags & FLAG_NEXT), now
        )

    def connection_lost(self, error: RxChannelError | None = None) -> None:
        """The transport ended (EOF or failure). Emits :class:`ConnectionClosed`."""
        if not self._closed:
            self._close(error or ConnectionLostError("the peer closed the connection"))

    def _on_first_frame(self, frame: object) -> None:
        refusal = check_first_frame(frame, self.config)
        if refusal is not None:
            self._fail(refusal)
            return
        assert isinstance(frame, SetupFrame)
        self._setup_done = True
        self._lifetime = frame.lifetime_ms / 1000.0
        self._events.append(
            SetupReceived(
                keepalive_ms=frame.keepalive_ms,
                lifetime_ms=frame.lifetime_ms,
                metadata_mime=frame.metadata_mime,
                data_mime=frame.data_mime,
                metadata=frame.metadata,
                data=frame.data,
            )
        )

    def _on_error_frame(self, frame: ErrorFrame) -> None:
        if frame.stream_id == 0:
            if self.role is Role.SERVER and frame.code in _SETUP_ERRORS:
                self.ignored_frames += 1  # a server ignores setup errors (Handling the Unexpected)
                return
            error = remote_error(frame.code, frame.message)
            if isinstance(error, SetupRejectedError):
                error = SetupRejectedError(frame.code, f"the server refused our SETUP: {frame.message}")
            self._close(error)
            return
        s = self._streams.get(frame.stream_id)
        if s is None:
            self.ignored_frames += 1  # unknown or finished stream: ignore (Handling the Unexpected)
        elif s.pending_request is not None:
            del self._streams[s.id]  # the requester gave up before its request was whole
        else:
            self._forget(s)  # ERROR ends both halves
            self._events.append(StreamErrored(stream_id=s.id, error=remote_error(frame.code, frame.message)))

    def _on_request(self, frame: RequestFrame) -> None:
        sid = frame.stream_id
        peer_is_client = self.role is Role.SERVER
        if sid == 0 or (sid % 2 == 1) != peer_is_client:
            parity = "odd" if peer_is_client else "even"
            self._fail(
                RemoteProtocolError(
                    f"{frame.type.name} on stream {sid}: the {'client' if peer_is_client else 'server'} "
                    f"must use {parity} stream ids",
                    code=ErrorCode.CONNECTION_ERROR,
                )
            )
            return
        if sid in self._streams:
            self.ignored_frames += 1  # a request on a stream id in use MUST be ignored
            return
        interaction = Interaction(frame.type)
        refusal = self._refusal(interaction, frame)
        if refusal is not None:
            if interaction is Interaction.FNF:  # fire-and-forget has no stream to answer on
                self.ignored_frames += 1
            else:
                self._queue(encode_frame(ErrorFrame(stream_id=sid, code=refusal[0], message=refusal[1])))
            return
        s = Stream(sid, interaction, requester=False)
        if frame.follows and not frame.complete:
            s.pending_request = frame
            s.partial = Reassembly(self.config.max_payload_size)
            self._streams[sid] = s
            self._add_fragment(s, frame.metadata, frame.data)
            return
        self._open_request(s, frame, frame.metadata, frame.data)

    def _refusal(self, interaction: Interaction, frame: RequestFrame) -> tuple[int, str] | None:
        if len(self._streams) >= self.config.max_streams:
            return ErrorCode.REJECTED, f"too many concurrent streams (limit {self.config.max_streams})"
        if interaction in (Interaction.STREAM, Interaction.CHANNEL) and not 1 <= frame.initial_n <= MAX_REQUEST_N:
            return ErrorCode.INVALID, f"initial request n of {frame.initial_n} is outside 1..{MAX_REQUEST_N}"
        if frame.metadata is not None and len(frame.metadata) > self.config.max_metadata_size:
            return ErrorCode.REJECTED, f"request metadata exceeds {self.config.max_metadata_size} bytes"
        return None

    def _open_request(self, s: Stream, frame: RequestFrame, metadata: bytes | None, data: bytes) -> None:
        s.pending_request = None
        s.partial = None
        if s.interaction is Interaction.FNF:
            self._streams.pop(s.id, None)
        else:
            if s.interaction is not Interaction.RESPONSE:
                s.send_credit.granted(frame.initial_n)
            if s.inbound is Half.OPEN:
                # a responder's inbound half (a channel) gets demand when the application sets
                # its policy (set_policy); until then nothing is granted
                s.demand = InboundDemand()
                if frame.complete:
                    s.inbound = Half.DONE
            self._streams[s.id] = s
        self._events.append(
            RequestReceived(
                stream_id=s.id,
                interaction=s.interaction,
                metadata=metadata,
                data=data,
                initial_n=frame.initial_n,
                complete=frame.complete,
            )
        )

    def _add_fragment(self, s: Stream, metadata: bytes | None, data: bytes) -> bool:
        assert s.partial is not None
        try:
            s.partial.add(s.id, metadata, data)
        except RemoteProtocolError as exc:
            self._violation(s, exc)
            return False
        return True

    def _on_stream_frame(self, frame: PayloadFrame | RequestNFrame | CancelFrame, now: float) -> None:
        s = self._streams.get(frame.stream_id)
        if s is None:
            self.ignored_frames += 1  # unknown or finished stream: ignore (Handling the Unexpected)
        elif s.pending_request is not None:
            self._on_request_fragment(s, frame)
        elif isinstance(frame, PayloadFrame):
            self._on_payload(s, frame.metadata, frame.data, frame.follows, frame.complete, frame.next, now)
        elif isinstance(frame, RequestNFrame):
            self._on_credit(s, frame.n)
        else:
            self._on_cancel(s)

    def _on_request_fragment(self, s: Stream, frame: PayloadFrame | RequestNFrame | CancelFrame) -> None:
        """A stream whose request is still arriving accepts only its fragments (or a CANCEL)."""
        if isinstance(frame, PayloadFrame):
            assert s.pending_request is not None
            if self._add_fragment(s, frame.metadata, frame.data) and not (frame.follows and not frame.complete):
                assert s.partial is not None
                metadata, data = s.partial.result()
                self._open_request(s, s.pending_request, metadata, data)
        elif isinstance(frame, CancelFrame):
            del self._streams[s.id]  # the requester gave up before the request was whole
        else:
            self._violation(
                s,
                RemoteProtocolError(
                    "REQUEST_N arrived while the request's fragments were incomplete",
                    code=ErrorCode.INVALID,
                    stream_id=s.id,
                ),
            )

    def _signal(self, s: Stream, outbound: bool, signal: Signal, what: str) -> Outcome:
        """Apply ``signal`` to one half through its table; a violation ends the stream."""
        state = s.outbound if outbound else s.inbound
        new, outcome = transition(OUTBOUND if outbound else INBOUND, state, signal)
        if outcome is Outcome.VIOLATION:
            self._violation(s, RemoteProtocolError(self._why(s, state, what), code=ErrorCode.INVALID, stream_id=s.id))
        elif outcome is Outcome.IGNORE:
            self.ignored_frames += 1
        elif outbound:
            s.outbound = new
        else:
            s.inbound = new
        return outcome

    @staticmethod
    def _why(s: Stream, state: Half, what: str) -> str:
        if state is Half.DONE:
            return f"{what} after the sender completed this direction"
        role = "responder" if s.requester else "requester"
        return f"{what} is not allowed from the {role} of a {s.interaction.name} stream"

    def _on_payload(
        self, s: Stream, metadata: bytes | None, data: bytes, follows: bool, complete: bool, next: bool, now: float
    ) -> None:
        more = follows and not complete  # C with F: F is ignored (Handling the Unexpected)
        if s.partial is None:
            is_item = next or more
            if not is_item and not complete:
                if self._signal(s, False, Signal.NEXT, "PAYLOAD") is Outcome.ACT:
                    self._violation(
                        s,
                        RemoteProtocolError(
                            "PAYLOAD with neither NEXT nor COMPLETE set", code=ErrorCode.INVALID, stream_id=s.id
                        ),
                    )
                return
            if self._signal(s, False, Signal.NEXT if is_item else Signal.COMPLETE, "PAYLOAD") is not Outcome.ACT:
                return
            if is_item:
                size = len(data) + (len(metadata) if metadata else 0)  # the first fragment's, if fragmented
                assert s.demand is not None
                if not s.demand.received(size, now):
                    self._violation(
                        s,
                        RemoteProtocolError(
                            f"PAYLOAD past credit: {s.demand.granted_total} item(s) were granted and all were used "
                            "(Reactive Streams rule 1.1)",
                            code=ErrorCode.INVALID,
                            stream_id=s.id,
                        ),
                    )
                    return
                if more:
                    s.partial = Reassembly(self.config.max_payload_size)
                    self._add_fragment(s, metadata, data)
                    return
        else:
            is_item = True
            if not self._add_fragment(s, metadata, data) or more:
                return
            metadata, data = s.partial.result()
            s.partial = None
        if is_item:
            self._events.append(PayloadReceived(stream_id=s.id, data=data, metadata=metadata))
        if complete or s.interaction is Interaction.RESPONSE:
            if is_item:
                self._signal(s, False, Signal.COMPLETE, "PAYLOAD")
            self._inbound_over(s)
            self._events.append(InboundCompleted(stream_id=s.id))
            self._maybe_forget(s)

    def _on_credit(self, s: Stream, n: int) -> None:
        if self._signal(s, True, Signal.CREDIT, "REQUEST_N") is not Outcome.ACT:
            return
        if not 1 <= n <= MAX_REQUEST_N:
            self._violation(
                s,
                RemoteProtocolError(
                    f"REQUEST_N of {n} is outside 1..{MAX_REQUEST_N}", code=ErrorCode.INVALID, stream_id=s.id
                ),
            )
            return
        s.send_credit.granted(n)
        self._events.append(CreditGranted(stream_id=s.id, n=n))

    def _on_cancel(self, s: Stream) -> None:
        if self._signal(s, True, Signal.CANCEL, "CANCEL") is Outcome.ACT:
            self._events.append(StreamCancelled(stream_id=s.id))
        self._maybe_forget(s)

    def _violation(self, s: Stream, error: RemoteProtocolError) -> None:
        """The peer broke the protocol on one stream: end it on both sides. Queues ERROR.

        A request still being reassembled was never announced to the application, so
        it ends silently here (and a fire-and-forget gets no ERROR: it has no stream).
        """
        self._forget(s)
        if s.interaction is not Interaction.FNF:
            self._queue(encode_frame(ErrorFrame(stream_id=s.id, code=error.code, message=str(error))))
        if s.pending_request is None:
            self._events.append(StreamErrored(stream_id=s.id, error=error))

    def _inbound_over(self, s: Stream) -> None:
        s.partial = None
        if s.demand is not None:
            s.demand.end()

    def _maybe_forget(self, s: Stream) -> None:
        if s.finished:
            self._forget(s)

    def _forget(self, s: Stream) -> None:
        self._inbound_over(s)
        self._streams.pop(s.id, None)

    def _fail(self, error: RemoteProtocolError) -> None:
        """The peer broke the protocol on the connection: send ERROR on stream 0 and close."""
        self._queue(encode_frame(ErrorFrame(stream_id=0, code=error.code, message=str(error))))
        self._close(error)

    def _close(self, error: RxChannelError | None) -> None:
        self._closed = True
        for s in self._streams.values():
            self._inbound_over(s)
        self._streams.clear()
        self._events.append(ConnectionClosed(error=error))

    # ------------------------------------------------------------------ local API: requests

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedResourceError("the connection is closed; open a new one")
        if not self._setup_done:
            raise LocalProtocolError("the server cannot make requests before the client's SETUP arrived")

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
            s.demand = demand
            if complete:
                s.outbound = Half.DONE
            self._streams[sid] = s
        self._last_request_n = None
        self._out += encode_item(
            sid,
            FrameType(interaction),
            metadata,
            data,
            self.config.max_frame_size,
            initial_n=initial_n,
            complete=complete,
        )
        return sid

    def metadata_push(self, metadata: bytes) -> None:
        """Send METADATA_PUSH. Queues it."""
        self._check_open()
        self._queue(encode_frame(MetadataPushFrame(metadata=metadata)))

    def close(self) -> None:
        """Close locally: every stream is over. Emits :class:`ConnectionClosed` (error None)."""
        if not self._closed:
            self._close(None)

    # ------------------------------------------------------------------ local API: our inbound halves

    def set_policy(self, stream_id: int, policy: ReplenishPolicy, now: float, *, auto_ack: bool = True) -> None:
        """Give a channel we respond to its inbound demand and grant its initial demand now.

        A responder answers REQUEST_CHANNEL with REQUEST_N (Protocol.md "Request Channel").
        May queue REQUEST_N.
        """
        s = self._streams.get(stream_id)
        if s is None or s.inbound is not Half.OPEN:
            return
        s.demand = InboundDemand(policy, auto_ack=auto_ack)
        self._grant(s, s.demand.start(now))

    def request_n(self, stream_id: int, n: int, now: float) -> None:
        """Grant the peer ``n`` more items on our inbound half. Queues REQUEST_N.

        A no-op once the inbound half is over (Reactive Streams §3.6).

        Raises:
            LocalProtocolError: ``n`` is not positive (§3.9).
        """
        check_request_n(n)
        demand, s = self._inbound(stream_id)
        if demand is not None:
            self._grant(s, demand.request(n, now))

    def wants_next(self, stream_id: int, now: float) -> None:
        """The application asks for the next item (with auto-ack: it is done with the ones it took).

        May queue REQUEST_N. A no-op once the inbound half is over.
        """
        demand, s = self._inbound(stream_id)
        if demand is not None:
            self._grant(s, demand.wants_next(now))

    def pulled(self, stream_id: int) -> None:
        """The application took one delivered item."""
        demand, _ = self._inbound(stream_id)
        if demand is not None:
            demand.pulled()

    def ack(self, stream_id: int, count: int, now: float) -> None:
        """The application is done with ``count`` items it took; the policy may grant more.

        May queue REQUEST_N. A no-op once the inbound half is over.

        Raises:
            LocalProtocolError: more than were taken and not yet acknowledged.
        """
        demand, s = self._inbound(stream_id)
        if demand is not None:
            self._grant(s, demand.ack(count, now))

    def cancel(self, stream_id: int) -> None:
        """Cancel our inbound half: the peer stops sending. Idempotent. Queues CANCEL."""
        s = self._streams.get(stream_id)
        if s is None:
            return
        _, outcome = transition(INBOUND, s.inbound, Signal.STOP)
        if outcome is Outcome.ACT:
            s.inbound = Half.CANCELLED
            self._inbound_over(s)
            self._queue(encode_frame(CancelFrame(stream_id=stream_id)))
            self._maybe_forget(s)

    def _inbound(self, stream_id: int) -> tuple[InboundDemand | None, Stream]:
        s = self._streams.get(stream_id)
        if s is None or s.inbound is not Half.OPEN:
            return None, s  # type: ignore[return-value]
        return s.demand, s

    def _grant(self, s: Stream, n: int) -> None:
        """Queue REQUEST_N for ``n`` (if any), merged into the previous frame when that is a
        REQUEST_N for the same stream: credit goes out once per flush, however many items were
        acknowledged."""
        if n <= 0:
            return
        last = self._last_request_n
        if last is not None and last[0] == s.id:
            n = min(MAX_REQUEST_N, n + last[1])
            self._out[-1] = encode_frame(RequestNFrame(stream_id=s.id, n=n))
        else:
            self._out.append(encode_frame(RequestNFrame(stream_id=s.id, n=n)))
        self._last_request_n = (s.id, n)

    # ------------------------------------------------------------------ local API: our outbound halves

    def send_payload(
        self, stream_id: int, data: bytes, metadata: bytes | None = None, *, complete: bool = False
    ) -> None:
        """Send one item on our outbound half (and complete it if asked). Queues PAYLOAD frame(s).

        Raises:
            LocalProtocolError: the outbound half is not open, or there is no credit
                (wait for :class:`CreditGranted`).
        """
        s = self._outbound(stream_id, Signal.SEND)
        s.send_credit.used()
        if s.interaction is Interaction.RESPONSE:
            complete = True
        self._last_request_n = None
        limit = self.config.max_frame_size
        if len(data) + 64 < limit and (metadata is None or len(metadata) + len(data) + 64 < limit):
            self._out.append(encode_payload(stream_id, data, metadata, complete=complete))
        else:
            self._out += encode_item(stream_id, FrameType.PAYLOAD, metadata, data, limit, complete=complete)
        if complete:
            s.outbound = Half.DONE
            self._maybe_forget(s)

    def send_complete(self, stream_id: int) -> None:
        """Complete our outbound half. Queues PAYLOAD(COMPLETE).

        Raises:
            LocalProtocolError: the outbound half is not open.
        """
        s = self._outbound(stream_id, Signal.FINISH)
        self._queue(encode_payload(stream_id, b"", None, next=False, complete=True))
        s.outbound = Half.DONE
        self._maybe_forget(s)

    def _outbound(self, stream_id: int, signal: Signal) -> Stream:
        s = self._streams.get(stream_id)
        if s is None:
            raise LocalProtocolError(f"stream {stream_id} is not open for sending (no such stream, or it is over)")
        _, outcome = transition(OUTBOUND, s.outbound, signal)
        if outcome is not Outcome.ACT:
            raise LocalProtocolError(f"stream {stream_id} is not open for sending (outbound is {s.outbound.value})")
        return s

    def send_error(self, stream_id: int, code: int, message: str) -> bool:
        """End the stream in both directions with ERROR. Queues it.

        Returns False (and sends nothing) when the stream is already over.

        Raises:
            LocalProtocolError: ``code`` is not a stream-level code.
        """
        if not 0x201 <= code <= 0xFFFFFFFE:
            raise LocalProtocolError(f"error code 0x{code:x} is not a stream-level code (0x201..0xFFFFFFFE)")
        s = self._streams.get(stream_id)
        if s is None:
            return False
        self._forget(s)
        self._queue(encode_frame(ErrorFrame(stream_id=stream_id, code=code, message=message)))
        return True
