"""The requests a peer makes (the requester helper of :class:`~.peer.Peer`).

Request-stream, request-channel (with a source, or a sink you send to), request-response,
fire-and-forget and METADATA_PUSH. A request becomes a stream object
(:class:`~.stream.RemoteStream`, :class:`~.sink.RemoteSink`) registered in the peer's
:class:`~.table.OpenStreams`, which the peer feeds with the connection's events.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Iterable
from typing import Any

from rxchannel.core import (
    Interaction,
    ReplenishPolicy,
    RxChannelError,
    request_metadata,
)

from .router import error_for
from .sink import RemoteSink
from .stream import RemoteStream
from .table import OpenStreams
from .values import Payload

__all__ = ["Requests"]


class Requests:
    """The requests this side makes, on the peer's stream table: :class:`~.peer.Peer`'s
    request methods say what each takes; these build the streams."""

    __slots__ = ("_streams",)

    def __init__(self, streams: OpenStreams):
        self._streams = streams

    def stream(
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
        streams = self._streams
        md = metadata if metadata is not None else request_metadata(route, info)

        def open_stream(stream: RemoteStream, first_n: int | None) -> int:
            sid = streams.connection.request(
                interaction,
                metadata=md,
                data=data,
                policy=policy,
                initial_n=first_n or 0,
                auto_ack=auto_ack,
                complete=source is None,
                now=streams.now(),
            )
            streams.inbound[sid] = stream
            if source is not None:
                streams.start(sid, lambda sink: self._run_source(sink, source, route))
            streams.flush()
            return sid

        lazy = policy is not None and policy.initial() == 0
        return RemoteStream(streams, opener=open_stream, lazy=lazy)

    def sink(
        self,
        route: str | None,
        data: bytes,
        info: dict[str, Any] | None,
        metadata: bytes | None,
        policy: ReplenishPolicy,
    ) -> RemoteSink:
        """A request-channel we send to item by item (:meth:`~.peer.Peer.remote_sink`); it goes out at once."""
        streams = self._streams
        md = metadata if metadata is not None else request_metadata(route, info)
        sid = streams.connection.request(Interaction.CHANNEL, metadata=md, data=data, policy=policy, now=streams.now())
        replies = streams.inbound[sid] = RemoteStream(streams, stream_id=sid)
        remote = streams.remote
        sink = RemoteSink(streams, sid, replies=replies, on_error=lambda exc: error_for(exc, route, "sender", remote))
        streams.outbound[sid] = sink
        streams.flush()
        return sink

    async def response(
        self, route: str | None, data: bytes, info: dict[str, Any] | None, metadata: bytes | None
    ) -> Payload:
        """A request-response's one reply (an empty payload if the responder sent none)."""
        stream = self.stream(Interaction.RESPONSE, route, data, info, metadata, None)
        try:
            return await stream.next()
        except StopAsyncIteration:
            return Payload(b"")
        finally:
            await stream.aclose()

    async def fire_and_forget(
        self, route: str | None, data: bytes, info: dict[str, Any] | None, metadata: bytes | None
    ) -> None:
        md = metadata if metadata is not None else request_metadata(route, info)
        self._streams.connection.request(Interaction.FNF, metadata=md, data=data, now=self._streams.now())
        await self._flush_and_drain()

    async def metadata_push(self, metadata: bytes) -> None:
        self._streams.connection.metadata_push(metadata)
        await self._flush_and_drain()

    async def _flush_and_drain(self) -> None:
        self._streams.flush()
        await self._streams.drain()

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
            self._streams.fail(sid, exc, route)
            stream = self._streams.inbound.pop(sid, None)
            if stream is not None:
                error = (
                    exc if isinstance(exc, RxChannelError) else RxChannelError(f"the channel's source failed: {exc!r}")
                )
                stream.finish(error)
        finally:
            self._streams.outbound.pop(sid, None)
