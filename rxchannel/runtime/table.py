"""The open streams of one :class:`~.peer.Peer`, by stream id: what its requester and
responder helpers share, and the :class:`~.link.Link` each stream's adapters see.

The peer builds one table and hands it, not itself, to its helpers (:mod:`.requester`,
:mod:`.responder`); the table reaches the peer only through the few callables it was given.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from rxchannel.core import (
    Connection,
    CreditGranted,
    Event,
    InboundCompleted,
    ItemsReceived,
    PayloadReceived,
    RxChannelError,
    StreamCancelled,
    StreamErrored,
)
from rxchannel.transports import Transport

from .router import error_for
from .sink import RemoteSink
from .stream import RemoteStream
from .values import Payload

__all__ = ["OpenStreams"]

#: what an outbound half runs: it sends through the sink it is given
Work = Callable[[RemoteSink], Coroutine[Any, Any, None]]


class OpenStreams:
    """Inbound halves (:class:`RemoteStream`) and outbound halves (:class:`RemoteSink`) by
    stream id, with the connection, the loop's clock, room on the transport and flushing; it
    hands each stream the connection's events for it (:meth:`feed`)."""

    __slots__ = (
        "_call_soon",
        "_transport",
        "_writable",
        "connection",
        "drain",
        "flush",
        "flush_soon",
        "inbound",
        "now",
        "outbound",
        "spawn",
    )

    def __init__(
        self,
        connection: Connection,
        loop: asyncio.AbstractEventLoop,
        *,
        flush: Callable[[], None],
        flush_soon: Callable[[], None],
        writable: Callable[[], bool],
        drain: Callable[[], Coroutine[Any, Any, None]],
        spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]],
        transport: Callable[[], Transport],
    ):
        """``transport``: the peer's transport now (a resumed session's transport changes)."""
        self.connection = connection
        # the peer's own bound methods: an adapter calls them once per item
        self.flush = flush
        self.flush_soon = flush_soon
        self.now = loop.time
        self._call_soon = loop.call_soon
        self.drain = drain
        #: runs a coroutine as one of the peer's tasks (cancelled when the connection closes)
        self.spawn = spawn
        self._writable = writable
        self._transport = transport
        self.inbound: dict[int, RemoteStream] = {}
        self.outbound: dict[int, RemoteSink] = {}

    @property
    def writable(self) -> bool:
        return self._writable()

    @property
    def remote(self) -> str:
        """The transport's remote address, for logs and error messages."""
        return self._transport().remote

    @property
    def path(self) -> str:
        """The path the transport's bytes take (``direct``, ``webrtc-relay``, ...)."""
        return self._transport().path

    def start(self, sid: int, work: Work) -> None:
        """Run ``work`` as the task that sends our outbound half of ``sid`` (through the sink it is given)."""
        sink = self.outbound[sid] = RemoteSink(self, sid)
        sink.task = self.spawn(work(sink))

    def fail(self, sid: int, exc: BaseException, route: str | None) -> None:
        """End ``sid`` with the ERROR the peer sees for ``exc`` (if the stream can still be ended)."""
        code, message = error_for(exc, route, remote=self.remote)
        if not self.connection.closed and self.connection.send_error(sid, code, message):
            self.flush()

    def feed(self, events: list[Event]) -> Iterator[Event]:
        """Hand each stream the events for it; yields the connection's own events, in their order."""
        inbound, outbound = self.inbound, self.outbound
        for ev in events:
            if type(ev) is ItemsReceived:
                stream = inbound.get(ev.stream_id)
                if stream is not None:
                    stream.feed_all(ev.items)
            elif isinstance(ev, PayloadReceived):
                stream = inbound.get(ev.stream_id)
                if stream is not None:
                    stream.feed(Payload(ev.data, ev.metadata))
            elif isinstance(ev, CreditGranted):
                sink = outbound.get(ev.stream_id)
                if sink is not None:
                    sink.credit_granted(ev.n)
            elif isinstance(ev, InboundCompleted):
                stream = inbound.pop(ev.stream_id, None)
                if stream is not None:
                    stream.finish()
            elif isinstance(ev, StreamCancelled):
                self.stop_outbound(ev.stream_id)
            elif isinstance(ev, StreamErrored):
                stream = inbound.pop(ev.stream_id, None)
                if stream is not None:
                    stream.finish(ev.error)
                    # a channel handler reading its inbound sees the error first; then its
                    # outbound sink stops (the stream is over: nothing more can be sent)
                    self._call_soon(self.stop_outbound, ev.stream_id, ev.error)
                else:
                    self.stop_outbound(ev.stream_id, ev.error)
            else:
                yield ev

    def stop_outbound(self, sid: int, error: RxChannelError | None = None) -> None:
        outbound = self.outbound.pop(sid, None)
        if outbound is not None:
            outbound.stop(error)

    def cancel(self, stream_id: int) -> None:
        """Cancel our inbound half of ``stream_id`` (:meth:`~.link.Link.cancel`)."""
        conn = self.connection
        self.inbound.pop(stream_id, None)
        conn.cancel(stream_id)
        if not conn.can_send(stream_id):  # a channel we requested: our half is over too
            self.stop_outbound(stream_id)
        self.flush_soon()

    def close_all(self, error: RxChannelError) -> None:
        """The connection ended: every open stream ends with ``error``."""
        for stream in self.inbound.values():
            stream.finish(error)
        self.inbound.clear()
        for sid in list(self.outbound):
            self.stop_outbound(sid, error)
