"""The asyncio runtime: one sans-IO :class:`~rxchannel.core.Connection` bound to one transport.

Thin on purpose (STYLE.md habit 10): a read loop feeds frames to the core, events are
dispatched to stream objects and handler tasks, queued frames are flushed to the
transport, and one timer drives keepalive. Protocol decisions live in the core.

Sending obeys both levels of flow control (DESIGN.md §3): a producer pulls the next item
from its source only when the peer has granted credit *and* the transport is under its
high-water mark.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any

from rxchannel.core import (
    Adaptive,
    ClosedResourceError,
    Connection,
    ConnectionClosed,
    ConnectionConfig,
    ConnectionLostError,
    CreditGranted,
    ErrorCode,
    InboundCompleted,
    Interaction,
    MetadataError,
    MetadataPushed,
    PayloadReceived,
    ReplenishPolicy,
    RequestReceived,
    Role,
    RxChannelError,
    SetupReceived,
    StreamCancelled,
    StreamErrored,
    Window,
    parse_request_metadata,
    request_metadata,
)

from ._types import ApplicationError, Payload, Request, as_payload
from .remote import RemoteStream
from .router import Router
from .transports import EndOfStream, Transport

__all__ = ["DEFAULT_WINDOW", "Peer", "policy_for"]

log = logging.getLogger("rxchannel.peer")

#: Items in flight on a stream when no window is given.
DEFAULT_WINDOW = 16
_FLUSH_BYTES = 64 * 1024  # flush a producer's frames once this much is queued
_YIELD_EVERY = 64  # let other tasks run after this many items sent without suspending


def policy_for(window: int | str | ReplenishPolicy | None) -> ReplenishPolicy:
    """A replenish policy from a window size, ``"auto"`` (adaptive), a policy, or None (the default window)."""
    if window is None:
        return Window(DEFAULT_WINDOW)
    if window == "auto":
        return Adaptive()
    if isinstance(window, int):
        return Window(window)
    if isinstance(window, str):
        raise ValueError(f"window must be a positive int, 'auto' or a policy, got {window!r}")
    return window


async def _aiter_sync(items: Iterable[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


class _Outbound:
    """A running producer for our outbound half of one stream."""

    __slots__ = ("task", "waiter")

    def __init__(self) -> None:
        self.task: asyncio.Task[None] | None = None
        self.waiter: asyncio.Future[None] | None = None

    def wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


class Peer:
    """Both requester and responder on one connection.

    Create with :func:`rxchannel.connect_tcp`, :func:`rxchannel.serve_tcp`, or directly
    from a transport: ``Peer(transport, Role.CLIENT, router=...)`` (the client sends
    SETUP at once). Use as an async context manager or call :meth:`close`.
    """

    def __init__(
        self,
        transport: Transport,
        role: Role,
        *,
        router: Router | None = None,
        config: ConnectionConfig | None = None,
    ):
        config = config or ConnectionConfig()
        if transport.max_message_size < config.max_frame_size:
            config = dataclasses.replace(config, max_frame_size=transport.max_message_size)
        self._loop = asyncio.get_running_loop()
        self.transport = transport
        self.router = router or Router()
        self._conn = Connection(role, config, now=self._loop.time())
        self._inbound: dict[int, RemoteStream] = {}
        self._outbound: dict[int, _Outbound] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._flush_handle: asyncio.Handle | None = None
        self._unflushed = 0
        self.setup: SetupReceived | None = None
        self.error: RxChannelError | None = None
        self.closed: asyncio.Future[RxChannelError | None] = self._loop.create_future()
        self._reader = self._loop.create_task(self._read_loop())
        self._flush()
        self._arm_timer()

    @property
    def connection(self) -> Connection:
        """The sans-IO connection (read its state; do not drive it)."""
        return self._conn

    # ------------------------------------------------------------ requester API

    def _remote_stream(
        self,
        interaction: Interaction,
        route: str | None,
        data: bytes,
        info: dict[str, Any] | None,
        metadata: bytes | None,
        policy: ReplenishPolicy | None,
        source: AsyncIterable[Any] | Iterable[Any] | None = None,
        auto_ack: bool = True,
    ) -> RemoteStream:
        """The stream object for a request we make; the request goes out when it is first used."""
        md = metadata if metadata is not None else request_metadata(route, info)

        def open_stream(stream: RemoteStream, first_n: int | None = None) -> int:
            # a manual stream opens with the first request(n) as its initial demand
            sid = self._conn.request(
                interaction,
                metadata=md,
                data=data,
                policy=policy if first_n is None else None,
                initial_n=first_n or 0,
                complete=source is None,
            )
            if first_n is not None and policy is not None:
                stream_state = self._conn.stream(sid)
                if stream_state is not None:
                    stream_state.policy = policy
            self._inbound[sid] = stream
            if source is not None:
                self._start_producer(sid, source, route)
            self._flush()
            return sid

        lazy = policy is not None and policy.initial() == 0
        return RemoteStream(self, open_stream, auto_ack=auto_ack, lazy=lazy)

    def request_stream(
        self,
        route: str | None,
        data: bytes = b"",
        *,
        info: dict[str, Any] | None = None,
        metadata: bytes | None = None,
        window: int | str | ReplenishPolicy | None = None,
        auto_ack: bool = True,
    ) -> RemoteStream:
        """A request-stream, opened when first iterated; at most ``window`` items in flight.

        Args:
            route: routing tag (None for none).
            data: the request's data.
            info: JSON-able dict sent as the ``application/json`` metadata entry.
            metadata: raw metadata instead of ``route``/``info``.
            window: items in flight, or a replenish policy (see :mod:`rxchannel.core`).
            auto_ack: count an item consumed when the next one is pulled; if False,
                call :meth:`RemoteStream.ack` yourself.
        """
        return self._remote_stream(
            Interaction.STREAM, route, data, info, metadata, policy_for(window), auto_ack=auto_ack
        )

    def request_channel(
        self,
        route: str | None,
        source: AsyncIterable[Any] | Iterable[Any] | None,
        data: bytes = b"",
        *,
        info: dict[str, Any] | None = None,
        metadata: bytes | None = None,
        window: int | str | ReplenishPolicy | None = None,
        auto_ack: bool = True,
    ) -> RemoteStream:
        """A request-channel: ``source`` items go out as the responder grants credit;
        the returned stream yields the responder's items. ``data`` rides in the request."""
        return self._remote_stream(
            Interaction.CHANNEL, route, data, info, metadata, policy_for(window), source, auto_ack=auto_ack
        )

    async def request_response(
        self,
        route: str | None,
        data: bytes = b"",
        *,
        info: dict[str, Any] | None = None,
        metadata: bytes | None = None,
    ) -> Payload:
        """Send a request and wait for its one response (an empty payload if the responder sent none)."""
        stream = self._remote_stream(Interaction.RESPONSE, route, data, info, metadata, None)
        try:
            return await stream.next()
        except StopAsyncIteration:
            return Payload(b"")
        finally:
            await stream.aclose()

    async def fire_and_forget(
        self, route: str | None, data: bytes = b"", *, info: dict[str, Any] | None = None, metadata: bytes | None = None
    ) -> None:
        """Send a request that gets no response; returns once it is queued under the transport's high-water mark."""
        md = metadata if metadata is not None else request_metadata(route, info)
        self._conn.request(Interaction.FNF, metadata=md, data=data)
        self._flush()
        if not self.transport.writable:
            await self.transport.drain()

    async def metadata_push(self, metadata: bytes) -> None:
        """Send METADATA_PUSH to the peer."""
        self._conn.metadata_push(metadata)
        self._flush()
        if not self.transport.writable:
            await self.transport.drain()

    # ------------------------------------------------------------ called by RemoteStream

    def _consumed(self, stream_id: int, count: int) -> None:
        self._conn.consumed(stream_id, count, self._loop.time())
        self._flush()  # credit goes out now: waiting a loop turn halves small-item throughput

    def _request_n(self, stream_id: int, n: int) -> None:
        self._conn.request_n(stream_id, n)
        self._flush_soon()

    def _cancel_inbound(self, stream_id: int) -> None:
        self._inbound.pop(stream_id, None)
        self._conn.cancel(stream_id)
        self._flush_soon()

    # ------------------------------------------------------------ sending

    def _start_producer(self, stream_id: int, source: AsyncIterable[Any] | Iterable[Any], route: str | None) -> None:
        out = _Outbound()
        self._outbound[stream_id] = out
        out.task = self._spawn(self._run_source(stream_id, source, out, route))

    async def _run_source(
        self, sid: int, source: AsyncIterable[Any] | Iterable[Any], out: _Outbound, route: str | None
    ) -> None:
        """Our side of a channel we requested: a failing source ends the channel with ERROR."""
        try:
            await self._produce(sid, source, out)
        except asyncio.CancelledError:
            pass
        except Exception as exc:
            self._fail_stream(sid, exc, route)
            stream = self._inbound.pop(sid, None)
            if stream is not None:
                error = (
                    exc if isinstance(exc, RxChannelError) else RxChannelError(f"the channel's source failed: {exc!r}")
                )
                stream._finish(error)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _produce(self, sid: int, source: AsyncIterable[Any] | Iterable[Any], out: _Outbound) -> None:
        """Send ``source``'s items on ``sid`` within the peer's credit and the transport's room.

        COMPLETE needs no credit (Protocol.md "Reactive Streams Semantics"; Reactive Streams
        §1.5 and §2.9), so the end of the source must be found without any: when credit runs
        out, the next item is pulled anyway and held (at most one item ahead of demand); if
        the source has ended instead, COMPLETE goes out at once. A source that marks its
        last item (``Payload.last``; such a source sets ``marks_last``) is never pulled
        ahead: its last item goes out as one PAYLOAD with NEXT|COMPLETE.
        """
        conn, transport = self._conn, self.transport
        pull_ahead = not getattr(source, "marks_last", False)
        items: AsyncIterator[Any] = source.__aiter__() if isinstance(source, AsyncIterable) else _aiter_sync(source)
        held: Payload | None = None
        since_yield = 0
        try:
            while True:
                if held is None and (pull_ahead or conn.send_window(sid)):
                    if not transport.writable:
                        self._flush()
                        await transport.drain()
                        since_yield = 0
                    try:
                        held = as_payload(await items.__anext__())
                    except StopAsyncIteration:
                        if conn.can_send(sid):
                            conn.send_complete(sid)
                            self._flush()
                        return
                while not conn.send_window(sid):
                    if not conn.can_send(sid):
                        return  # cancelled, or ended by an error, while we waited
                    out.waiter = self._loop.create_future()
                    self._flush()
                    await out.waiter
                    since_yield = 0
                if held is None:
                    continue  # credit arrived for a source that is never pulled ahead
                payload, held = held, None
                conn.send_payload(sid, payload.data, payload.metadata, complete=payload.last)
                if payload.last:
                    self._flush()
                    return
                self._unflushed += len(payload.data)
                if self._unflushed >= _FLUSH_BYTES:
                    self._flush()
                else:
                    self._flush_soon()
                since_yield += 1
                if since_yield >= _YIELD_EVERY:
                    since_yield = 0
                    await asyncio.sleep(0)
        finally:
            self._outbound.pop(sid, None)
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                await aclose()

    def _fail_stream(self, sid: int, exc: BaseException, route: str | None) -> None:
        if isinstance(exc, ApplicationError):
            code, message = exc.code, exc.message
        elif isinstance(exc, RxChannelError):
            code, message = ErrorCode.APPLICATION_ERROR, str(exc)
        else:
            log.warning("handler for route %r failed", route, exc_info=exc)
            code, message = ErrorCode.APPLICATION_ERROR, f"the handler for {route!r} failed ({type(exc).__name__})"
        if not self._conn.closed and self._conn.send_error(sid, code, message):
            self._flush()

    # ------------------------------------------------------------ responding

    def _on_request(self, ev: RequestReceived) -> None:
        sid, kind = ev.stream_id, ev.interaction
        try:
            route, info = parse_request_metadata(ev.metadata)
        except MetadataError as exc:
            if kind is not Interaction.FNF:
                self._conn.send_error(sid, ErrorCode.INVALID, str(exc))
            return
        found = self.router.resolve(kind, route)
        if found is None:
            if kind is not Interaction.FNF:
                self._conn.send_error(sid, ErrorCode.REJECTED, f"no {kind.name.lower()} handler for route {route!r}")
            return
        handler, window = found
        request = Request(
            stream_id=sid,
            interaction=kind,
            route=route,
            info=info,
            data=ev.data,
            metadata=ev.metadata,
            peer=self,
            initial_n=ev.initial_n,
        )
        if kind is Interaction.CHANNEL:
            inbound = RemoteStream(self, None, stream_id=sid)
            request.inbound = inbound
            if ev.complete:
                inbound._finish()
            else:
                self._inbound[sid] = inbound
                self._conn.set_policy(sid, policy_for(window), self._loop.time())
        out = _Outbound()
        if kind is not Interaction.FNF:
            self._outbound[sid] = out
        out.task = self._spawn(self._respond(request, handler, out))

    async def _respond(self, request: Request, handler: Any, out: _Outbound) -> None:
        sid, kind = request.stream_id, request.interaction
        try:
            result = handler(request)
            # await a coroutine's result, but not an Observable's (reactivex Observables are
            # awaitable: that would drain them) nor anything that is itself a stream of items
            if (
                inspect.isawaitable(result)
                and not isinstance(result, AsyncIterable)
                and not hasattr(result, "subscribe")
            ):
                result = await result
            if kind is Interaction.RESPONSE:
                payload = as_payload(result)
                if self._conn.can_send(sid):
                    self._conn.send_payload(sid, payload.data, payload.metadata)
                    self._flush()
            elif kind is not Interaction.FNF:
                if result is None or isinstance(result, (bytes, str, bytearray)):
                    raise TypeError("a stream or channel handler must return an iterable or async iterable of items")
                if hasattr(result, "subscribe") and not isinstance(result, AsyncIterable):
                    raise TypeError(
                        "the handler returned an Observable with no demand: build it from rxchannel.rx "
                        "(from_iterable, file_source ...) or add on_backpressure_buffer/drop/latest"
                    )
                await self._produce(sid, result, out)
        except asyncio.CancelledError:
            pass  # the peer cancelled, or the connection is closing
        except Exception as exc:
            if kind is not Interaction.FNF:
                self._fail_stream(sid, exc, request.route)
            else:
                log.warning("fire-and-forget handler for %r failed", request.route, exc_info=exc)
        finally:
            self._outbound.pop(sid, None)
            if request.inbound is not None:
                await request.inbound.aclose()

    # ------------------------------------------------------------ events

    def _process_events(self) -> None:
        for ev in self._conn.events():
            if isinstance(ev, PayloadReceived):
                stream = self._inbound.get(ev.stream_id)
                if stream is not None:
                    stream._push(Payload(ev.data, ev.metadata))
            elif isinstance(ev, CreditGranted):
                out = self._outbound.get(ev.stream_id)
                if out is not None:
                    out.wake()
            elif isinstance(ev, InboundCompleted):
                stream = self._inbound.pop(ev.stream_id, None)
                if stream is not None:
                    stream._finish()
            elif isinstance(ev, RequestReceived):
                self._on_request(ev)
            elif isinstance(ev, StreamCancelled):
                self._stop_outbound(ev.stream_id)
            elif isinstance(ev, StreamErrored):
                stream = self._inbound.pop(ev.stream_id, None)
                if stream is not None:
                    stream._finish(ev.error)
                    # a channel handler reading its inbound sees the error first; then its
                    # producer stops (the stream is over: nothing more can be sent)
                    self._loop.call_soon(self._stop_outbound, ev.stream_id)
                else:
                    self._stop_outbound(ev.stream_id)
            elif isinstance(ev, MetadataPushed):
                if self.router.on_metadata_push is not None:
                    self.router.on_metadata_push(ev.metadata)
            elif isinstance(ev, SetupReceived):
                self.setup = ev
            elif isinstance(ev, ConnectionClosed):
                self._on_closed(ev.error)

    def _stop_outbound(self, sid: int) -> None:
        out = self._outbound.pop(sid, None)
        if out is not None and out.task is not None:
            out.task.cancel()

    def _on_closed(self, error: RxChannelError | None) -> None:
        self.error = error
        stream_error = error or ClosedResourceError("the connection was closed by this side")
        for stream in self._inbound.values():
            stream._finish(stream_error)
        self._inbound.clear()
        for sid in list(self._outbound):
            self._stop_outbound(sid)
        for task in list(self._tasks):
            task.cancel()
        self._flush()  # a last ERROR frame, if any
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

    async def _read_loop(self) -> None:
        conn, transport = self._conn, self.transport
        try:
            while not conn.closed:
                frames = await transport.receive()
                now = self._loop.time()
                for frame in frames:
                    conn.receive(frame, now)
                self._process_events()
                self._flush()
                self._arm_timer()
        except EndOfStream:
            conn.connection_lost(ConnectionLostError("the peer closed the connection"))
        except RxChannelError as exc:
            conn.connection_lost(exc if isinstance(exc, ConnectionLostError) else ConnectionLostError(str(exc)))
        except asyncio.CancelledError:
            conn.connection_lost(ClosedResourceError("the connection was closed by this side"))
        self._process_events()

    def _flush(self) -> None:
        self._unflushed = 0
        frames = self._conn.frames_to_send()
        if not frames:
            return
        try:
            self.transport.write(frames)
        except RxChannelError as exc:
            self._conn.connection_lost(exc if isinstance(exc, ConnectionLostError) else ConnectionLostError(str(exc)))
            self._loop.call_soon(self._process_events)

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
            if self._timer.when() <= deadline:
                return
            self._timer.cancel()
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
