"""The sans-IO RSocket connection: bytes of frames in, events out, frames to send out.

Nothing here does I/O or reads a clock: every method that depends on time takes ``now``
(seconds, any monotonic origin). Methods that queue frames say so; drain them with
:meth:`Connection.frames_to_send` and the events with :meth:`Connection.events`.

A connection is made of parts: its streams (:class:`~._table.StreamTable`: what happens
on a stream, every half-state change through the stream's transition tables,
:mod:`._streams`), its output queue (:class:`~._output.Output`) and, when it is
resumable, its session (:class:`~._resume.Session`). The connection itself keeps what
belongs to the connection as a whole: SETUP (:mod:`._setup`), keepalive, the frames on
stream 0, closing, and the application's calls.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Iterable

from ._config import ConnectionConfig, Role
from ._credit import InboundDemand, ReplenishPolicy
from ._errors import (
    ClosedResourceError,
    ConnectionLostError,
    ErrorCode,
    LocalProtocolError,
    RemoteProtocolError,
    RxChannelError,
    remote_error,
)
from ._events import (
    ConnectionClosed,
    Detached,
    Event,
    Interaction,
    ItemsReceived,
    MetadataPushed,
    Resumed,
    SetupConfirmed,
    SetupReceived,
)
from ._fragments import encode_item
from ._frames import (
    FLAG_COMPLETE,
    FLAG_NEXT,
    HIGH_FLAGS,
    IGNORE_BIT,
    ErrorFrame,
    FrameDecodeError,
    FrameType,
    KeepaliveFrame,
    MetadataPushFrame,
    ResumeFrame,
    ResumeOkFrame,
    decode_frame,
    encode_frame,
    encode_payload,
    unexpected_frame_error,
)
from ._keepalive import Keepalive
from ._output import Output
from ._resume import CLOSED_BY_PEER, Session, SessionState
from ._setup import client_opening, first_frame, ignores_error
from ._streams import Half, Signal, Stream
from ._table import ITEM_FLAGS, STREAM_FRAMES, StreamTable, item_demand

__all__ = ["Connection"]

_PAYLOAD = int(FrameType.PAYLOAD)
# the hot paths' own structs and constants: a name imported from another module is called
# through an attribute lookup and a bound method (CPython 3.11), a module's own through LOAD_METHOD
_U32 = struct.Struct(">I")
#: a PAYLOAD's header: stream id, then type and flags (Protocol.md "Frame Header Format")
_PAYLOAD_HEADER = struct.Struct(">IH")
_NEXT = (FrameType.PAYLOAD << 10) | FLAG_NEXT
_NEXT_COMPLETE = _NEXT | FLAG_COMPLETE


class Connection:
    """One RSocket connection, either role, as a pure state machine.

    A client queues its SETUP frame on construction. Frames from the peer arrive through
    :meth:`receive`; the application calls :meth:`request`, :meth:`send_item` and the rest.
    """

    def __init__(self, role: Role, config: ConnectionConfig | None = None, *, now: float):
        self.role = role
        self.config = config = config or ConnectionConfig()
        self._out = Output(config.max_frame_size)
        self._events: deque[Event] = deque()
        self._streams = StreamTable(role, config, self._out, self._events, self._fail)
        self._setup_done = role is Role.CLIENT
        self._closed = False
        #: why the connection closed (None: closed locally, or still open)
        self._close_error: RxChannelError | None = None
        #: the peer sent ERROR[CONNECTION_CLOSE]: open streams finish, then the connection closes
        self._draining: RxChannelError | None = None
        client = role is Role.CLIENT
        self._keepalive = Keepalive(now, config.max_lifetime, config.keepalive_interval if client else None)
        #: frames on stream 0 dropped because the spec says to ignore them
        self._ignored = 0
        #: resumption state, when this connection is resumable (a client asking for it; a
        #: server once it accepted such a SETUP)
        self._session: Session | None = None
        #: a client learns the server accepted its SETUP from its first other frame (SetupConfirmed)
        self._setup_confirmed = not client
        if client:
            self._out.extend(client_opening(config))
            if config.resume_token is not None:
                self._session = Session(config.resume_token, config)

    # ------------------------------------------------------------------ output and events

    @property
    def has_output(self) -> bool:
        """Frames are queued for the transport."""
        return bool(self._out) or (self._session is not None and bool(self._session.priority))

    def frames_to_send(self) -> list[bytes]:
        """Drain the frames queued for the transport, oldest first (one frame per item).

        On a resumable connection each tracked frame is also kept in the resume store until
        the peer acknowledges it; while the transport is gone (or a RESUME awaits its
        answer) they are only kept, and nothing else goes out.
        """
        frames = self._out.drain()
        return frames if self._session is None else self._session.outgoing(frames)

    def events(self) -> list[Event]:
        """Drain the pending events, oldest first."""
        events = list(self._events)
        self._events.clear()
        return events

    def next_event(self) -> Event | None:
        """Pop the oldest pending event, or None."""
        return self._events.popleft() if self._events else None

    # ------------------------------------------------------------------ queries

    @property
    def metadata_mime(self) -> str:
        """The metadata MIME type of this connection: our own as a client, the client's SETUP's as a server."""
        return self._streams.metadata_mime

    @property
    def ignored_frames(self) -> int:
        """Frames dropped because the spec says to ignore them (unknown stream, late frame ...)."""
        return self._ignored + self._streams.ignored

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def draining(self) -> bool:
        """The peer sent CONNECTION_CLOSE: open streams finish, new requests are refused."""
        return self._draining is not None

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    @property
    def reassembly_bytes(self) -> int:
        """Bytes held for items whose fragments are still arriving."""
        return self._streams.reassembly_bytes

    def stream_ids(self) -> list[int]:
        return list(self._streams.by_id)

    def stream(self, stream_id: int) -> Stream | None:
        """One stream's state for inspection (read it; drive it through the methods), or None once over."""
        return self._streams.by_id.get(stream_id)

    def demand(self, stream_id: int) -> InboundDemand | None:
        """The demand of our inbound half of ``stream_id`` (read it), or None once it is over."""
        return self._streams.demand(stream_id)

    def send_window(self, stream_id: int) -> int:
        """Items we may still send on ``stream_id`` now (0 if none or the stream is over)."""
        return self._streams.send_window(stream_id)

    def can_send(self, stream_id: int) -> bool:
        return self._streams.can_send(stream_id)

    # ------------------------------------------------------------------ the application's calls

    def _check_open(self) -> None:
        if self._closed:
            # why it closed (a lost link, a refused SETUP...), as the cause
            detail = f" ({reason})" if (reason := self._close_error) is not None else ""
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
        return self._streams.start_request(interaction, metadata, data, policy, initial_n, auto_ack, complete, now)

    def metadata_push(self, metadata: bytes) -> None:
        """Send METADATA_PUSH. Queues it."""
        self._check_open()
        self._out.queue(encode_frame(MetadataPushFrame(metadata=metadata)))

    def fail_locally(self, reason: str) -> None:
        """This side cannot go on (a fault of its own: an unexpected exception, a transport
        that would not take a frame): queue ERROR[CONNECTION_ERROR] saying ``reason`` and
        close; every stream ends with :class:`ConnectionLostError` saying it. Emits
        :class:`ConnectionClosed`. Idempotent."""
        if not self._closed:
            message = f"the connection failed on this side: {reason}"
            self._queue_error(ErrorCode.CONNECTION_ERROR, message)
            self._close(ConnectionLostError(message))

    def close(self) -> None:
        """Close locally: every stream is over. Emits :class:`ConnectionClosed` (error None).

        A resumable connection first queues ERROR[CONNECTION_ERROR] "closed": a peer that
        only saw the transport end would keep the session waiting for a RESUME.
        """
        if not self._closed:
            if self._setup_done and self._session is not None and self._session.state is SessionState.ATTACHED:
                self._queue_error(ErrorCode.CONNECTION_ERROR, CLOSED_BY_PEER)
            self._close(None)

    def set_policy(self, stream_id: int, policy: ReplenishPolicy, now: float, *, auto_ack: bool = True) -> None:
        """Give a channel we respond to its inbound demand and grant its initial demand now.

        A responder answers REQUEST_CHANNEL with REQUEST_N (Protocol.md "Request Channel").
        May queue REQUEST_N.
        """
        self._streams.set_policy(stream_id, policy, now, auto_ack)

    def cancel(self, stream_id: int) -> None:
        """Cancel our inbound half: the peer stops sending. Idempotent. Queues CANCEL.

        A channel's requester cancelling ends the whole stream (Protocol.md "Request
        Channel": "Upon sending a CANCEL, the stream is terminated on the Requester"): its
        outbound half ends too, and nothing more is sent on it.
        """
        self._streams.stop(stream_id)

    def send_payload(
        self, stream_id: int, data: bytes, metadata: bytes | None = None, *, complete: bool = False
    ) -> None:
        """Send one item on our outbound half (and complete it if asked). Queues PAYLOAD frame(s).

        Raises:
            LocalProtocolError: the outbound half is not open, or there is no credit
                (wait for :class:`CreditGranted`).
        """
        if self.send_item(stream_id, data, metadata, complete) < 0:
            self._streams.sending(stream_id, Signal.SEND)  # raises if the half is not open
            raise LocalProtocolError("no credit left: wait for the peer's REQUEST_N before sending")

    def send_item(self, stream_id: int, data: bytes, metadata: bytes | None = None, last: bool = False) -> int:
        """:meth:`send_payload` for a producer that checks nothing itself: sends one item if the
        outbound half is open and has credit. Queues PAYLOAD frame(s).

        Returns the credit left afterwards (0 or more), or -1 when nothing was sent (no
        credit, or the half is not open: ask :meth:`send_window` and :meth:`can_send`).
        """
        s = self._streams.by_id.get(stream_id)
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
            self._streams.maybe_forget(s)
        return left

    def send_complete(self, stream_id: int) -> None:
        """Complete our outbound half. Queues PAYLOAD(COMPLETE).

        Raises:
            LocalProtocolError: the outbound half is not open.
        """
        s = self._streams.sending(stream_id, Signal.FINISH)
        self._out.queue(encode_payload(stream_id, b"", None, next=False, complete=True))
        self._streams.maybe_forget(s)

    def send_error(self, stream_id: int, code: int, message: str) -> bool:
        """End the stream in both directions with ERROR. Queues it.

        Returns False (and sends nothing) when the stream is already over.

        Raises:
            LocalProtocolError: ``code`` is not a stream-level code.
        """
        return self._streams.send_error(stream_id, code, message)

    # ------------------------------------------------------------------ resumption (Protocol.md "Resume Operation")
    #
    # Client: detach when the transport breaks, then start_resume on each new transport
    # (queues RESUME; the answer arrives through receive). Server: detach likewise; a new
    # connection whose first frame is RESUME emits ResumeReceived, and the runtime calls
    # accept_resume on the session it names (or refuse_resume on the new one).

    @property
    def resumable(self) -> bool:
        """Whether this connection has a session that can be resumed: a client's only once the
        server accepted its SETUP (before that there is no session on the other side)."""
        return self._session is not None and not self._closed and self._setup_confirmed

    @property
    def resume_token(self) -> bytes | None:
        return self._session.token if self._session is not None else None

    @property
    def detached(self) -> bool:
        """The transport is gone (or a RESUME awaits its answer): streams wait, nothing is sent."""
        return self._session is not None and self._session.state is not SessionState.ATTACHED

    @property
    def resumes(self) -> int:
        """How many times this connection was resumed."""
        return self._session.resumes if self._session is not None else 0

    @property
    def store_room(self) -> int | None:
        """Bytes the resume store may still take before sending items must wait (None: no store)."""
        return self._session.store.room if self._session is not None else None

    @property
    def store_size(self) -> int:
        """Bytes of sent, unacknowledged frames kept for retransmission."""
        return self._session.store.size if self._session is not None else 0

    def drop_resumption(self) -> bool:
        """Stop being resumable: forget the session and free its store (sending no longer waits
        for the peer's acknowledgements; a broken transport then ends the connection). For a
        peer that never acknowledges what it received. False when there was nothing to drop
        (or the transport is gone: then the session is what the streams wait on)."""
        if (session := self._session) is None or session.state is not SessionState.ATTACHED or self._closed:
            return False
        self._out.put_first(session.priority)  # a RESUME_OK or retransmissions not sent yet still go, first
        self._session = None
        return True

    def detach(self, now: float) -> None:
        """The transport broke: keep the streams, keep what is sent in the store, and wait to be
        resumed within ``resume_session_timeout`` (then the connection closes).

        Raises:
            LocalProtocolError: the connection is not resumable.
        """
        if self._session is None or self._closed:
            raise LocalProtocolError("only an open resumable connection can be detached")
        self._session.detach(now)

    def start_resume(self, now: float) -> None:
        """Client: a new transport is open; queue RESUME on it (nothing else goes out until RESUME_OK)."""
        session = self._session
        if self.role is not Role.CLIENT or session is None or self._closed:
            raise LocalProtocolError("only a detached resumable client resumes")
        self.frames_to_send()  # whatever was queued is stored (tracked) or dropped, before RESUME
        self._keepalive.received(now)
        session.resume()

    def accept_resume(self, frame: ResumeFrame, now: float) -> str | None:
        """Server: resume this session on the transport that sent ``frame``.

        Queues RESUME_OK and retransmits what the client has not received; returns None.
        Returns the reason instead when the positions cannot be satisfied (then answer the
        new transport with :meth:`refuse_resume`: the session cannot continue, and it is
        closed here).
        """
        session = self._session
        if session is None or self._closed:
            return "no resumable session with this token"
        if not session.matches(frame.token):
            return "the token does not match this session"
        self.frames_to_send()  # stored while detached
        reason = session.accept(frame)
        if reason is not None:
            self._close(ConnectionLostError(f"the session could not be resumed: {reason}"))
            return reason
        self._resumed(session, now)
        return None

    def _resumed(self, session: Session, now: float) -> None:
        self._keepalive.received(now)
        self._events.append(Resumed(resumes=session.resumes))

    def refuse_resume(self, reason: str) -> None:
        """Server, on the new connection whose first frame was RESUME: answer ERROR[REJECTED_RESUME] and close."""
        self._queue_error(ErrorCode.REJECTED_RESUME, reason)
        # not a lost connection: the ERROR must reach the peer before the transport closes
        self._close(RemoteProtocolError(f"refused a RESUME: {reason}", code=ErrorCode.REJECTED_RESUME))

    def _on_resume_ok(self, frame: ResumeOkFrame, now: float) -> None:
        """Client: the server resumed us; retransmit what it has not received."""
        session = self._session
        if session is None or session.state is not SessionState.RESUMING:
            self._ignored += 1
            return
        reason = session.resumed_by(frame, self._out)  # queues ERROR when the session cannot go on
        if reason is None:
            self._resumed(session, now)
        else:
            self._close(ConnectionLostError(f"the session could not be resumed: {reason}"))

    # ------------------------------------------------------------------ time

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called, or None."""
        if self._closed:
            return None
        session = self._session
        if session is not None and session.state is not SessionState.ATTACHED:
            return session.expires_at()
        return self._keepalive.deadline()

    def handle_timer(self, now: float) -> None:
        """Send a due KEEPALIVE or declare a silent peer dead (a resumable connection detaches
        instead, and closes if it is not resumed in time). Queues frames."""
        if self._closed:
            return
        session = self._session
        if session is not None and session.state is not SessionState.ATTACHED:
            if (expired := session.expiry(now)) is not None:
                self._close(expired)
            return
        silence = self._keepalive.silence(now)
        if silence is not None and self.resumable:
            self.detach(now)
            self._events.append(Detached(reason=silence))
        elif silence is not None:
            self._queue_error(ErrorCode.CONNECTION_ERROR, "keepalive timeout")
            self._close(ConnectionLostError(f"{silence}: the peer or the network is gone; reconnect to continue"))
        elif self._keepalive.ping_due(now):
            self._out.queue(encode_frame(KeepaliveFrame(respond=True, position=self._position())))

    # ------------------------------------------------------------------ input

    def receive(self, data: bytes, now: float) -> None:
        """Process the bytes of exactly one frame. May queue frames and events.

        Never raises for any input: a malformed frame ends the connection with
        ERROR[CONNECTION_ERROR] and a :class:`ConnectionClosed` event.
        """
        if self._closed or not self._admit(data):
            return
        self._keepalive.received(now)
        self._receive(data, now)

    def receive_frames(self, frames: Iterable[bytes], now: float) -> None:
        """:meth:`receive` for each of ``frames`` in order (all arrived at ``now``): one call per batch.

        A PAYLOAD carrying one whole item (data only) on an open inbound half within credit,
        what a stream is made of, is handled here without a method call of its own, and a
        run of them on one stream is one :class:`ItemsReceived` event rather than a
        :class:`PayloadReceived` each; everything else goes the way of :meth:`receive`.
        """
        if self._closed:
            return
        streams, events = self._streams.by_id, self._events
        alive = False
        # the stream of the last item taken on the fast path: its state allows the next one
        # as long as nothing else was processed in between
        fast_sid, fast_demand = -1, None
        run: list[bytes] | None = None  # the items of the ItemsReceived that is the last event, if any
        for data in frames:
            if self._closed:
                return
            if not self._setup_confirmed or self._session is not None:
                if not self._admit(data):
                    continue  # dropped while a RESUME awaits its answer
                fast_sid, fast_demand, run = -1, None, None  # the admission may have queued an event
            if not alive:
                self._keepalive.received(now)
                alive = True
            if len(data) >= 6 and data[4] >> 2 == _PAYLOAD and self._setup_done:
                sid = _U32.unpack_from(data)[0] & 0x7FFFFFFF
                if data[5] & ITEM_FLAGS == FLAG_NEXT and not data[4] & HIGH_FLAGS:  # NEXT only; no M, no I
                    if sid != fast_sid:
                        s = streams.get(sid)
                        fast_sid, fast_demand = sid, (item_demand(s) if s is not None else None)
                        run = None
                    if fast_demand is not None and fast_demand.received(len(data) - 6, now):
                        # the inbound table's (OPEN, NEXT) -> OPEN: one whole item within credit
                        if run is None:
                            run = []
                            events.append(ItemsReceived(stream_id=sid, items=run))
                        run.append(data[6:])
                        continue
                self._streams.receive_payload(data, now)
            else:
                self._receive(data, now)
            fast_sid, fast_demand, run = -1, None, None

    def _receive(self, data: bytes, now: float) -> None:
        if len(data) >= 6 and data[4] >> 2 == _PAYLOAD and self._setup_done:
            self._streams.receive_payload(data, now)
            return
        try:
            frame = decode_frame(data)
        except FrameDecodeError as exc:
            if len(data) >= 6 and data[4] & IGNORE_BIT:
                self._ignored += 1  # a malformed frame the peer marked ignorable (Metadata Header)
                return
            self._fail(exc)
            return
        if not self._setup_done:
            self._on_first_frame(frame)
        elif isinstance(frame, ErrorFrame) and frame.stream_id == 0:
            self._on_error_frame(frame)
        elif isinstance(frame, STREAM_FRAMES):
            self._streams.receive(frame, now, self._draining is not None)
        elif isinstance(frame, KeepaliveFrame):
            if frame.respond:
                self._out.queue(encode_frame(KeepaliveFrame(respond=False, data=frame.data, position=self._position())))
            if frame.position and self._session is not None:
                self._session.store.release(frame.position)  # the peer has everything before it
        elif isinstance(frame, ResumeOkFrame) and self.role is Role.CLIENT:
            self._on_resume_ok(frame, now)
        elif isinstance(frame, MetadataPushFrame) and frame.stream_id == 0:
            self._events.append(MetadataPushed(metadata=frame.metadata))
        elif (error := unexpected_frame_error(frame)) is not None:
            self._fail(error)
        else:
            # SETUP after setup, LEASE we never asked for, METADATA_PUSH off stream 0,
            # ignorable extensions (Protocol.md "Handling the Unexpected")
            self._ignored += 1

    def _position(self) -> int:
        return self._session.received if self._session is not None else 0

    def _admit(self, data: bytes) -> bool:
        """What every received frame goes through first: a client's SETUP confirmation and a
        resumable connection's positions. False: the frame is dropped."""
        if not self._setup_confirmed:
            self._confirm(data)
        if self._session is None or self._session.count(data, self._out):
            return True
        self._ignored += 1  # a RESUME awaits its answer: only frames on stream 0 are taken
        return False

    def _confirm(self, data: bytes) -> None:
        """A client learns that the server accepted its SETUP from the first frame that is not
        an ERROR on stream 0 (RSocket has no SETUP acknowledgement); from then on it ignores
        setup errors (Handling the Unexpected)."""
        if not (len(data) >= 6 and data[4] >> 2 == FrameType.ERROR and data[:4] == b"\x00\x00\x00\x00"):
            self._setup_confirmed = True
            if self._session is not None:  # a resumable client waits for this before its requests
                self._events.append(SetupConfirmed())

    def connection_lost(self, error: RxChannelError | None = None) -> None:
        """The transport ended (EOF or failure). Emits :class:`ConnectionClosed`."""
        if not self._closed:
            self._close(error or ConnectionLostError("the peer closed the connection"))

    def _on_first_frame(self, frame: object) -> None:
        first = first_frame(frame, self.config)
        if isinstance(first, RemoteProtocolError):
            self._fail(first)
            return
        if isinstance(first, SetupReceived):
            self._setup_done = True
            # the client's lifetime, but never longer than this server allows (a SETUP asking for
            # 2^31-1 ms would otherwise keep a dead peer's resources for weeks)
            self._keepalive.lifetime = min(first.lifetime_ms / 1000.0, self.config.max_lifetime)
            self._streams.metadata_mime = first.metadata_mime
            if first.resume_token is not None:  # accepted by first_frame: this server resumes
                self._session = Session(bytes(first.resume_token), self.config)
        self._events.append(first)  # or ResumeReceived: the runtime finds the session it names

    def _on_error_frame(self, frame: ErrorFrame) -> None:
        resuming = self._session is not None and self._session.state is SessionState.RESUMING
        if ignores_error(self.role, self._setup_confirmed, resuming, frame.code):
            self._ignored += 1
            return
        if frame.code == ErrorCode.CONNECTION_CLOSE:
            # "MUST wait for outstanding streams to terminate before closing": no new streams,
            # the open ones finish, then the connection closes (at once if none is open)
            self._draining = draining = remote_error(frame.code, frame.message)
            self._streams.when_empty(lambda: self._close(draining))
        elif frame.code == ErrorCode.REJECTED_RESUME and resuming:
            self._close(ConnectionLostError(f"the server could not resume the session: {frame.message}"))
        elif frame.code == ErrorCode.REJECTED_RESUME and self._session is not None:
            self._ignored += 1  # only an answer to our RESUME means anything
        else:
            self._close(remote_error(frame.code, frame.message))

    # ------------------------------------------------------------------ ending

    def _queue_error(self, code: int, message: str) -> None:
        """Queue ERROR on stream 0 (the connection's)."""
        self._out.queue(encode_frame(ErrorFrame(stream_id=0, code=code, message=message)))

    def _fail(self, error: RemoteProtocolError) -> None:
        """The peer broke the protocol on the connection: send ERROR on stream 0 and close."""
        self._queue_error(error.code, str(error))
        self._close(error)

    def _close(self, error: RxChannelError | None) -> None:
        self._closed = True
        self._close_error = error
        self._streams.end_all()
        self._events.append(ConnectionClosed(error=error))
