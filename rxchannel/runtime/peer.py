"""The asyncio runtime: one sans-IO :class:`~rxchannel.core.Connection` bound to one transport.

Thin on purpose: a read loop feeds frames to the core, events are
dispatched to stream objects (:class:`RemoteStream`), outbound sinks (:class:`RemoteSink`) and
handler tasks, queued frames are flushed to the transport, and one timer drives
keepalive. Protocol decisions live in the core.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from rxchannel.core import (
    ClosedResourceError,
    Connection,
    ConnectionClosed,
    ConnectionConfig,
    ConnectionLostError,
    CreditGranted,
    Detached,
    InboundCompleted,
    ItemsReceived,
    MetadataPushed,
    PayloadReceived,
    RemoteProtocolError,
    RequestReceived,
    Resumed,
    ResumeFrame,
    ResumeReceived,
    Role,
    RxChannelError,
    SetupConfirmed,
    SetupReceived,
    StreamCancelled,
    StreamErrored,
)
from rxchannel.transports import EndOfStream, Transport
from rxchannel.transports.admission import PROVEN

from .requester import RequesterSide
from .responder import ResponderSide
from .resumption import Gone, Redial, Resumption, SessionHost
from .router import Router, error_for
from .sink import RemoteSink
from .stream import RemoteStream
from .values import Payload

#: A connection that failed on this side (an unexpected exception): one line each.
log = logging.getLogger("rxchannel.peer")

__all__ = ["Peer"]

#: seconds a transport that failed to send has to let the read loop see its end (after what
#: the peer sent before it) before the peer ends it anyway
_READ_GRACE = 2.0


def _transport_failure(exc: RxChannelError) -> RxChannelError:
    """What the connection's streams see when its transport fails under it.

    The peer breaking the transport's framing stays a :class:`RemoteProtocolError` (its
    blame); anything else (a reset, a transport closed beneath the connection) is a lost
    connection.
    """
    if isinstance(exc, (ConnectionLostError, RemoteProtocolError)):
        return exc
    error = ConnectionLostError(f"the transport failed: {exc}")
    error.__cause__ = exc
    return error


class _Link:
    """The peer as its stream adapters see it (:class:`~.link.Link`): the connection,
    the loop's clock, room on the transport, flushing, and cancelling an inbound half."""

    __slots__ = ("flush", "flush_soon", "now", "peer")

    def __init__(self, peer: Peer):
        self.peer = peer
        # the peer's own bound methods: an adapter calls them once per item
        self.flush: Callable[[], None] = peer._flush
        self.flush_soon: Callable[[], None] = peer._flush_soon
        self.now: Callable[[], float] = peer._loop.time

    @property
    def connection(self) -> Connection:
        return self.peer._conn

    @property
    def writable(self) -> bool:
        return self.peer._writable()

    async def drain(self) -> None:
        await self.peer._wait_writable()

    def cancel(self, stream_id: int) -> None:
        peer = self.peer
        peer._inbound.pop(stream_id, None)
        peer._conn.cancel(stream_id)
        if not peer._conn.can_send(stream_id):  # a channel we requested: our half is over too
            peer._stop_outbound(stream_id)
        peer._flush_soon()


class Peer(RequesterSide, ResponderSide):
    """Both requester and responder on one connection.

    Create with :func:`rxchannel.connect`, :func:`rxchannel.serve`, or directly from a
    transport: ``Peer(transport, Role.CLIENT, router=...)`` (the client sends SETUP at
    once). Use as an async context manager or call :meth:`close`.
    """

    def __init__(
        self,
        transport: Transport,
        role: Role,
        *,
        router: Router | None = None,
        config: ConnectionConfig | None = None,
        redial: Redial | None = None,
        host: SessionHost | None = None,
    ):
        """``redial`` (a resumable client) opens a new transport to the same server; ``host``
        (a server) is where a RESUME arriving on this connection is taken (:mod:`.resumption`)."""
        config = config or ConnectionConfig()
        if transport.max_message_size < config.max_frame_size:
            config = dataclasses.replace(config, max_frame_size=transport.max_message_size)
        self._loop = asyncio.get_running_loop()
        #: the event loop this peer (and every stream on it) belongs to; it is not thread-safe
        self.loop = self._loop
        self.transport = transport
        self.router = router or Router()
        self._conn = Connection(role, config, now=self._loop.time())
        self._link = _Link(self)
        self._inbound: dict[int, RemoteStream] = {}
        self._outbound: dict[int, RemoteSink] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.Handle | None = None
        self._timer_at = 0.0
        self._flush_handle: asyncio.Handle | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self.setup: SetupReceived | None = None
        #: called once the peer's SETUP is accepted (a server logs the connection then)
        self.on_setup: Callable[[Peer], object] | None = None
        #: says whether this connection is idle (a server's admission may let it make room
        #: for a newer one); None: never
        self.idle: Callable[[], bool] | None = None
        #: when (the loop's clock) the peer last made a request of us, and how many it made
        self.last_request = self._loop.time()
        self.requests = 0
        self.error: RxChannelError | None = None
        self.closed: asyncio.Future[RxChannelError | None] = self._loop.create_future()
        self._host = host
        resumable = config.resume_token is not None or config.resumable
        self._resumption = Resumption(self, redial, attempt_timeout=config.max_lifetime) if resumable else None
        #: resolves once the server accepted our SETUP (a resumable client waits for it)
        self.setup_confirmed: asyncio.Future[None] = self._loop.create_future()
        if config.resume_token is None:
            self.setup_confirmed.set_result(None)
        self._room = asyncio.Event()  # set when the resume store has room again
        self._reader = self._loop.create_task(self._read_loop(transport))
        self._flush()
        self._arm_timer()

    @property
    def connection(self) -> Connection:
        """The sans-IO connection (read its state; do not drive it)."""
        return self._conn

    @property
    def reconnects(self) -> int:
        """How many times this peer's session was resumed on a new transport."""
        return self._resumption.reconnects if self._resumption is not None else 0

    @property
    def resumption(self) -> Resumption | None:
        """The session resumption of this peer (``on_change`` to follow it), or None."""
        return self._resumption

    def _writable(self) -> bool:
        """Items may go out: the transport is under its high-water mark and the resume store has room."""
        room = self._conn.store_room
        return self.transport.writable and (room is None or room > 0)

    def _acks_stalled(self) -> None:
        """The resume store stayed full, the peer acknowledging nothing, for ``resume_ack_timeout``:
        go on without resumability rather than wait for ever (said once, in the log)."""
        size = self._conn.store_size
        if self._conn.drop_resumption():
            log.warning(
                "%s acknowledged none of the last %d KiB for %.0f s: this session can no longer be resumed; "
                "its streams go on without it",
                self.transport.remote,
                size >> 10,
                self._conn.config.resume_ack_timeout,
                extra={"event": "session.unresumable", "fields": {"remote": self.transport.remote}},
            )
        self._room.set()

    async def _wait_writable(self) -> None:
        """Wait until :meth:`_writable` (a resumable peer also waits out a broken transport)."""
        while not self._writable() and not self._conn.closed:
            transport = self.transport
            if transport.writable:  # the resume store is full: acknowledgements will free it
                self._room.clear()
                try:
                    async with asyncio.timeout(self._conn.config.resume_ack_timeout):
                        await self._room.wait()
                except TimeoutError:
                    self._acks_stalled()
                continue
            try:
                await transport.drain()
            except RxChannelError as exc:
                if self._resumption is None or not self._conn.resumable:
                    raise
                # the read loop first reads what the peer sent before the break (a CANCEL
                # before its close), then ends the transport; one that never says so, soon
                reader = self._reader
                if transport is self.transport and not reader.done():
                    await asyncio.wait({reader}, timeout=_READ_GRACE)
                self._transport_ended(transport, _transport_failure(exc))

    # ------------------------------------------------------------ producing and responding

    def _start(self, sid: int, work: Callable[[RemoteSink], Coroutine[Any, Any, None]]) -> None:
        """Run ``work`` as the task that sends our outbound half of ``sid`` (through the sink it is given)."""
        sink = self._outbound[sid] = RemoteSink(self._link, sid)
        sink.task = self._spawn(work(sink))

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _fail_stream(self, sid: int, exc: BaseException, route: str | None) -> None:
        code, message = error_for(exc, route, remote=self.transport.remote)
        if not self._conn.closed and self._conn.send_error(sid, code, message):
            self._flush()

    # ------------------------------------------------------------ events

    def _process_events(self) -> None:
        inbound = self._inbound
        for ev in self._conn.events():
            if type(ev) is ItemsReceived:
                stream = inbound.get(ev.stream_id)
                if stream is not None:
                    stream.feed_all(ev.items)
            elif isinstance(ev, PayloadReceived):
                stream = inbound.get(ev.stream_id)
                if stream is not None:
                    stream.feed(Payload(ev.data, ev.metadata))
            elif isinstance(ev, CreditGranted):
                outbound = self._outbound.get(ev.stream_id)
                if outbound is not None:
                    outbound.credit_granted(ev.n)
            elif isinstance(ev, InboundCompleted):
                stream = self._inbound.pop(ev.stream_id, None)
                if stream is not None:
                    stream.finish()
            elif isinstance(ev, RequestReceived):
                self.last_request = self._loop.time()
                self.requests += 1
                self._on_request(ev)
            elif isinstance(ev, StreamCancelled):
                self._stop_outbound(ev.stream_id)
            elif isinstance(ev, StreamErrored):
                stream = self._inbound.pop(ev.stream_id, None)
                if stream is not None:
                    stream.finish(ev.error)
                    # a channel handler reading its inbound sees the error first; then its
                    # outbound sink stops (the stream is over: nothing more can be sent)
                    self._loop.call_soon(self._stop_outbound, ev.stream_id, ev.error)
                else:
                    self._stop_outbound(ev.stream_id, ev.error)
            elif isinstance(ev, MetadataPushed):
                if self.router.on_metadata_push is not None:
                    self.router.on_metadata_push(ev.metadata)
            elif isinstance(ev, SetupReceived):
                self.setup = ev
                self.last_request = self._loop.time()
                self.transport.advance(PROVEN, self.idle)  # its admission never evicts it for an unproven one
                if self.on_setup is not None:
                    self.on_setup(self)
            elif isinstance(ev, ConnectionClosed):
                self._on_closed(ev.error)
            else:
                self._on_session_event(ev)

    def _on_session_event(self, ev: Any) -> None:
        """Resumption events (:mod:`.resumption`)."""
        if isinstance(ev, SetupConfirmed):
            if not self.setup_confirmed.done():
                self.setup_confirmed.set_result(None)
        elif isinstance(ev, Detached) and self._resumption is not None:
            self._resumption.lost(ev.reason)
        elif isinstance(ev, Resumed) and self._resumption is not None:
            self._resumption.resumed(ev.resumes)
        elif isinstance(ev, ResumeReceived):
            self._take_resume(ev.frame)

    def _take_resume(self, frame: ResumeFrame) -> None:
        """A RESUME on this new connection: the host hands our transport to its session, or we refuse."""
        if self._host is not None and self._host.resume(self, frame):
            return
        if not self._conn.closed:  # the host may have refused already, with its reason
            self._conn.refuse_resume("no session to resume here")
            self._flush()
            self._process_events()

    def _attach(self, transport: Transport) -> None:
        """Carry on on ``transport`` (a resumed session's new one)."""
        old, self.transport = self.transport, transport
        if isinstance(old, Gone):
            old.back()
        if not self._reader.done():
            self._reader.cancel()
        self._reader = self._loop.create_task(self._read_loop(transport))
        self._flush()
        self._arm_timer()

    def _relinquish(self) -> None:
        """This (new) connection's transport now carries another peer's session: let go of it."""
        self.transport = Gone(self.transport.limits)
        self._conn.close()
        self._process_events()

    def _transport_ended(self, transport: Transport, error: RxChannelError) -> None:
        """``transport`` failed or ended: a resumable session waits to be resumed; anything else closes."""
        if transport is not self.transport or self._conn.closed:
            return  # a transport already replaced
        if self._resumption is not None and self._conn.resumable and isinstance(error, ConnectionLostError):
            self._resumption.lost(str(error))
        else:
            self._conn.connection_lost(error)
        self._process_events()

    def _stop_outbound(self, sid: int, error: RxChannelError | None = None) -> None:
        outbound = self._outbound.pop(sid, None)
        if outbound is not None:
            outbound.stop(error)

    def _on_closed(self, error: RxChannelError | None) -> None:
        self.error = error
        stream_error = error or ClosedResourceError("the connection was closed by this side")
        for stream in self._inbound.values():
            stream.finish(stream_error)
        self._inbound.clear()
        for sid in list(self._outbound):
            self._stop_outbound(sid, stream_error)
        for task in list(self._tasks):
            task.cancel()
        self._flush()  # a last ERROR frame, if any
        self._room.set()
        if not self.setup_confirmed.done():
            self.setup_confirmed.set_exception(error or ClosedResourceError("the connection was closed by this side"))
            self.setup_confirmed.exception()  # retrieved: nobody has to wait for it
        if isinstance(error, ConnectionLostError):
            self.transport.abort()
        else:
            self._spawn(self.transport.close())
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.closed.done():
            self.closed.set_result(error)

    # ------------------------------------------------------------ I/O plumbing

    async def _read_loop(self, transport: Transport) -> None:
        conn = self._conn
        try:
            while not conn.closed:
                if not transport.writable:
                    # everything we send unasked (KEEPALIVE echoes, replies, errors) answers what we
                    # read: while the peer does not read us, we do not read it (the stall watchdog
                    # drops it if that lasts)
                    try:
                        await transport.drain()
                        continue
                    except RxChannelError:
                        pass  # sending broke: what the peer sent before it went is read first, then the end
                conn.receive_frames(await transport.receive(), self._loop.time())
                self._process_events()
                self._flush()
                self._arm_timer()
                if self._conn.store_room is not None and self._conn.store_room > 0:
                    self._room.set()
        except EndOfStream:
            self._transport_ended(transport, ConnectionLostError("the peer closed the connection"))
        except RxChannelError as exc:
            self._transport_ended(transport, _transport_failure(exc))
        except asyncio.CancelledError:
            if transport is self.transport:
                conn.connection_lost(ClosedResourceError("the connection was closed by this side"))
        except Exception as exc:  # a fault of ours: end the connection visibly, never half alive
            self._failed_here(exc, "reading from the peer")
        self._process_events()

    def _failed_here(self, exc: BaseException, doing: str) -> None:
        """An unexpected exception while ``doing``: one log line naming it (with its
        traceback at debug), ERROR[CONNECTION_ERROR] to the peer if it can still be sent,
        and every stream ends with the cause."""
        if self._conn.closed:
            return
        reason = f"{type(exc).__name__} while {doing}: {exc}"
        log.error(
            "connection with %s ended: %s",
            self.transport.remote,
            reason,
            exc_info=log.isEnabledFor(logging.DEBUG),
            extra={"event": "connection.failed", "fields": {"remote": self.transport.remote, "reason": reason}},
        )
        self._conn.fail_locally(reason)
        with contextlib.suppress(Exception):  # the ERROR goes out if the transport still takes frames
            self.transport.write(self._conn.frames_to_send())
        self._process_events()

    async def _stall_watchdog(self) -> None:
        """Runs while the send queue is over the high-water mark; drops a peer that lets it stay there."""
        limits = self.transport.limits
        try:
            async with asyncio.timeout(limits.stall_timeout):
                await self.transport.drain()
        except TimeoutError:
            queued = self.transport.buffered_amount
            self._conn.connection_lost(
                ConnectionLostError(
                    f"the peer stopped reading: {queued >> 10} KiB waited for it over the high-water mark "
                    f"for {limits.stall_timeout:.0f} s (TransportLimits.stall_timeout); dropped"
                )
            )
            self._process_events()
        except RxChannelError:
            pass  # the transport ended anyway
        finally:
            self._watchdog = None

    def _flush(self) -> None:
        if not self._conn.has_output:
            return
        frames = self._conn.frames_to_send()
        transport = self.transport
        try:
            transport.write(frames)
        except RxChannelError as exc:
            # what the peer sent before the transport broke (a CANCEL before its close) is still
            # to be read: the read loop ends the transport after it; one that never says so, soon
            self._loop.call_later(_READ_GRACE, self._transport_ended, transport, _transport_failure(exc))
            return
        except Exception as exc:  # the transport refused a frame (too large, a bug): end visibly
            self._loop.call_soon(self._failed_here, exc, "writing to the peer")
            return
        if self._watchdog is None and not self.transport.writable and not self._conn.closed:
            self._watchdog = self._spawn(self._stall_watchdog())

    def _flush_soon(self) -> None:
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush_cb)

    def _flush_cb(self) -> None:
        self._flush_handle = None
        self._flush()

    def _arm_timer(self) -> None:
        """One timer for the connection's next deadline; moved earlier when the deadline
        moves earlier (a SETUP that asks for a shorter lifetime), never re-armed needlessly."""
        deadline = self._conn.get_timer()
        if deadline is None:
            return
        if self._timer is not None:
            if self._timer_at <= deadline:
                return
            self._timer.cancel()
        # the deadline is kept here: uvloop's call_at returns a plain Handle, without when(),
        # for a deadline already past (which the timer of a busy loop's connection can be)
        self._timer_at = deadline
        self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._conn.handle_timer(self._loop.time())
        self._flush()
        self._process_events()
        self._arm_timer()

    # ------------------------------------------------------------ lifecycle

    async def close(self) -> None:
        """Close the connection: every open stream fails with ClosedResourceError. Idempotent."""
        if not self._conn.closed:
            self._conn.close()
            self._process_events()
        if not self._reader.done():
            self._reader.cancel()
        await asyncio.gather(self._reader, *self._tasks, return_exceptions=True)
        await self.transport.close()

    async def wait_closed(self) -> RxChannelError | None:
        """Wait until the connection ends; returns the error that ended it (None for a local close)."""
        return await asyncio.shield(self.closed)

    async def __aenter__(self) -> Peer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self._conn.closed else "open"
        return f"<Peer {self._conn.role.value} {state} streams={self._conn.open_streams}>"
