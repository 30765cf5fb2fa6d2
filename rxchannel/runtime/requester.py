"""The requests a peer makes (the requester half of :class:`~.peer.Peer`).

Request-stream, request-channel (with a source, or a sink you send to), request-response,
fire-and-forget and METADATA_PUSH. A request becomes a stream object
(:class:`~.stream.RemoteStream`, :class:`~.sink.RemoteSink`) registered with the peer,
which feeds it the connection's events.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterable, Callable, Coroutine, Iterable
from typing import Any

from rxchannel.core import (
    Connection,
    Interaction,
    ReplenishPolicy,
    RxChannelError,
    WindowSpec,
    policy_for,
    request_metadata,
)
from rxchannel.transports import Transport

from .link import Link
from .router import error_for
from .sink import RemoteSink
from .stream import RemoteStream
from .values import Payload

__all__ = ["PeerParts", "RequesterSide"]


class PeerParts:
    """What the halves of :class:`~.peer.Peer` share, declared for them; the peer provides it."""

    _conn: Connection
    _loop: asyncio.AbstractEventLoop
    _link: Link
    _inbound: dict[int, RemoteStream]
    _outbound: dict[int, RemoteSink]
    transport: Transport
    _start: Callable[[int, Callable[[RemoteSink], Coroutine[Any, Any, None]]], None]
    _flush: Callable[[], None]
    _fail_stream: Callable[[int, BaseException, str | None], None]
    _wait_writable: Callable[[], Coroutine[Any, Any, None]]


class RequesterSide(PeerParts):
    """The requests this side makes: a part of :class:`~.peer.Peer`."""

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

        def open_stream(stream: RemoteStream, first_n: int | None) -> int:
            sid = self._conn.request(
                interaction,
                metadata=md,
                data=data,
                policy=policy,
                initial_n=first_n or 0,
                auto_ack=auto_ack,
                complete=source is None,
                now=self._loop.time(),
            )
            self._inbound[sid] = stream
            if source is not None:
                self._start(sid, lambda sink: self._run_source(sink, source, route))
            self._flush()
            return sid

        lazy = policy is not None and policy.initial() == 0
        return RemoteStream(self._link, opener=open_stream, lazy=lazy)

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
        return self._remote_stream(Interaction.STREAM, route, data, info, metadata, policy, auto_ack=auto_ack)

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
        return self._remote_stream(Interaction.CHANNEL, route, data, info, metadata, policy, source, auto_ack)

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
        md = metadata if metadata is not None else request_metadata(route, info)
        sid = self._conn.request(
            Interaction.CHANNEL, metadata=md, data=data, policy=policy_for(window), now=self._loop.time()
        )
        replies = RemoteStream(self._link, stream_id=sid)
        self._inbound[sid] = replies
        remote = self.transport.remote
        sink = RemoteSink(
            self._link, sid, replies=replies, on_error=lambda exc: error_for(exc, route, "sender", remote)
        )
        self._outbound[sid] = sink
        self._flush()
        return sink

    def request_sink(self, *args: Any, **kwargs: Any) -> RemoteSink:
        """Deprecated: the same as :meth:`remote_sink` (the name every facade uses)."""
        warnings.warn("Peer.request_sink is now Peer.remote_sink", DeprecationWarning, stacklevel=2)
        return self.remote_sink(*args, **kwargs)

    async def request_response(
        self, route: str | None, data: bytes = b"", *, info: dict[str, Any] | None = None, metadata: bytes | None = None
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
        self._conn.request(Interaction.FNF, metadata=md, data=data, now=self._loop.time())
        await self._flush_and_drain()

    async def metadata_push(self, metadata: bytes) -> None:
        """Send METADATA_PUSH to the peer."""
        self._conn.metadata_push(metadata)
        await self._flush_and_drain()

    async def _flush_and_drain(self) -> None:
        self._flush()
        await self._wait_writable()

    async def _run_source(
        self, sink: RemoteSink, source: AsyncIterable[Any] | Iterable[Any], route: str | None
    ) -> None:
        """Our side of a channel we requested: a failing source ends the channel with ERROR."""
        sid = sink.stream_id
        try:
            await sink.run(source)
        except asyncio.CancelledError:
            pass
        except Exception as exc:
            self._fail_stream(sid, exc, route)
            stream = self._inbound.pop(sid, None)
            if stream is not None:
                error = (
                    exc if isinstance(exc, RxChannelError) else RxChannelError(f"the channel's source failed: {exc!r}")
                )
                stream.finish(error)
        finally:
            self._outbound.pop(sid, None)
