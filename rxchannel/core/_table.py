"""The streams of one connection, by id, and everything that happens on them: requests from
the peer becoming streams, the peer's frames on a stream, our own demand, cancels and
completions. Every change of a half-state goes through here, and through the half's
transition table (:mod:`._streams`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from ._config import ConnectionConfig, Role
from ._credit import InboundDemand, ReplenishPolicy, check_request_n
from ._errors import ErrorCode, LocalProtocolError, RemoteProtocolError, is_stream_code, remote_error
from ._events import Event, Interaction, PayloadReceived, StreamErrored
from ._fragments import Budget, Reassembly, encode_item
from ._frames import (
    FLAG_COMPLETE,
    FLAG_FOLLOWS,
    FLAG_IGNORE,
    FLAG_METADATA,
    FLAG_NEXT,
    MAX_REQUEST_N,
    CancelFrame,
    ErrorFrame,
    FrameDecodeError,
    FrameType,
    PayloadFrame,
    RequestFrame,
    RequestNFrame,
    decode_frame,
    encode_frame,
    split_metadata,
)
from ._metadata import COMPOSITE_METADATA, MetadataError, parse_request_metadata
from ._output import Output
from ._policies import Manual
from ._requests import request_received, request_refusal, stream_id_violation
from ._streams import Half, Signal, Stream

__all__ = ["ITEM_FLAGS", "STREAM_FRAMES", "StreamTable", "item_demand"]

#: the low flag byte of a PAYLOAD: FOLLOWS, COMPLETE, NEXT (a whole item has only NEXT)
ITEM_FLAGS = FLAG_FOLLOWS | FLAG_COMPLETE | FLAG_NEXT

StreamFrame = PayloadFrame | RequestNFrame | CancelFrame
#: the frames the table takes (an ERROR on stream 0 is the connection's)
STREAM_FRAMES = (PayloadFrame, RequestNFrame, CancelFrame, RequestFrame, ErrorFrame)


def item_demand(s: Stream) -> InboundDemand | None:
    """The demand a PAYLOAD with NEXT only is counted against when it is one whole item on
    ``s``'s open inbound half (the inbound table's (OPEN, NEXT) -> OPEN); None when it is not."""
    if s.inbound is Half.OPEN and s.pending_request is None and s.partial is None:
        return s.demand if s.interaction is not Interaction.RESPONSE else None
    return None


class StreamTable:
    """The open streams of one connection (a part of :class:`~rxchannel.core.Connection`).

    It queues the frames and events of what happens on a stream in the connection's
    ``out`` and ``events``; what ends the connection it reports through the connection's
    ``fail`` callback.
    """

    __slots__ = (
        "_budgets",
        "_next_stream_id",
        "by_id",
        "config",
        "events",
        "fail",
        "ignored",
        "metadata_mime",
        "on_empty",
        "out",
        "role",
    )

    def __init__(
        self,
        role: Role,
        config: ConnectionConfig,
        out: Output,
        events: deque[Event],
        fail: Callable[[RemoteProtocolError], None],
    ) -> None:
        self.role, self.config, self.out, self.events = role, config, out, events
        #: the streams by id (read it; change it through the methods): a plain dict, whose
        #: ``get`` is the fastest lookup for the hot paths of every item sent and received
        self.by_id: dict[int, Stream] = {}
        #: the connection's own end when a frame breaks the protocol of the connection as a whole
        self.fail = fail
        self._next_stream_id = 1 if role is Role.CLIENT else 2
        #: the metadata MIME type requests are parsed with (the client's SETUP's, on a server)
        self.metadata_mime = config.metadata_mime
        #: frames on a stream dropped because the spec says to ignore them (unknown stream, late frame ...)
        self.ignored = 0
        #: called when the last stream is forgotten (set while the connection drains)
        self.on_empty: Callable[[], None] | None = None
        #: what unfinished fragmented items may hold, on this connection (and the server's shared budget)
        self._budgets: tuple[Budget, ...] = (
            Budget(config.max_reassembly_bytes, "ConnectionConfig.max_reassembly_bytes"),
        )
        if config.shared_reassembly is not None:
            self._budgets += (config.shared_reassembly,)

    def __len__(self) -> int:
        return len(self.by_id)

    # ------------------------------------------------------------------ open and forget

    def open(self, s: Stream) -> None:
        self.by_id[s.id] = s

    def start_request(
        self,
        interaction: Interaction,
        metadata: bytes | None,
        data: bytes,
        policy: ReplenishPolicy | None,
        initial_n: int,
        auto_ack: bool,
        complete: bool,
        now: float,
    ) -> int:
        """Open a stream we request and queue its request (see :meth:`Connection.request`); its id.

        Raises:
            LocalProtocolError: bad demand, or stream ids exhausted.
        """
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
            s.demand = self.bind_demand(sid, demand) if demand is not None else None
            if complete and interaction is Interaction.CHANNEL:  # its first item was its last
                self.finish_outbound(s)
            self.open(s)
        limit = self.config.max_frame_size
        self.out.extend(
            encode_item(sid, FrameType(interaction), metadata, data, limit, initial_n=initial_n, complete=complete)
        )
        return sid

    def forget(self, s: Stream) -> None:
        """``s`` is over: its inbound half grants nothing more, and it leaves the table."""
        s.end_inbound()
        self.by_id.pop(s.id, None)
        if self.on_empty is not None and not self.by_id:
            self.on_empty()

    def when_empty(self, then: Callable[[], None]) -> None:
        """Call ``then`` once no stream is left (now, if none is open)."""
        self.on_empty = then
        if not self.by_id:
            then()

    def maybe_forget(self, s: Stream) -> None:
        if s.finished:
            self.forget(s)

    def abandon(self, s: Stream) -> None:
        """A request whose fragments were still arriving ends, never announced (its bytes go back)."""
        s.drop_partial()
        self.by_id.pop(s.id, None)

    def end_all(self) -> None:
        """The connection is over: every stream is."""
        self.on_empty = None
        for s in self.by_id.values():
            s.end_inbound()
        self.by_id.clear()

    def violation(self, s: Stream, error: RemoteProtocolError) -> None:
        """The peer broke the protocol on one stream: end it on both sides. Queues ERROR.

        A request still being reassembled was never announced to the application, so
        it ends silently here (and a fire-and-forget gets no ERROR: it has no stream).
        """
        self.forget(s)
        if s.interaction is not Interaction.FNF:
            self.out.queue(encode_frame(ErrorFrame(stream_id=s.id, code=error.code, message=str(error))))
        if s.pending_request is None:
            self.events.append(StreamErrored(stream_id=s.id, error=error))

    # ------------------------------------------------------------------ our own half-state changes

    def bind_demand(self, stream_id: int, demand: InboundDemand) -> InboundDemand:
        """``demand`` bound to ``stream_id``: its grants queue REQUEST_N from now on. The
        application drives it directly (take, ack, request); the table feeds it what
        arrives and ends it with the stream."""
        out = self.out
        demand.on_grant = lambda n: out.request_n(stream_id, n)
        return demand

    def set_policy(self, stream_id: int, policy: ReplenishPolicy, now: float, auto_ack: bool) -> None:
        s = self.by_id.get(stream_id)
        if s is None or s.inbound is not Half.OPEN:
            return
        s.demand = self.bind_demand(stream_id, InboundDemand(policy, auto_ack=auto_ack))
        s.demand.start(now)

    def finish_outbound(self, s: Stream) -> None:
        """We completed ``s``'s outbound half (our last item, or a channel request marked complete)."""
        s.local(True, Signal.FINISH)

    def stop(self, stream_id: int) -> bool:
        """We cancel the inbound half of ``stream_id`` (queues CANCEL); False when there was nothing to cancel.

        A channel's requester cancelling ends the whole stream (Protocol.md "Request
        Channel": "Upon sending a CANCEL, the stream is terminated on the Requester"): its
        outbound half ends as if the peer had cancelled it.
        """
        s = self.by_id.get(stream_id)
        if s is None or not s.local(False, Signal.STOP):
            return False
        s.end_inbound()
        if s.requester and s.interaction is Interaction.CHANNEL:
            s.local(True, Signal.CANCEL)
        self.out.queue(encode_frame(CancelFrame(stream_id=stream_id)))
        self.maybe_forget(s)
        return True

    def send_error(self, stream_id: int, code: int, message: str) -> bool:
        """End the stream in both directions with ERROR (see :meth:`Connection.send_error`)."""
        if not is_stream_code(code):
            raise LocalProtocolError(f"error code 0x{code:x} is not a stream-level code (0x201..0xFFFFFFFE)")
        s = self.by_id.get(stream_id)
        if s is None:
            return False
        self.forget(s)
        self.out.queue(encode_frame(ErrorFrame(stream_id=stream_id, code=code, message=message)))
        return True

    def sending(self, stream_id: int, signal: Signal) -> Stream:
        """The stream we send ``signal`` on (SEND or FINISH), its outbound half moved.

        Raises:
            LocalProtocolError: no such stream, or its outbound half cannot take it.
        """
        s = self.by_id.get(stream_id)
        if s is None:
            raise LocalProtocolError(f"stream {stream_id} is not open for sending (no such stream, or it is over)")
        s.local(True, signal)
        return s

    # ------------------------------------------------------------------ queries

    @property
    def reassembly_bytes(self) -> int:
        return sum(s.partial.size for s in self.by_id.values() if s.partial is not None)

    def demand(self, stream_id: int) -> InboundDemand | None:
        s = self.by_id.get(stream_id)
        return s.demand if s is not None and s.inbound is Half.OPEN else None

    def send_window(self, stream_id: int) -> int:
        s = self.by_id.get(stream_id)
        if s is None or s.outbound is not Half.OPEN:
            return 0
        return MAX_REQUEST_N if s.send_credit.unbounded else s.send_credit.available

    def can_send(self, stream_id: int) -> bool:
        s = self.by_id.get(stream_id)
        return s is not None and s.outbound is Half.OPEN

    # ------------------------------------------------------------------ the peer's requests

    def on_request(self, frame: RequestFrame, draining: bool) -> None:
        """A request from the peer: a new stream, or refused with a stream ERROR (the
        connection fails when the request used a stream id the peer may not use)."""
        sid = frame.stream_id
        wrong_id = stream_id_violation(self.role, frame)
        if wrong_id is not None:
            self.fail(wrong_id)
            return
        if sid in self.by_id:
            self.ignored += 1  # a request on a stream id in use MUST be ignored
            return
        interaction = Interaction(frame.type)
        refusal = request_refusal(self.config, draining, len(self.by_id), interaction, frame)
        if refusal is not None:
            if interaction is Interaction.FNF:  # fire-and-forget has no stream to answer on
                self.ignored += 1
            else:
                self.out.queue(encode_frame(ErrorFrame(stream_id=sid, code=refusal[0], message=refusal[1])))
            return
        s = Stream(sid, interaction, requester=False)
        if frame.follows and not frame.complete:
            s.pending_request = frame
            s.partial = self.new_partial()
            self.by_id[sid] = s
            self._on_request_fragment(
                s, PayloadFrame(stream_id=sid, metadata=frame.metadata, data=frame.data, follows=True)
            )
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
                self.by_id.pop(s.id, None)
                if s.interaction is not Interaction.FNF:  # a fire-and-forget has no stream to answer on
                    self.out.queue(encode_frame(ErrorFrame(stream_id=s.id, code=ErrorCode.INVALID, message=str(exc))))
                return
        if s.interaction is Interaction.FNF:
            self.by_id.pop(s.id, None)
        else:
            if s.interaction is not Interaction.RESPONSE:
                s.send_credit.granted(frame.initial_n)
            if s.inbound is Half.OPEN:
                # a responder's inbound half (a channel) gets demand when the application sets
                # its policy (set_policy); until then nothing is granted
                s.demand = self.bind_demand(s.id, InboundDemand())
                if complete:
                    s.local(False, Signal.COMPLETE)  # the request's C flag: the peer sends nothing more
                    # a responder answers every REQUEST_CHANNEL with REQUEST_N (Request Channel), even
                    # one that needs none: the requester ignores credit for a half it completed
                    self.out.request_n(s.id, 1)
            self.by_id[s.id] = s
        self.events.append(request_received(s.id, s.interaction, frame, metadata, data, route, info, complete))

    def _on_request_fragment(self, s: Stream, frame: StreamFrame) -> None:
        """A stream whose request is still arriving accepts only its fragments (or a CANCEL)."""
        if isinstance(frame, PayloadFrame):
            assert s.pending_request is not None and s.partial is not None
            try:
                s.partial.add(s.id, frame.metadata, frame.data)
            except RemoteProtocolError as exc:
                self.violation(s, exc)
                return
            if not (frame.follows and not frame.complete):
                metadata, data = s.partial.result()
                # a channel's C may come on its last fragment (rxchannel's requester puts it there)
                self._open_request(s, s.pending_request, metadata, data, complete=frame.complete)
        elif isinstance(frame, CancelFrame):
            self.abandon(s)  # the requester gave up before the request was whole
        else:
            error = "REQUEST_N arrived while the request's fragments were incomplete"
            self.violation(s, RemoteProtocolError(error, code=ErrorCode.INVALID, stream_id=s.id))

    # ------------------------------------------------------------------ the peer's frames on a stream

    def new_partial(self) -> Reassembly:
        return Reassembly(self.config.max_payload_size, self._budgets)

    def receive_payload(self, data: bytes, now: float) -> None:
        """A PAYLOAD frame, decoded in place on an open inbound half (no frame object)."""
        sid = int.from_bytes(data[:4], "big") & 0x7FFFFFFF
        s = self.by_id.get(sid)
        if s is None:
            self.ignored += 1
            return
        if s.pending_request is not None or s.inbound is not Half.OPEN:
            try:
                frame = decode_frame(data)
            except FrameDecodeError as exc:
                self.fail(exc)
                return
            self.on_frame(frame, now)  # type: ignore[arg-type]
            return
        flags = ((data[4] & 3) << 8) | data[5]
        metadata: bytes | None = None
        if flags & FLAG_METADATA:
            try:
                metadata, payload = split_metadata(data, 6, flags)
            except FrameDecodeError as exc:
                if flags & FLAG_IGNORE:
                    self.ignored += 1  # malformed, but the peer marked it ignorable
                    return
                self.fail(exc)
                return
        else:
            payload = data[6:]
        demand = item_demand(s)
        if (
            flags & ITEM_FLAGS == FLAG_NEXT
            and demand is not None
            and demand.received(len(payload) + (len(metadata) if metadata else 0), now)
        ):
            # the inbound table's (OPEN, NEXT) -> OPEN: one whole item within credit
            self.events.append(PayloadReceived(stream_id=sid, data=payload, metadata=metadata))
            return
        self._on_payload(
            s, metadata, payload, bool(flags & FLAG_FOLLOWS), bool(flags & FLAG_COMPLETE), bool(flags & FLAG_NEXT), now
        )

    def receive(self, frame: StreamFrame | RequestFrame | ErrorFrame, now: float, draining: bool) -> None:
        """One of :data:`STREAM_FRAMES` from the peer."""
        if isinstance(frame, RequestFrame):
            self.on_request(frame, draining)
        elif isinstance(frame, ErrorFrame):
            self.on_error(frame)
        else:
            self.on_frame(frame, now)

    def on_frame(self, frame: StreamFrame, now: float) -> None:
        """PAYLOAD, REQUEST_N or CANCEL from the peer."""
        s = self.by_id.get(frame.stream_id)
        if s is None:
            self.ignored += 1  # unknown or finished stream: ignore (Handling the Unexpected)
        elif s.pending_request is not None:
            self._on_request_fragment(s, frame)
        elif isinstance(frame, PayloadFrame):
            self._on_payload(s, frame.metadata, frame.data, frame.follows, frame.complete, frame.next, now)
        elif isinstance(frame, RequestNFrame):
            self._step(s, lambda: s.on_credit(frame.n))
        else:
            self._step(s, s.on_cancel)

    def on_error(self, frame: ErrorFrame) -> None:
        """ERROR from the peer on a stream: it ends both halves."""
        s = self.by_id.get(frame.stream_id)
        if s is None:
            self.ignored += 1  # unknown or finished stream: ignore (Handling the Unexpected)
        elif s.pending_request is not None:
            self.abandon(s)  # the requester gave up before its request was whole
        else:
            self.forget(s)  # ERROR ends both halves
            self.events.append(StreamErrored(stream_id=s.id, error=remote_error(frame.code, frame.message)))

    def _on_payload(
        self, s: Stream, metadata: bytes | None, data: bytes, follows: bool, complete: bool, next: bool, now: float
    ) -> None:
        self._step(s, lambda: s.on_payload(metadata, data, follows, complete, next, now, self.new_partial))

    def _step(self, s: Stream, step: Callable[[], list[Event] | None]) -> None:
        """Run one of the stream's transitions: emit its events, or end the stream on a violation."""
        try:
            events = step()
        except RemoteProtocolError as exc:
            self.violation(s, exc)
            return
        if events is None:
            self.ignored += 1  # a frame that raced our CANCEL or COMPLETE
        else:
            self.events.extend(events)
        self.maybe_forget(s)
