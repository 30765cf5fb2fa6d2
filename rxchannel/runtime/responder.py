"""The requests a peer serves (the responder helper of :class:`~.peer.Peer`).

A request from the remote is resolved in the :class:`~.router.Router`; its handler runs in
a task of its own, and what it returns (one reply, a stream's items, or items it sends
itself through :meth:`~.router.Request.open_outbound`) goes out within the remote's credit.
"""

from __future__ import annotations

import asyncio

from rxchannel.core import (
    ErrorCode,
    Interaction,
    RequestReceived,
    StreamCancelledError,
    policy_for,
)

from .router import Handler, Request, Requester, Router, error_for, handler_result
from .sink import RemoteSink
from .stream import RemoteStream
from .table import OpenStreams
from .values import as_payload

__all__ = ["Responses"]


class Responses:
    """The requests this side serves, on the peer's stream table; a handler's
    :attr:`~.router.Request.peer` is ``requester`` (the peer, to make requests back)."""

    __slots__ = ("_requester", "_streams")

    def __init__(self, streams: OpenStreams, requester: Requester):
        self._streams = streams
        self._requester = requester

    def serve(self, ev: RequestReceived, router: Router) -> None:
        """Resolve a request the peer made in ``router`` and run its handler."""
        streams, peer = self._streams, self._requester
        sid, kind, route = ev.stream_id, ev.interaction, ev.route
        found = router.resolve(kind, route)
        if found is None:
            if kind is not Interaction.FNF:
                streams.connection.send_error(
                    sid, ErrorCode.REJECTED, f"no {kind.name.lower()} handler for route {route!r}"
                )
            return
        handler, window = found
        request = Request(
            stream_id=sid,
            interaction=kind,
            route=route,
            info=ev.info,
            data=ev.data,
            metadata=ev.metadata,
            peer=peer,  # the handler makes requests back through it
            remote=streams.remote,
            path=streams.path,
            initial_n=ev.initial_n,
        )
        if kind in (Interaction.STREAM, Interaction.CHANNEL):
            request._open_outbound = lambda: self._take_outbound(sid, route)
        if kind is Interaction.CHANNEL:
            request.inbound = inbound = RemoteStream(streams, stream_id=sid)
            if ev.complete:
                inbound.finish()
            else:
                streams.inbound[sid] = inbound
                streams.connection.set_policy(sid, policy_for(window), streams.now())
        if kind is Interaction.FNF:
            streams.spawn(self._respond(request, handler, None))
        else:
            streams.start(sid, lambda sink: self._respond(request, handler, sink))

    def _take_outbound(self, sid: int, route: str | None) -> RemoteSink:
        """The handler sends this stream's items itself: a sink it pushes to replaces the one
        that would have pulled its result."""
        streams = self._streams
        sink = RemoteSink(streams, sid, on_error=lambda exc: error_for(exc, route, remote=streams.remote))
        streams.outbound[sid] = sink
        return sink

    async def _respond(self, request: Request, handler: Handler, sink: RemoteSink | None) -> None:
        sid, kind = request.stream_id, request.interaction
        streams = self._streams
        conn = streams.connection
        try:
            result = await handler_result(handler, request)
            if kind is Interaction.RESPONSE:
                payload = as_payload(result)
                await streams.drain()  # a reply waits for room like any item
                if conn.can_send(sid):
                    conn.send_payload(sid, payload.data, payload.metadata)
                    streams.flush()
            elif request._outbound is not None:
                await asyncio.shield(request._outbound.done)  # the handler sends; the stream ends with its sink
            elif sink is not None:
                await sink.run(result)
        except (asyncio.CancelledError, StreamCancelledError):
            pass  # the peer cancelled, or the connection is closing
        except Exception as exc:
            if kind is Interaction.FNF:
                error_for(exc, request.route, remote=request.remote)  # logged; a fire-and-forget has no one to tell
            else:
                streams.fail(sid, exc, request.route)
        finally:
            streams.outbound.pop(sid, None)
            request.finished()
            if request.inbound is not None:
                await request.inbound.aclose()
