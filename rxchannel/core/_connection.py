"""The sans-IO RSocket connection: bytes of frames in, events out, frames to send out.

Nothing here does I/O or reads a clock: every method that depends on time takes ``now``
(seconds, any monotonic origin). Methods that queue frames say so; drain them with
:meth:`Connection.frames_to_send` and the events with :meth:`Connection.events`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from ._credit import ReplenishPolicy, check_request_n
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
from ._fragments import MIN_FRAME_SIZE, Reassembly, split
from ._frames import (
    FLAG_COMPLETE,
    FLAG_FOLLOWS,
    FLAG_METADATA,
    FLAG_NEXT,
    MAX_FRAME_SIZE,
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
from ._metadata import COMPOSITE_METADATA, OCTET_STREAM
from ._streams import Action, Half, Stream

__all__ = ["Connection", "ConnectionConfig", "Role"]

_SETUP_ERRORS = frozenset(
    {ErrorCode.INVALID_SETUP, ErrorCode.UNSUPPORTED_SETUP, ErrorCode.REJECTED_SETUP, ErrorCode.REJECTED_RESUME}
)


class Role(Enum):
    CLIENT = "client"
    SERVER = "server"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionConfig:
    """Limits and parameters of one connection (safe defaults; see DESIGN.md §3 and §5).

    Attributes:
        keepalive_interval: seconds between the client's KEEPALIVE frames.
        max_lifetime: seconds without any frame from the peer before the connection is
            declared dead (client: its own setting; server: what the client's SETUP says).
        max_frame_size: frames larger than this are fragmented (a transport's maximum
            message size; at least 64).
        max_payload_size: largest reassembled item accepted from the peer, in bytes.
        max_metadata_size: largest request metadata accepted from the peer, in bytes.
        max_streams: streams the peer may have open on us at once; more are REJECTED.
        setup_check: server only: called with the client's SETUP; returns None to
            accept or a reason to refuse it with ERROR[REJECTED_SETUP].
    """

    keepalive_interval: float = 20.0
    max_lifetime: float = 90.0
    max_frame_size: int = MAX_FRAME_SIZE
    max_payload_size: int = 64 * 1024 * 1024
    max_metadata_size: int = 1024 * 1024
    max_streams: int = 1024
    metadata_mime: str = COMPOSITE_METADATA
    data_mime: str = OCTET_STREAM
    setup_metadata: bytes | None = None
    setup_data: bytes = b""
    setup_check: Callable[[SetupFrame], str | None] | None = None

    def __post_init__(self) -> None:
        if not MIN_FRAME_SIZE <= self.max_frame_size <= MAX_FRAME_SIZE:
            raise ValueError(f"max_frame_size must be in {MIN_FRAME_SIZE}..{MAX_FRAME_SIZE}, got {self.max_frame_size}")
        if self.keepalive_interval <= 0 or self.max_lifetime <= 0:
            raise ValueError("keepalive_interval and max_lifetime must be positive")


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
        #: the latest time any method was given (for credit RTT samples)
        self._now = now
        self._lifetime = self.config.max_lifetime
        self._keepalive_due: float | None = None
        #: frames dropped because the spec says to ignore them (unknown stream, late frame ...)
        self.ignored_frames = 0
        #: (stream id, n) of a REQUEST_N that is the last queued frame, so the next one merges into it
        self._last_request_n: tuple[int, int] | None = None
        if role is Role.CLIENT:
            self._keepalive_due = now + self.config.keepalive_interval
            self._queue(
                encode_frame(
                    SetupFrame(
                        keepalive_ms=int(self.config.keepalive_interval * 1000),
                        lifetime_ms=int(self.config.max_lifetime * 1000),
                        metadata_mime=self.config.metadata_mime,
                        data_mime=self.config.data_mime,
                        metadata=self.config.setup_metadata,
                        data=self.config.setup_data,
                    )
                )
            )

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

    # ------------------------------------------------------------------ introspection

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    @property
    def reassembly_bytes(self) -> int:
        """Bytes held for items whose fragments are still arriving (bounded by
        ``max_payload_size`` per stream and ``max_streams`` streams)."""
        return sum(s.partial.size for s in self._streams.values() if s.partial is not None)

    def stream_ids(self) -> list[int]:
        return list(self._streams)

    def stream(self, stream_id: int) -> Stream | None:
        """The state of one stream (read-only by convention), or None once it is over."""
        return self._streams.get(stream_id)

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
        self._now = now
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
        self._last_received = self._now = now
        if len(data) >= 6 and data[4] >> 2 == FrameType.PAYLOAD and self._setup_done:
            self._receive_payload(data)
            return
        try:
            frame = decode_frame(data)
        except FrameDecodeError as exc:
            self._fail(exc)
            return
        if not self._setup_done:
            self._on_first_frame(frame)
        elif isinstance(frame, PayloadFrame):
            self._on_stream_frame(frame, FrameType.PAYLOAD)
        elif isinstance(frame, RequestNFrame):
            self._on_stream_frame(frame, FrameType.REQUEST_N)
        elif isinstance(frame, RequestFrame):
            self._on_request(frame)
        elif isinstance(frame, CancelFrame):
            self._on_stream_frame(frame, FrameType.CANCEL)
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

    def _receive_payload(self, data: bytes) -> None:
        """The hot path: a PAYLOAD frame, decoded in place (no frame object)."""
        sid = int.from_bytes(data[:4], "big") & 0x7FFFFFFF
        flags = ((data[4] & 3) << 8) | data[5]
        s = self._streams.get(sid)
        if s is None:
            self.ignored_frames += 1
            return
        if s.pending_request is not None or s.rule(FrameType.PAYLOAD) is not Action.PAYLOAD:
            try:
                frame = decode_frame(data)
            except FrameDecodeError as exc:
                self._fail(exc)
                return
            self._on_stream_frame(frame, FrameType.PAYLOAD)  # type: ignore[arg-type]
            return
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
            s, metadata, payload, bool(flags & FLAG_FOLLOWS), bool(flags & FLAG_COMPLETE), bool(flags & FLAG_NEXT)
        )

    def connection_lost(self, error: RxChannelError | None = None) -> None:
        """The transport ended (EOF or failure). Emits :class:`ConnectionClosed`."""
        if not self._closed:
            self._close(error or ConnectionLostError("the peer closed the connection"))

    def _on_first_frame(self, frame: object) -> None:
        if not isinstance(frame, SetupFrame) or frame.stream_id != 0:
            name = type(frame).__name__.removesuffix("Frame").upper()
            self._fail(
                RemoteProtocolError(
                    f"expected SETUP on stream 0 as the first frame, got {name}", code=ErrorCode.INVALID_SETUP
                )
            )
            return
        reason, code = None, ErrorCode.UNSUPPORTED_SETUP
        if frame.version[0] != 1:
            reason = f"protocol version {frame.version[0]}.{frame.version[1]} is not supported (this peer speaks 1.0)"
        elif frame.resume_token is not None:
            reason, code = "resumption is not supported; connect without the resume flag", ErrorCode.REJECTED_SETUP
        elif frame.lease:
            reason = "LEASE is not supported; connect without the lease flag"
        elif frame.keepalive_ms <= 0 or frame.lifetime_ms <= 0:
            reason, code = "keepalive interval and max lifetime must be positive", ErrorCode.INVALID_SETUP
        elif self.config.setup_check is not None:
            reason = self.config.setup_check(frame)
            code = ErrorCode.REJECTED_SETUP
        if reason is not None:
            self._fail(RemoteProtocolError(reason, code=code))
            return
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
        self._on_stream_frame(frame, FrameType.ERROR)

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
        fnf = interaction is Interaction.FNF
        refusal: tuple[int, str] | None = None
        if len(self._streams) >= self.config.max_streams:
            refusal = (ErrorCode.REJECTED, f"too many concurrent streams (limit {self.config.max_streams})")
        elif interaction in (Interaction.STREAM, Interaction.CHANNEL) and not 1 <= frame.initial_n <= MAX_REQUEST_N:
            refusal = (ErrorCode.INVALID, f"initial request n of {frame.initial_n} is outside 1..{MAX_REQUEST_N}")
        elif frame.metadata is not None and len(frame.metadata) > self.config.max_metadata_size:
            refusal = (ErrorCode.REJECTED, f"request metadata exceeds {self.config.max_metadata_size} bytes")
        if refusal is not None:
            if not fnf:  # fire-and-forget has no stream to answer on
                self._queue(encode_frame(ErrorFrame(stream_id=sid, code=refusal[0], message=refusal[1])))
            self.ignored_frames += fnf
            return
        s = Stream(sid, interaction, requester=False, policy=None)
        if frame.follows and not frame.complete:
            s.pending_request = frame
            s.partial = Reassembly(self.config.max_payload_size)
            self._streams[sid] = s
            self._add_fragment(s, frame.metadata, frame.data)
            return
        self._open_request(s, frame, frame.metadata, frame.data)

    def _open_request(self, s: Stream, frame: RequestFrame, metadata: bytes | None, data: bytes) -> None:
        s.pending_request = None
        s.partial = None
        if s.interaction is Interaction.FNF:
            self._streams.pop(s.id, None)
        else:
            if s.interaction is not Interaction.RESPONSE:
                s.send_credit.granted(frame.initial_n)
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

    def _on_stream_frame(
        self, frame: PayloadFrame | RequestNFrame | CancelFrame | ErrorFrame, ftype: FrameType
    ) -> None:
        s = self._streams.get(frame.stream_id)
        if s is None:
            self.ignored_frames += 1  # unknown or finished stream: ignore (Handling the Unexpected)
            return
        if s.pending_request is not None:
            self._on_request_fragment(s, frame, ftype)
            return
        action = s.rule(ftype)
        if action is Action.PAYLOAD:
            assert isinstance(frame, PayloadFrame)
            self._on_payload(s, frame.metadata, frame.data, frame.follows, frame.complete, frame.next)
        elif action is Action.CREDIT:
            self._on_credit(s, frame.n)  # type: ignore[union-attr]
        elif action is Action.CANCEL:
            if s.outbound is Half.OPEN:
                s.outbound = Half.CANCELLED
                self._events.append(StreamCancelled(stream_id=s.id))
            self._maybe_forget(s)
        elif action is Action.ERROR:
            del self._streams[s.id]
            self._events.append(StreamErrored(stream_id=s.id, error=remote_error(frame.code, frame.message)))  # type: ignore[union-attr]
        else:
            role = "responder" if s.requester else "requester"
            self._violation(
                s,
                RemoteProtocolError(
                    f"{ftype.name} is not allowed from the {role} of a {s.interaction.name} stream",
                    code=ErrorCode.INVALID,
                    stream_id=s.id,
                ),
            )

    def _on_request_fragment(
        self, s: Stream, frame: PayloadFrame | RequestNFrame | CancelFrame | ErrorFrame, ftype: FrameType
    ) -> None:
        if ftype is FrameType.PAYLOAD:
            assert isinstance(frame, PayloadFrame) and s.pending_request is not None
            if self._add_fragment(s, frame.metadata, frame.data) and not (frame.follows and not frame.complete):
                assert s.partial is not None
                metadata, data = s.partial.result()
                self._open_request(s, s.pending_request, metadata, data)
        elif ftype in (FrameType.CANCEL, FrameType.ERROR):
            del self._streams[s.id]  # the requester gave up before the request was whole
        else:
            self._violation(
                s,
                RemoteProtocolError(
                    f"{ftype.name} arrived while the request's fragments were incomplete",
                    code=ErrorCode.INVALID,
                    stream_id=s.id,
                ),
            )

    def _on_payload(
        self, s: Stream, metadata: bytes | None, data: bytes, follows: bool, complete: bool, next: bool
    ) -> None:
        if s.inbound is not Half.OPEN:
            if s.inbound is Half.CANCELLED:
                self.ignored_frames += 1  # in flight when we cancelled
                return
            self._violation(
                s,
                RemoteProtocolError(
                    "PAYLOAD after the sender completed this direction", code=ErrorCode.INVALID, stream_id=s.id
                ),
            )
            return
        more = follows and not complete  # C with F: F is ignored (Handling the Unexpected)
        if s.partial is None:
            is_item = next or more
            size = len(data) + (len(metadata) if metadata else 0)  # the first fragment's, if fragmented
            if is_item and not s.receive_credit.received(size, self._now):
                granted = s.receive_credit.granted_total
                self._violation(
                    s,
                    RemoteProtocolError(
                        f"PAYLOAD past credit: {granted} item(s) were granted and all were used "
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
        complete = complete or s.interaction is Interaction.RESPONSE
        if not is_item and not complete:
            self._violation(
                s,
                RemoteProtocolError(
                    "PAYLOAD with neither NEXT nor COMPLETE set", code=ErrorCode.INVALID, stream_id=s.id
                ),
            )
            return
        if is_item:
            self._events.append(PayloadReceived(stream_id=s.id, data=data, metadata=metadata))
        if complete:
            s.inbound = Half.DONE
            self._events.append(InboundCompleted(stream_id=s.id))
            self._maybe_forget(s)

    def _on_credit(self, s: Stream, n: int) -> None:
        if s.outbound is not Half.OPEN:
            self.ignored_frames += 1  # REQUEST_N racing our COMPLETE or their CANCEL
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

    def _violation(self, s: Stream, error: RemoteProtocolError) -> None:
        """The peer broke the protocol on one stream: end it on both sides. Queues ERROR.

        A request still being reassembled was never announced to the application, so
        it ends silently here (and a fire-and-forget gets no ERROR: it has no stream).
        """
        self._streams.pop(s.id, None)
        if s.interaction is not Interaction.FNF:
            self._queue(encode_frame(ErrorFrame(stream_id=s.id, code=error.code, message=str(error))))
        if s.pending_request is None:
            self._events.append(StreamErrored(stream_id=s.id, error=error))

    def _maybe_forget(self, s: Stream) -> None:
        if s.finished:
            self._streams.pop(s.id, None)

    def _fail(self, error: RemoteProtocolError) -> None:
        """The peer broke the protocol on the connection: send ERROR on stream 0 and close."""
        self._queue(encode_frame(ErrorFrame(stream_id=0, code=error.code, message=str(error))))
        self._close(error)

    def _close(self, error: RxChannelError | None) -> None:
        self._closed = True
        self._streams.clear()
        self._events.append(ConnectionClosed(error=error))

    # ------------------------------------------------------------------ local API

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
        initial_n: int = 0,
        complete: bool = False,
        policy: ReplenishPolicy | None = None,
    ) -> int:
        """Open a stream as requester and return its id. Queues the request frame(s).

        For STREAM and CHANNEL the initial demand is ``policy.initial()`` when a policy
        is given, else ``initial_n``; it must be at least 1. ``data`` of a CHANNEL is the
        first item we send; ``complete=True`` says it is also the last.

        Raises:
            LocalProtocolError: bad demand, or stream ids exhausted.
            ClosedResourceError: the connection is closed.
        """
        self._check_open()
        if interaction in (Interaction.STREAM, Interaction.CHANNEL):
            initial_n = check_request_n(policy.initial() if policy is not None else initial_n)
        else:
            initial_n, complete = 0, False
        sid = self._next_stream_id
        if sid > MAX_REQUEST_N:
            raise LocalProtocolError("stream ids are exhausted on this connection; open a new one")
        self._next_stream_id += 2
        if interaction is not Interaction.FNF:
            s = Stream(sid, interaction, requester=True, policy=policy)
            if interaction is not Interaction.RESPONSE:
                s.receive_credit.granted(initial_n, self._now)
            if complete:
                s.outbound = Half.DONE
            self._streams[sid] = s
        self._queue_item(sid, FrameType(interaction), metadata, data, initial_n=initial_n, complete=complete)
        return sid

    def _queue_item(
        self,
        stream_id: int,
        first_type: FrameType,
        metadata: bytes | None,
        data: bytes,
        *,
        initial_n: int = 0,
        complete: bool = False,
        next: bool = True,
    ) -> None:
        """Encode one request or payload, fragmenting to the frame limit. Queues frames."""
        self._last_request_n = None
        limit = self.config.max_frame_size
        is_request = first_type is not FrameType.PAYLOAD
        extra = 4 if first_type in (FrameType.REQUEST_STREAM, FrameType.REQUEST_CHANNEL) else 0
        if not is_request and len(data) + 64 < limit and (metadata is None or len(metadata) + len(data) + 64 < limit):
            self._out.append(encode_payload(stream_id, data, metadata, next=next, complete=complete))
            return
        parts = split(metadata, data, limit, extra)
        last = len(parts) - 1
        for i, (part_meta, part_data) in enumerate(parts):
            follows = i < last
            if i == 0 and is_request:
                frame = encode_frame(
                    RequestFrame(
                        stream_id=stream_id,
                        type=first_type,
                        metadata=part_meta,
                        data=part_data,
                        initial_n=initial_n,
                        follows=follows,
                        complete=complete and not follows,
                    )
                )
            else:
                frame = encode_payload(
                    stream_id, part_data, part_meta, next=next, complete=complete and not follows, follows=follows
                )
            self._out.append(frame)

    def set_policy(self, stream_id: int, policy: ReplenishPolicy, now: float) -> None:
        """Attach a replenish policy to our inbound half and grant its initial demand now.

        Use it for the inbound half of a channel we respond to (a responder answers
        REQUEST_CHANNEL with REQUEST_N: Protocol.md "Request Channel"). May queue REQUEST_N.
        """
        s = self._streams.get(stream_id)
        if s is None or s.inbound is not Half.OPEN:
            return
        s.policy = policy
        first = policy.initial()
        if first > 0 and not s.receive_credit.granted_total:
            wire = s.receive_credit.granted(first, now)
            if wire:
                self._queue_request_n(s.id, wire)
        else:
            self._replenish(s, now)

    def request_n(self, stream_id: int, n: int) -> None:
        """Grant the peer ``n`` more items on our inbound half. Queues REQUEST_N.

        A no-op once the inbound half is over (Reactive Streams rule 3.6).

        Raises:
            LocalProtocolError: ``n`` is not positive (rule 3.9).
        """
        n = check_request_n(n)
        s = self._streams.get(stream_id)
        if s is None or s.inbound is not Half.OPEN:
            return
        wire = s.receive_credit.granted(n, self._now)
        if wire:
            self._queue_request_n(stream_id, wire)

    def consumed(self, stream_id: int, count: int, now: float) -> None:
        """The application processed ``count`` delivered items; the policy may grant more.

        May queue REQUEST_N. A no-op once the stream is over.
        """
        self._now = now
        s = self._streams.get(stream_id)
        if s is None or s.inbound is not Half.OPEN:
            return
        s.receive_credit.consumed(count)
        self._replenish(s, now)

    def _replenish(self, s: Stream, now: float) -> None:
        n = s.policy.demand(s.receive_credit, now)
        if n > 0:
            wire = s.receive_credit.granted(n, now)
            if wire:
                self._queue_request_n(s.id, wire)

    def _queue_request_n(self, stream_id: int, n: int) -> None:
        """Queue REQUEST_N, merged into the previous frame when that is a REQUEST_N for the
        same stream: credit goes out once per flush, however many items were consumed."""
        last = self._last_request_n
        if last is not None and last[0] == stream_id:
            n += last[1]
            self._out[-1] = encode_frame(RequestNFrame(stream_id=stream_id, n=n))
        else:
            self._out.append(encode_frame(RequestNFrame(stream_id=stream_id, n=n)))
        self._last_request_n = (stream_id, n)

    def send_payload(
        self, stream_id: int, data: bytes, metadata: bytes | None = None, *, complete: bool = False
    ) -> None:
        """Send one item on our outbound half (and complete it if asked). Queues PAYLOAD frame(s).

        Raises:
            LocalProtocolError: the outbound half is not open, or there is no credit
                (wait for :class:`CreditGranted`).
        """
        s = self._streams.get(stream_id)
        if s is None or s.outbound is not Half.OPEN:
            raise LocalProtocolError(f"stream {stream_id} is not open for sending ({self._why_not(s)})")
        s.send_credit.used()
        if s.interaction is Interaction.RESPONSE:
            complete = True
        self._queue_item(stream_id, FrameType.PAYLOAD, metadata, data, complete=complete)
        if complete:
            s.outbound = Half.DONE
            self._maybe_forget(s)

    def send_complete(self, stream_id: int) -> None:
        """Complete our outbound half. Queues PAYLOAD(COMPLETE).

        Raises:
            LocalProtocolError: the outbound half is not open.
        """
        s = self._streams.get(stream_id)
        if s is None or s.outbound is not Half.OPEN:
            raise LocalProtocolError(f"stream {stream_id} is not open for sending ({self._why_not(s)})")
        self._queue(encode_payload(stream_id, b"", None, next=False, complete=True))
        s.outbound = Half.DONE
        self._maybe_forget(s)

    def send_error(self, stream_id: int, code: int, message: str) -> bool:
        """End the stream in both directions with ERROR. Queues it.

        Returns False (and sends nothing) when the stream is already over.
        """
        if not 0x201 <= code <= 0xFFFFFFFE:
            raise LocalProtocolError(f"error code 0x{code:x} is not a stream-level code (0x201..0xFFFFFFFE)")
        s = self._streams.pop(stream_id, None)
        if s is None:
            return False
        self._queue(encode_frame(ErrorFrame(stream_id=stream_id, code=code, message=message)))
        return True

    def cancel(self, stream_id: int) -> None:
        """Cancel our inbound half: the peer stops sending. Idempotent. Queues CANCEL."""
        s = self._streams.get(stream_id)
        if s is None or s.inbound is not Half.OPEN:
            return
        s.inbound = Half.CANCELLED
        s.partial = None
        self._queue(encode_frame(CancelFrame(stream_id=stream_id)))
        self._maybe_forget(s)

    def metadata_push(self, metadata: bytes) -> None:
        """Send METADATA_PUSH. Queues it."""
        self._check_open()
        self._queue(encode_frame(MetadataPushFrame(metadata=metadata)))

    def close(self) -> None:
        """Close locally: every stream is over. Emits :class:`ConnectionClosed` (error None)."""
        if not self._closed:
            self._close(None)

    @staticmethod
    def _why_not(s: Stream | None) -> str:
        if s is None:
            return "no such stream, or it is over"
        return f"outbound is {s.outbound.value}"
