"""The state one connection keeps, shared by its two halves: what the peer sends
(:mod:`._connection`) and what the application calls (:mod:`._calls`).

It owns the stream table, the frames queued for the transport and the events for the
application, and the helpers that end streams and the connection.
"""

from __future__ import annotations

from collections import deque

from ._config import ConnectionConfig, Role
from ._credit import InboundDemand
from ._errors import RemoteProtocolError, RxChannelError
from ._events import ConnectionClosed, Event, Interaction, StreamErrored
from ._fragments import Budget, Reassembly
from ._frames import ErrorFrame, KeepaliveFrame, encode_frame, fit_frame
from ._keepalive import Keepalive
from ._output import Output
from ._resume import Session, SessionState, is_tracked
from ._setup import client_setup
from ._streams import Stream
from ._table import StreamTable

__all__ = ["ConnectionState"]


class ConnectionState:
    """Streams, queued frames and pending events of one connection (see :class:`Connection`)."""

    def __init__(self, role: Role, config: ConnectionConfig | None = None, *, now: float):
        self.role = role
        self.config = config or ConnectionConfig()
        #: the metadata MIME type of this connection: our own as a client, the client's SETUP's as a server
        self.metadata_mime = self.config.metadata_mime
        self._streams = StreamTable()
        self._out = Output()
        self._events: deque[Event] = deque()
        self._next_stream_id = 1 if role is Role.CLIENT else 2
        self._setup_done = role is Role.CLIENT
        self._closed = False
        #: why the connection closed (None: closed locally, or still open)
        self._close_error: RxChannelError | None = None
        #: the peer sent ERROR[CONNECTION_CLOSE]: open streams finish, then the connection closes
        self._draining: RxChannelError | None = None
        client = role is Role.CLIENT
        self._keepalive = Keepalive(now, self.config.max_lifetime, self.config.keepalive_interval if client else None)
        #: what unfinished fragmented items may hold, on this connection (and the server's shared budget)
        self._budgets: tuple[Budget, ...] = (
            Budget(self.config.max_reassembly_bytes, "ConnectionConfig.max_reassembly_bytes"),
        )
        if self.config.shared_reassembly is not None:
            self._budgets += (self.config.shared_reassembly,)
        #: frames dropped because the spec says to ignore them (unknown stream, late frame ...)
        self.ignored_frames = 0
        #: resumption state, when this connection is resumable (a client asking for it; a
        #: server once it accepted such a SETUP)
        self._session: Session | None = None
        #: frames that go out before anything queued and are never stored (RESUME,
        #: RESUME_OK, retransmissions)
        self._priority: list[bytes] = []
        #: a client learns the server accepted its SETUP from its first other frame (SetupConfirmed)
        self._setup_confirmed = not client
        if client:
            self._out.add(encode_frame(client_setup(self.config)))
            if self.config.resume_token is not None:
                self._session = Session(
                    self.config.resume_token, self.config.resume_store_bytes, self.config.resume_session_timeout
                )
                # a KEEPALIVE the server answers once it accepted the SETUP (RSocket has no SETUP ack)
                self._out.add(encode_frame(KeepaliveFrame(respond=True)))

    # ------------------------------------------------------------------ output

    def _new_partial(self) -> Reassembly:
        return Reassembly(self.config.max_payload_size, self._budgets)

    @property
    def has_output(self) -> bool:
        """Frames are queued for the transport."""
        return bool(self._out) or bool(self._priority)

    def frames_to_send(self) -> list[bytes]:
        """Drain the frames queued for the transport, oldest first (one frame per item).

        On a resumable connection each tracked frame is also kept in the resume store until
        the peer acknowledges it; while the transport is gone (or a RESUME awaits its
        answer) they are only kept, and nothing else goes out.
        """
        frames = self._out.drain()
        session = self._session
        if session is None:
            return frames
        store = session.store
        for frame in frames:
            if is_tracked(frame):
                store.add(frame)
        priority, self._priority = self._priority, []
        if session.state is SessionState.ATTACHED:
            return priority + frames if priority else frames
        return priority  # detached: nothing; resuming: the RESUME frame only

    def events(self) -> list[Event]:
        """Drain the pending events, oldest first."""
        events = list(self._events)
        self._events.clear()
        return events

    def next_event(self) -> Event | None:
        """Pop the oldest pending event, or None."""
        return self._events.popleft() if self._events else None

    def _queue(self, frame: bytes) -> None:
        """Queue ``frame``, made to fit the transport first (:func:`fit_frame`). Queues it."""
        if len(frame) > self.config.max_frame_size:
            frame = fit_frame(frame, self.config.max_frame_size)
        self._out.add(frame)

    # ------------------------------------------------------------------ queries

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
        return self._streams.ids()

    def stream(self, stream_id: int) -> Stream | None:
        """One stream's state for inspection (read it; drive it through the methods), or None once over."""
        return self._streams.get(stream_id)

    def demand(self, stream_id: int) -> InboundDemand | None:
        """The demand of our inbound half of ``stream_id`` (read it), or None once it is over."""
        return self._streams.demand(stream_id)

    def send_window(self, stream_id: int) -> int:
        """Items we may still send on ``stream_id`` now (0 if none or the stream is over)."""
        return self._streams.send_window(stream_id)

    def can_send(self, stream_id: int) -> bool:
        return self._streams.can_send(stream_id)

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

    def _maybe_forget(self, s: Stream) -> None:
        if s.finished:
            self._forget(s)

    def _forget(self, s: Stream) -> None:
        self._streams.forget(s)
        if self._draining is not None and not self._streams and not self._closed:
            self._close(self._draining)  # the peer's CONNECTION_CLOSE: the last stream is over

    def _fail(self, error: RemoteProtocolError) -> None:
        """The peer broke the protocol on the connection: send ERROR on stream 0 and close."""
        self._queue(encode_frame(ErrorFrame(stream_id=0, code=error.code, message=str(error))))
        self._close(error)

    def _close(self, error: RxChannelError | None) -> None:
        self._closed = True
        self._close_error = error
        self._streams.clear()
        self._events.append(ConnectionClosed(error=error))
