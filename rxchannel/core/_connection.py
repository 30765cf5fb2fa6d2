"""The sans-IO RSocket connection: bytes of frames in, events out, frames to send out.

Nothing here does I/O or reads a clock: every method that depends on time takes ``now``
(seconds, any monotonic origin). Methods that queue frames say so; drain them with
:meth:`Connection.frames_to_send` and the events with :meth:`Connection.events`.

What a frame means for a stream is decided by the stream's transition tables
(:mod:`._streams`); SETUP by :mod:`._setup`; fragmentation by :mod:`._fragments`; demand
by each stream's :class:`~._credit.InboundDemand`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import Any

from ._config import Role
from ._credit import InboundDemand
from ._errors import (
    ConnectionLostError,
    ErrorCode,
    RemoteProtocolError,
    RxChannelError,
    remote_error,
)
from ._events import (
    Detached,
    Event,
    Interaction,
    ItemsReceived,
    MetadataPushed,
    PayloadReceived,
    ResumeReceived,
    SetupConfirmed,
    StreamErrored,
)
from ._frames import (
    FLAG_COMPLETE,
    FLAG_FOLLOWS,
    FLAG_IGNORE,
    FLAG_METADATA,
    FLAG_NEXT,
    CancelFrame,
    ErrorFrame,
    FrameDecodeError,
    FrameType,
    KeepaliveFrame,
    MetadataPushFrame,
    PayloadFrame,
    RequestFrame,
    RequestNFrame,
    ResumeFrame,
    ResumeOkFrame,
    SetupFrame,
    UnsupportedFrame,
    decode_frame,
    encode_frame,
    split_metadata,
)
from ._metadata import COMPOSITE_METADATA, MetadataError, parse_request_metadata
from ._requests import request_received, request_refusal, stream_id_violation
from ._resumable import ResumableCalls
from ._resume import Session, SessionState, is_tracked
from ._setup import SETUP_REFUSALS, check_first_frame, setup_received
from ._streams import Half, Stream

__all__ = ["Connection"]

_PAYLOAD = int(FrameType.PAYLOAD)
_U32 = struct.Struct(">I")
#: the low flag byte of a PAYLOAD: FOLLOWS, COMPLETE, NEXT (a whole item has only NEXT)
_ITEM_FLAGS = FLAG_FOLLOWS | FLAG_COMPLETE | FLAG_NEXT
#: the I and M flags as they stand in the frame's fifth byte (the top two of the 10 flag bits)
_IGNORE_BIT = FLAG_IGNORE >> 8
_HIGH_FLAGS = (FLAG_IGNORE | FLAG_METADATA) >> 8


def _item_demand(s: Stream) -> InboundDemand | None:
    """The demand a PAYLOAD with NEXT only is counted against when it is one whole item on
    ``s``'s open inbound half (the inbound table's (OPEN, NEXT) -> OPEN); None when it is not."""
    if s.inbound is Half.OPEN and s.pending_request is None and s.partial is None:
        return s.demand if s.interaction is not Interaction.RESPONSE else None
    return None


class Connection(ResumableCalls):
    """One RSocket connection, either role, as a pure state machine.

    A client queues its SETUP frame on construction. Frames from the peer arrive through
    :meth:`receive`; the application's own calls are those of :class:`LocalCalls`.
    """

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
            expires = session.expires_at()
            if expires is not None and now >= expires:
                self._close(
                    ConnectionLostError(
                        f"the connection broke and was not resumed within {session.timeout:g} s "
                        "(resume_session_timeout)"
                    )
                )
            return
        silent = self._keepalive.silent_for(now)
        if silent is not None and self.resumable:
            reason = f"no frame from the peer for {silent:.1f} s (keepalive limit {self._keepalive.lifetime:.1f} s)"
            self.detach(now)
            self._events.append(Detached(reason=reason))
        elif silent is not None:
            self._queue(
                encode_frame(ErrorFrame(stream_id=0, code=ErrorCode.CONNECTION_ERROR, message="keepalive timeout"))
            )
            lifetime = self._keepalive.lifetime
            self._close(
                ConnectionLostError(
                    f"no frame from the peer for {silent:.1f} s (keepalive limit {lifetime:.1f} s): "
                    "the peer or the network is gone; reconnect to continue"
                )
            )
        elif self._keepalive.ping_due(now):
            self._queue(encode_frame(KeepaliveFrame(respond=True, position=self._position())))

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
        streams, events = self._streams, self._events
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
                if data[5] & _ITEM_FLAGS == FLAG_NEXT and not data[4] & _HIGH_FLAGS:  # NEXT only; no M, no I
                    if sid != fast_sid:
                        s = streams.get(sid)
                        fast_sid, fast_demand = sid, (_item_demand(s) if s is not None else None)
                        run = None
                    if fast_demand is not None and fast_demand.received(len(data) - 6, now):
                        # the inbound table's (OPEN, NEXT) -> OPEN: one whole item within credit
                        if run is None:
                            run = []
                            events.append(ItemsReceived(stream_id=sid, items=run))
                        run.append(data[6:])
                        continue
                self._receive_payload(data, now)
            else:
                self._receive(data, now)
            fast_sid, fast_demand, run = -1, None, None

    def _receive(self, data: bytes, now: float) -> None:
        if len(data) >= 6 and data[4] >> 2 == FrameType.PAYLOAD and self._setup_done:
            self._receive_payload(data, now)
            return
        try:
            frame = decode_frame(data)
        except FrameDecodeError as exc:
            if len(data) >= 6 and data[4] & _IGNORE_BIT:
                self.ignored_frames += 1  # a malformed frame the peer marked ignorable (Metadata Header)
                return
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
                self._queue(encode_frame(KeepaliveFrame(respond=False, data=frame.data, position=self._position())))
            if frame.position and self._session is not None:
                self._session.store.release(frame.position)  # the peer has everything before it
        elif isinstance(frame, ResumeOkFrame) and self.role is Role.CLIENT:
            self._on_resume_ok(frame, now)
        elif isinstance(frame, ResumeFrame):
            self._fail(RemoteProtocolError("RESUME on an established connection", code=ErrorCode.CONNECTION_ERROR))
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

    def _position(self) -> int:
        return self._session.received if self._session is not None else 0

    def _admit(self, data: bytes) -> bool:
        """What every received frame goes through first: a client's SETUP confirmation and a
        resumable connection's positions. False: the frame is dropped."""
        if not self._setup_confirmed:
            self._confirm(data)
        return self._session is None or self._count(data)

    def _confirm(self, data: bytes) -> None:
        """A client learns that the server accepted its SETUP from the first frame that is not
        an ERROR on stream 0 (RSocket has no SETUP acknowledgement); from then on it ignores
        setup errors (Handling the Unexpected)."""
        if not (len(data) >= 6 and data[4] >> 2 == FrameType.ERROR and data[:4] == b"\x00\x00\x00\x00"):
            self._setup_confirmed = True
            if self._session is not None:  # a resumable client waits for this before its requests
                self._events.append(SetupConfirmed())

    def _count(self, data: bytes) -> bool:
        """Resumption bookkeeping for one received frame; False to drop it.

        A tracked frame moves our implied position (and every quarter of the store's bound
        we report it, so the peer can free its store). While a RESUME awaits its answer
        only frames on stream 0 are taken.
        """
        session = self._session
        assert session is not None
        if session.state is SessionState.RESUMING and data[:4] != b"\x00\x00\x00\x00":
            self.ignored_frames += 1
            return False
        if is_tracked(data):
            session.received += len(data)
            if session.received - session.reported >= session.ack_every:
                session.reported = session.received
                self._queue(encode_frame(KeepaliveFrame(respond=False, position=session.received)))
        return True

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
                if flags & FLAG_IGNORE:
                    self.ignored_frames += 1  # malformed, but the peer marked it ignorable
                    return
                self._fail(exc)
                return
        else:
            payload = data[6:]
        demand = _item_demand(s)
        if (
            flags & _ITEM_FLAGS == FLAG_NEXT
            and demand is not None
            and demand.received(len(payload) + (len(metadata) if metadata else 0), now)
        ):
            # the inbound table's (OPEN, NEXT) -> OPEN: one whole item within credit
            self._events.append(PayloadReceived(stream_id=sid, data=payload, metadata=metadata))
            return
        self._on_payload(
            s, metadata, payload, bool(flags & FLAG_FOLLOWS), bool(flags & FLAG_COMPLETE), bool(flags & FLAG_NEXT), now
        )

    def connection_lost(self, error: RxChannelError | None = None) -> None:
        """The transport ended (EOF or failure). Emits :class:`ConnectionClosed`."""
        if not self._closed:
            self._close(error or ConnectionLostError("the peer closed the connection"))

    def _on_first_frame(self, frame: object) -> None:
        if isinstance(frame, ResumeFrame) and frame.stream_id == 0:
            if not self.config.resumable:
                self._fail(RemoteProtocolError("resumption is not supported", code=ErrorCode.REJECTED_RESUME))
            else:
                self._events.append(ResumeReceived(frame=frame))  # the runtime finds the session
            return
        refusal = check_first_frame(frame, self.config)
        if refusal is not None:
            self._fail(refusal)
            return
        assert isinstance(frame, SetupFrame)
        self._setup_done = True
        # the client's lifetime, but never longer than this server allows (a SETUP asking for
        # 2^31-1 ms would otherwise keep a dead peer's resources for weeks)
        self._keepalive.lifetime = min(frame.lifetime_ms / 1000.0, self.config.max_lifetime)
        self.metadata_mime = frame.metadata_mime
        if frame.resume_token is not None:  # accepted by check_first_frame: this server resumes
            self._session = Session(
                bytes(frame.resume_token), self.config.resume_store_bytes, self.config.resume_session_timeout
            )
        self._events.append(setup_received(frame))

    def _on_error_frame(self, frame: ErrorFrame) -> None:
        if frame.stream_id == 0:
            if self.role is Role.SERVER and frame.code in SETUP_REFUSALS:
                self.ignored_frames += 1  # a server ignores setup errors (Handling the Unexpected)
                return
            if self.role is Role.CLIENT and self._setup_confirmed and frame.code in SETUP_REFUSALS:
                # after the server accepted our SETUP, setup errors mean nothing (Handling the
                # Unexpected), except REJECTED_RESUME answering our RESUME
                resuming = self._session is not None and self._session.state is SessionState.RESUMING
                if not (resuming and frame.code == ErrorCode.REJECTED_RESUME):
                    self.ignored_frames += 1
                    return
            if frame.code == ErrorCode.CONNECTION_CLOSE:
                # "MUST wait for outstanding streams to terminate before closing": no new streams,
                # the open ones finish, then the connection closes (at once if none is open)
                self._draining = remote_error(frame.code, frame.message)
                if not self._streams:
                    self._close(self._draining)
                return
            if frame.code == ErrorCode.REJECTED_RESUME and self._session is not None:
                if self._session.state is SessionState.RESUMING:
                    self._close(ConnectionLostError(f"the server could not resume the session: {frame.message}"))
                else:
                    self.ignored_frames += 1  # only an answer to our RESUME means anything
                return
            self._close(remote_error(frame.code, frame.message))
            return
        s = self._streams.get(frame.stream_id)
        if s is None:
            self.ignored_frames += 1  # unknown or finished stream: ignore (Handling the Unexpected)
        elif s.pending_request is not None:
            self._streams.abandon(s)  # the requester gave up before its request was whole
        else:
            self._forget(s)  # ERROR ends both halves
            self._events.append(StreamErrored(stream_id=s.id, error=remote_error(frame.code, frame.message)))

    def _on_request(self, frame: RequestFrame) -> None:
        sid = frame.stream_id
        wrong_id = stream_id_violation(self.role, frame)
        if wrong_id is not None:
            self._fail(wrong_id)
            return
        if sid in self._streams:
            self.ignored_frames += 1  # a request on a stream id in use MUST be ignored
            return
        interaction = Interaction(frame.type)
        refusal = request_refusal(self.config, self._draining is not None, len(self._streams), interaction, frame)
        if refusal is not None:
            if interaction is Interaction.FNF:  # fire-and-forget has no stream to answer on
                self.ignored_frames += 1
            else:
                self._queue(encode_frame(ErrorFrame(stream_id=sid, code=refusal[0], message=refusal[1])))
            return
        s = Stream(sid, interaction, requester=False)
        if frame.follows and not frame.complete:
            s.pending_request = frame
            s.partial = self._new_partial()
            self._streams.open(s)
            first = PayloadFrame(stream_id=sid, metadata=frame.metadata, data=frame.data, follows=True)
            self._on_request_fragment(s, first)
            return
        self._open_request(s, frame, frame.metadata, frame.data)

    def _open_request(
        self, s: Stream, frame: RequestFrame, metadata: bytes | None, data: bytes, *, complete: bool = False
    ) -> None:
        complete = (complete or frame.complete) and s.interaction is Interaction.CHANNEL
        s.pending_request = None
        s.partial = None
        route: str | None = None
        info: dict[str, Any] = {}
        if metadata and self.metadata_mime == COMPOSITE_METADATA:
            try:
                route, info = parse_request_metadata(metadata)
            except MetadataError as exc:
                self._streams.forget(s)
                if s.interaction is not Interaction.FNF:  # a fire-and-forget has no stream to answer on
                    self._queue(encode_frame(ErrorFrame(stream_id=s.id, code=ErrorCode.INVALID, message=str(exc))))
                return
        if s.interaction is Interaction.FNF:
            self._streams.forget(s)
        else:
            if s.interaction is not Interaction.RESPONSE:
                s.send_credit.granted(frame.initial_n)
            if s.inbound is Half.OPEN:
                # a responder's inbound half (a channel) gets demand when the application sets
                # its policy (set_policy); until then nothing is granted
                s.demand = self._demand_of(s.id, InboundDemand())
                if complete:
                    self._streams.complete_inbound(s)
                    # a responder answers every REQUEST_CHANNEL with REQUEST_N (Request Channel), even
                    # one that needs none: the requester ignores credit for a half it completed
                    self._out.request_n(s.id, 1)
            self._streams.open(s)
        self._events.append(request_received(s.id, s.interaction, frame, metadata, data, route, info, complete))

    def _on_stream_frame(self, frame: PayloadFrame | RequestNFrame | CancelFrame, now: float) -> None:
        s = self._streams.get(frame.stream_id)
        if s is None:
            self.ignored_frames += 1  # unknown or finished stream: ignore (Handling the Unexpected)
        elif s.pending_request is not None:
            self._on_request_fragment(s, frame)
        elif isinstance(frame, PayloadFrame):
            self._on_payload(s, frame.metadata, frame.data, frame.follows, frame.complete, frame.next, now)
        elif isinstance(frame, RequestNFrame):
            self._stream_result(s, lambda: s.on_credit(frame.n))
        else:
            self._stream_result(s, s.on_cancel)

    def _on_payload(
        self, s: Stream, metadata: bytes | None, data: bytes, follows: bool, complete: bool, next: bool, now: float
    ) -> None:
        self._stream_result(s, lambda: s.on_payload(metadata, data, follows, complete, next, now, self._new_partial))

    def _stream_result(self, s: Stream, step: Callable[[], list[Event] | None]) -> None:
        """Run one of the stream's transitions: emit its events, or end the stream on a violation."""
        try:
            events = step()
        except RemoteProtocolError as exc:
            self._violation(s, exc)
            return
        if events is None:
            self.ignored_frames += 1  # a frame that raced our CANCEL or COMPLETE
        else:
            self._events.extend(events)
        self._maybe_forget(s)

    def _on_request_fragment(self, s: Stream, frame: PayloadFrame | RequestNFrame | CancelFrame) -> None:
        """A stream whose request is still arriving accepts only its fragments (or a CANCEL)."""
        if isinstance(frame, PayloadFrame):
            assert s.pending_request is not None and s.partial is not None
            try:
                s.partial.add(s.id, frame.metadata, frame.data)
            except RemoteProtocolError as exc:
                self._violation(s, exc)
                return
            if not (frame.follows and not frame.complete):
                metadata, data = s.partial.result()
                # a channel's C may come on its last fragment (rxchannel's requester puts it there)
                self._open_request(s, s.pending_request, metadata, data, complete=frame.complete)
        elif isinstance(frame, CancelFrame):
            self._streams.abandon(s)  # the requester gave up before the request was whole
        else:
            error = "REQUEST_N arrived while the request's fragments were incomplete"
            self._violation(s, RemoteProtocolError(error, code=ErrorCode.INVALID, stream_id=s.id))
