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
import warnings
from collections.abc import AsyncIterable, Callable, Iterable
from typing import Any

from rxchannel.core import (
    ClosedResourceError,
    Connection,
    ConnectionClosed,
    ConnectionConfig,
    ConnectionLostError,
    Detached,
    Interaction,
    MetadataPushed,
    RemoteProtocolError,
    RequestReceived,
    Resumed,
    ResumeFrame,
    ResumeReceived,
    Role,
    RxChannelError,
    SetupConfirmed,
    SetupReceived,
    WindowSpec,
    policy_for,
)
from rxchannel.transports import EndOfStream, Transport
from rxchannel.transports.admission import PROVEN

from .requester import Requests
from .responder import Responses
from .resumption import Gone, Redial, Resumption, SessionHost
from .router import Router
from .sink import RemoteSink
from .stream import RemoteStream
from .table import OpenStreams
from .timer import Deadline, stall_watchdog
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


class Peer:
    """Both requester and responder on one connection.

    Create with :func:`rxchannel.connect`, :func:`rxchannel.serve`, or directly from a
    transport: ``Peer(transport, Role.CLIENT, router=...)`` (the client sends SETUP at
    once). Use as an async context manager or call :meth:`close`.

    It holds two helpers on one table of its open streams (:class:`~.table.OpenStreams`):
    the requests it makes (:class:`~.requester.Requests`) and those it serves
    (:class:`~.responder.Responses`).
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
        self._streams = OpenStreams(
            self._conn,
            self._loop,
            flush=self._flush,
            flush_soon=self._flush_soon,
            writable=self._writable,
            drain=self._wait_writable,
            spawn=self._spawn,
            transport=lambda: self.transport,
        )
        self._requests = Requests(self._streams)
        self._responses = Responses(self._streams, self)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._deadline = Deadline(self._conn, self._loop, self._after_deadline)
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
        self._deadline.arm()

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

    # ------------------------------------------------------------ requests (:mod:`.requester`)

    def request_stream(
        self,
        route: str | None,
        data: bytes = b"",
        *,
        info: dict[str, Any] | None = None,
        metadata: bytes | None = None,
        window: WindowSpec = None,
        auto_ack: bool = True,
    ) -> RemoteStream:
        """A request-stream, opened when first iterated; at most ``window`` items in flight.

        Args:
            route: routing tag (None for none).
            data: the request's data.
            info: JSON-able dict sent as the ``application/json`` metadata entry.
            metadata: raw metadata instead of ``route``/``info``.
            window: items in flight, ``"auto"``, or a replenish policy (see :mod:`rxchannel.core`).
            auto_ack: an item is done when the next one is pulled; if False, call
                :meth:`RemoteStream.ack` yourself.
        """
        policy = policy_for(window)
        return self._requests.stream(Interaction.STREAM, route, data, info, metadata, policy, auto_ack=auto_ack)

    def request_channel(
        self,
        route: str | None,
        source: AsyncIterable[Any] | Iterable[Any] | None,
        data: bytes = b"",
        *,
        info: dict[str, Any] | None = None,
        metadata: bytes | None = None,
        window: WindowSpec = None,
        auto_ack: bool = True,
    ) -> RemoteStream:
        """A request-channel: ``source`` items go out as the responder grants credit;
        the returned stream yields the responder's items. ``data`` rides in the request."""
        policy = policy_for(window)
        return self._requests.stream(Interaction.CHANNEL, route, data, info, metadata, policy, source, auto_ack)

    def remote_sink(
        self,
        route: str | None,
        data: bytes = b"",
        *,
        info: dict[str, Any] | None = None,
        metadata: bytes | None = None,
        window: WindowSpec = None,
    ) -> RemoteSink:
        """A request-channel you send to item by item: the returned sink's ``send`` waits for
        the responder's credit (``try_send`` refuses without it, ``on_credit`` shows each
        grant), and its ``replies`` are the responder's items (at most ``window`` in flight).
        The request goes out at once."""
        return self._requests.sink(route, data, info, metadata, policy_for(window))

    def request_sink(self, *args: Any, **kwargs: Any) -> RemoteSink:
        """Deprecated: the same as :meth:`remote_sink` (the name every facade uses)."""
        warnings.warn("Peer.request_sink is now Peer.remote_sink", DeprecationWarning, stacklevel=2)
        return self.remote_sink(*args, **kwargs)

    async def request_response(
        self, route: str | None, data: bytes = b"", *, info: dict[str, Any] | None = None, metadata: bytes | None = None
    ) -> Payload:
        """Send a request and wait for its one response (an empty payload if the responder sent none)."""
        return await self._requests.response(route, data, info, metadata)

    async def fire_and_forget(
        self, route: str | None, data: bytes = b"", *, info: dict[str, Any] | None = None, metadata: bytes | None = None
    ) -> None:
        """Send a request that gets no response; returns once it is queued under the transport's high-water mark."""
        await self._requests.fire_and_forget(route, data, info, metadata)

    async def metadata_push(self, metadata: bytes) -> None:
        """Send METADATA_PUSH to the peer."""
        await self._requests.metadata_push(metadata)

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

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------ events

    def _process_events(self) -> None:
        for ev in self._streams.feed(self._conn.events()):  # the streams take theirs
            if isinstance(ev, RequestReceived):
                self.last_request = self._loop.time()
                self.requests += 1
                self._responses.serve(ev, self.router)
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
        self._deadline.arm()

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

    def _on_closed(self, error: RxChannelError | None) -> None:
        self.error = error
        stream_error = error or ClosedResourceError("the connection was closed by this side")
        self._streams.close_all(stream_error)
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
        self._deadline.cancel()
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
                self._deadline.arm()
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
        try:
            await stall_watchdog(self.transport, self._conn, self._process_events)
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

    def _after_deadline(self) -> None:
        self._flush()
        self._process_events()

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
