"""The open streams of one :class:`~.peer.Peer`, by stream id: what its requester and
responder helpers share, and the :class:`~.link.Link` each stream's adapters see.

The peer builds one table and hands it, not itself, to its helpers (:mod:`.requester`,
:mod:`.responder`); the table reaches the peer only through the few callables it was given.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from rxchannel.core import Connection, RxChannelError

from .router import error_for
from .sink import RemoteSink
from .stream import RemoteStream

__all__ = ["StreamTable"]

#: what an outbound half runs: it sends through the sink it is given
Work = Callable[[RemoteSink], Coroutine[Any, Any, None]]


class StreamTable:
    """Inbound halves (:class:`RemoteStream`) and outbound halves (:class:`RemoteSink`) by
    stream id, with the connection, the loop's clock, room on the transport and flushing."""

    __slots__ = (
        "_remote",
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
        *,
        flush: Callable[[], None],
        flush_soon: Callable[[], None],
        now: Callable[[], float],
        writable: Callable[[], bool],
        drain: Callable[[], Coroutine[Any, Any, None]],
        spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]],
        remote: Callable[[], str],
    ):
        """``remote``: the transport's address now (a resumed session's transport changes)."""
        self.connection = connection
        # the peer's own bound methods: an adapter calls them once per item
        self.flush = flush
        self.flush_soon = flush_soon
        self.now = now
        self.drain = drain
        #: runs a coroutine as one of the peer's tasks (cancelled when the connection closes)
        self.spawn = spawn
        self._writable = writable
        self._remote = remote
        self.inbound: dict[int, RemoteStream] = {}
        self.outbound: dict[int, RemoteSink] = {}

    @property
    def writable(self) -> bool:
        return self._writable()

    @property
    def remote(self) -> str:
        """The transport's remote address, for logs and error messages."""
        return self._remote()

    def start(self, sid: int, work: Work) -> None:
        """Run ``work`` as the task that sends our outbound half of ``sid`` (through the sink it is given)."""
        sink = self.outbound[sid] = RemoteSink(self, sid)
        sink.task = self.spawn(work(sink))

    def fail(self, sid: int, exc: BaseException, route: str | None) -> None:
        """End ``sid`` with the ERROR the peer sees for ``exc`` (if the stream can still be ended)."""
        code, message = error_for(exc, route, remote=self._remote())
        if not self.connection.closed and self.connection.send_error(sid, code, message):
            self.flush()

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
