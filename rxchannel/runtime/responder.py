"""The requests a peer serves (the responder half of :class:`~.peer.Peer`).

A request from the remote is resolved in the :class:`~.router.Router`; its handler runs in
a task of its own, and what it returns (one reply, a stream's items, or items it sends
itself through :meth:`~.router.Request.open_outbound`) goes out within the remote's credit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

from rxchannel.core import (
    ErrorCode,
    Interaction,
    RequestReceived,
    StreamCancelledError,
    policy_for,
)

from .requester import PeerParts
from .router import Handler, Request, Requester, Router, error_for, handler_result
from .sink import RemoteSink
from .stream import RemoteStream
from .values import as_payload

__all__ = ["ResponderSide"]


class ResponderSide(PeerParts):
    """The requests this side serves: a part of :class:`~.peer.Peer`."""

    router: Router
    _spawn: Callable[[Any], asyncio.Task[Any]]

    def _on_request(self, ev: RequestReceived) -> None:
        sid, kind, route = ev.stream_id, ev.interaction, ev.route
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
            info=ev.info,
            data=ev.data,
            metadata=ev.metadata,
            peer=cast(Requester, self),  # a Peer: the handler makes requests back through it
            remote=self.transport.remote,
            initial_n=ev.initial_n,
        )
        if kind in (Interaction.STREAM, Interaction.CHANNEL):
            request._open_outbound = lambda: self._take_outbound(sid, route)
        if kind is Interaction.CHANNEL:
            request.inbound = inbound = RemoteStream(self._link, stream_id=sid)
            if ev.complete:
                inbound.finish()
            else:
                self._inbound[sid] = inbound
                self._conn.set_policy(sid, policy_for(window), self._loop.time())
        if kind is Interaction.FNF:
            self._spawn(self._respond(request, handler, None))
        else:
            self._start(sid, lambda sink: self._respond(request, handler, sink))

    def _take_outbound(self, sid: int, route: str | None) -> RemoteSink:
        """The handler sends this stream's items itself: a sink it pushes to replaces the one
        that would have pulled its result."""
        sink = RemoteSink(self._link, sid, on_error=lambda exc: error_for(exc, route, remote=self.transport.remote))
        self._outbound[sid] = sink
        return sink

    async def _respond(self, request: Request, handler: Handler, sink: RemoteSink | None) -> None:
        sid, kind = request.stream_id, request.interaction
        try:
            result = await handler_result(handler, request)
            if kind is Interaction.RESPONSE:
                payload = as_payload(result)
                await self._wait_writable()  # a reply waits for room like any item
                if self._conn.can_send(sid):
                    self._conn.send_payload(sid, payload.data, payload.metadata)
                    self._flush()
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
                self._fail_stream(sid, exc, request.route)
        finally:
            self._outbound.pop(sid, None)
            request.finished()
            if request.inbound is not None:
                await request.inbound.aclose()
