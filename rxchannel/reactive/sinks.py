"""The Observer half: remote sinks and channels you subscribe to, driven by the remote's demand.

Sending to a peer looks like writing to a local file sink::

    sink = reactive.remote_sink(peer, "push/big.bin", info={"size": size})
    reactive.file_source("big.bin").pipe(request_n(sink.demand), ops.map(compress)).subscribe(sink)
    receipt = await sink.done

``sink.demand`` emits the credit the remote grants (what was granted before is given at
once), so ``request_n(sink.demand)`` makes the local source read only what the remote
asked for: the remote's consumption paces the local disk. ``on_next`` beyond the grant
is an error (:class:`~rxchannel.LocalProtocolError`, the stream ends with ERROR), never
a silent buffer. ``on_error`` / ``on_completed`` end the stream with ERROR / COMPLETE;
``dispose`` (or a remote CANCEL) stops it, and the demand Observable completes, which
stops the pipeline feeding it.

Demand counts items: between the source and the sink, transforms map one item to one
item (``map``, or ``filter``, which only takes fewer); an operator that adds items the
remote never asked for (``concat`` of a trailer, ``flat_map``) gets a refusal at the sink.
A compressor's final flush rides with the last item (``Payload.last``, which a file
source sets). ``examples/rx_remote_sink_compress.py`` shows it.

A responder uses the same two shapes: :func:`inbound` is the requester's items as a demand
Observable, :func:`outbound` the Observer its items go to.
"""

from __future__ import annotations

import asyncio
from typing import Any

from reactivex import Observable, abc
from reactivex.disposable import Disposable

from rxchannel.core import (
    ClosedResourceError,
    LocalProtocolError,
    Manual,
    ReplenishPolicy,
    RxChannelError,
    WindowSpec,
)
from rxchannel.runtime import Payload, Peer, RemoteSink, RemoteStream, Request

from ._gate import DemandGate
from ._threads import LoopThread
from .local import LocalPull
from .observable import Demand, DemandObservable, PullStream

__all__ = ["RxChannel", "RxRemoteSink", "channel", "inbound", "outbound", "remote_sink"]


class _SinkDemand(Observable[int]):
    """A remote sink's ``demand``: when it ends (the stream is over), so does the pipeline it
    drives (a plain demand Observable that completes only means "no more requests")."""

    ends_pipeline = True


class RxRemoteSink(abc.ObserverBase[Any]):
    """An Observer whose items go to a peer, within the peer's credit.

    Attributes:
        demand: an Observable of the counts the remote grants; it completes when the
            stream is over.
        done: resolves to the remote's replies (a receipt) once the stream is over, or
            fails with the stream's error.
        sink: the runtime's :class:`~rxchannel.runtime.RemoteSink` underneath.
    """

    def __init__(self, sink: RemoteSink, *, collect_replies: bool = True):
        """``collect_replies``: ``done`` gathers the remote's replies (a receipt); False when
        the application reads them itself (a channel's ``inbound``)."""
        self.sink = sink
        self._owner = LoopThread()  # the Observer may be called from any thread: calls go to this loop
        self.demand: Observable[int] = _SinkDemand(self._subscribe_demand)
        self.done: asyncio.Future[list[Payload]] = asyncio.get_running_loop().create_future()
        replies = sink.replies if collect_replies else None
        self._replies = asyncio.ensure_future(replies.collect()) if replies is not None else None
        self._finisher = asyncio.ensure_future(self._finish())

    def _subscribe_demand(
        self, observer: abc.ObserverBase[int], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        gate = DemandGate(observer)
        self.sink.on_credit(gate.grant)
        self.sink.done.add_done_callback(gate.end)
        return Disposable(gate.close)

    async def _finish(self) -> None:
        try:
            await asyncio.shield(self.sink.done)
            replies = await self._replies if self._replies is not None else []
        except BaseException as exc:
            if self._replies is not None:
                self._replies.cancel()
            if not self.done.done():
                self.done.set_exception(exc if isinstance(exc, Exception) else RxChannelError(repr(exc)))
                self.done.exception()  # retrieved: awaiting it is optional
            return
        if not self.done.done():
            self.done.set_result(replies)

    def on_next(self, value: Any) -> None:
        """Send one item now (from another thread: as soon as the loop runs it, in order).

        Once the stream is over because the remote cancelled it (or it failed), an item
        still on its way is dropped: its outcome is in ``done``.

        Raises:
            LocalProtocolError: no credit for it (the stream is ended with ERROR too; from
                another thread the error cannot reach the caller, so it ends the stream and
                ``done``).
            ClosedResourceError: an item after ``on_completed``.
        """
        if not self._owner.here:
            self._owner.call(self._send_or_fail, value)
            return
        done = self.sink.done
        if done.done() and done.exception() is not None:
            # the stream is over (the remote cancelled, or it failed): an item still on its
            # way is dropped, not an error (Reactive Streams §2.8); the outcome is in ``done``
            return
        try:
            self.sink.try_send(value)
        except LocalProtocolError as exc:
            self.sink.fail(exc)
            raise

    def _send_or_fail(self, value: Any) -> None:
        try:
            self.sink.try_send(value)
        except LocalProtocolError as exc:
            self.sink.fail(exc)
        except RxChannelError:
            pass  # the stream is already over (cancelled, closed): its outcome is in ``done``

    def on_error(self, error: Exception) -> None:
        self._owner.call(self.sink.fail, error)

    def on_completed(self) -> None:
        self._owner.call(self.sink.complete)

    def dispose(self) -> None:
        """Stop: the stream ends with ERROR (the remote must not take a partial stream for a whole one)."""
        self._owner.call(self.sink.fail, ClosedResourceError("the sender disposed its sink before completing"))


class RxChannel(RxRemoteSink):
    """A request-channel as one object: an Observer of what we send (with ``demand``) and
    ``inbound``, a demand Observable of what the responder sends (subscribe it once; its
    demand is the ``window`` the channel was opened with; with ``window=rxc.Manual(n)``,
    ``request_n`` sets it, the ``n`` the request carried counting against its first
    requests)."""

    def __init__(self, sink: RemoteSink, policy: ReplenishPolicy | None):
        assert sink.replies is not None
        self._inbound_stream: RemoteStream | None = sink.replies
        super().__init__(sink, collect_replies=False)  # the application reads them, through inbound
        self.inbound: DemandObservable[Payload] = _single(self._take_inbound, "the channel's inbound", policy)

    def _take_inbound(self) -> RemoteStream:
        stream, self._inbound_stream = self._inbound_stream, None
        if stream is None:
            raise LocalProtocolError("a channel's inbound can be subscribed once")
        return stream


def _single(take: Any, description: str, policy: ReplenishPolicy | None) -> DemandObservable[Payload]:
    """A demand Observable over a stream that is already open (its demand was fixed when it opened)."""
    marker = object()

    def opener(chosen: Any, auto_ack: bool) -> PullStream[Payload]:
        # None: request_n drives it (right when it was opened with window=Manual(...))
        if chosen is not marker and chosen is not None:
            raise TypeError(
                f"{description} already has its demand (set when it opened: window=...); subscribe it "
                "without windowed/limit_rate/adaptive (request_n works when it opened with window=Manual(...))"
            )
        if not auto_ack:
            raise TypeError(f"{description} acknowledges items as they are taken; it takes no acks=")
        stream: RemoteStream = take()
        if chosen is None and stream.in_flight:
            return _prepaid(stream, stream.in_flight)
        return stream

    policy_marker: Any = marker  # stands in for a policy: an operator that sets one replaces it
    return DemandObservable(opener, Demand(policy=lambda: policy_marker), description=description)


def _prepaid(stream: RemoteStream, prepaid: int) -> LocalPull[Payload]:
    """A stream that opened with credit of its own (a channel's request carries n >= 1),
    driven by ``request_n``: its items go on only as requested (Reactive Streams §1.1), the
    credit it opened with counting against the first requests (only the rest is asked of
    the remote). It holds at most one item it has no request for; the end and errors need none."""
    left = prepaid

    def forward(n: int) -> None:
        nonlocal left
        covered = min(left, n)
        left -= covered
        if n > covered:
            stream.request(n - covered)

    return LocalPull(stream, Manual(0), True, on_request=forward)


def remote_sink(
    peer: Peer,
    route: str,
    data: bytes = b"",
    *,
    info: dict[str, Any] | None = None,
    window: WindowSpec = None,
) -> RxRemoteSink:
    """An Observer whose items go to ``route`` on ``peer`` as a request-channel (the hub's
    ``push/<path>`` is one); ``done`` resolves to the responder's replies (a receipt).
    ``window`` bounds the replies in flight. The request goes out at once."""
    return RxRemoteSink(peer.remote_sink(route, data, info=info, window=window))


def channel(
    peer: Peer,
    route: str,
    data: bytes = b"",
    *,
    info: dict[str, Any] | None = None,
    window: WindowSpec = None,
) -> RxChannel:
    """A request-channel as an Observer (outbound, following ``demand``) with ``inbound``
    (the responder's items, at most ``window`` in flight). The request goes out at once."""
    from rxchannel.core import policy_for

    return RxChannel(peer.remote_sink(route, data, info=info, window=window), policy_for(window))


def inbound(request: Request) -> DemandObservable[Payload]:
    """A channel handler's view of the requester's items: a demand Observable (subscribe it
    once; its demand is the route's window: ``Router.channel(route, window=...)``)."""
    if request.inbound is None:
        raise LocalProtocolError(f"a {request.interaction.name} request has no inbound items")
    taken: list[RemoteStream] = [request.inbound]

    def take() -> RemoteStream:
        if not taken:
            raise LocalProtocolError("a request's inbound can be subscribed once")
        return taken.pop()

    return _single(take, "the request's inbound", None)


def outbound(request: Request) -> RxRemoteSink:
    """A stream or channel handler's outbound half as an Observer that follows the
    requester's demand (``.demand``); the handler returns None and subscribes to it."""
    return RxRemoteSink(request.outbound)
