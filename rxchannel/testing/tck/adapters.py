"""rxchannel's publishers and subscribers in the shape the rules speak.

Each adapter translates verbs one to one and adds no flow control of its own, so what
the rules see is rxchannel's behaviour:

* :func:`from_observable` — a demand Observable (``reactive.from_iterable``, ``file_source``,
  ``request_stream``, ``share_demand`` ...): ``request(n)`` is ``request_n``'s demand,
  ``cancel()`` disposes the subscription. :func:`from_pipeline` is the same for a pipeline
  you build around the demand (``source.pipe(request_n(requests), observe_on(...))``).
* :func:`from_remote_stream` — the runtime's :class:`~rxchannel.RemoteStream`, opened with
  manual demand: ``request(n)`` is ``stream.request(n)``, ``cancel()`` is ``aclose()``.
* :func:`from_async_iterable` — an async iterable (``aio.request_stream``, an aiostream pipe): an
  async iterator has no demand of its own, so here ``request(n)`` allows ``n`` pulls; the
  rules then check what the iterable does (its end, its errors, closing on cancel).
* :func:`sink_subscriber` — a remote sink (``reactive.remote_sink``, ``reactive.channel``,
  ``reactive.outbound``): the subscription is asked for what the remote grants (``sink.demand``)
  and cancelled when the remote wants no more, as ``request_n(sink.demand)`` does. The
  runtime's own ``RemoteSink`` (``aio.remote_sink``) is imperative: its ``try_send`` raises
  once the remote has ended the stream, so here an item that arrives then is dropped.
* :func:`serve` — a route that sends a publisher's items through the responder's outbound
  (itself a :func:`sink_subscriber`), so a remote requester can be checked as a subscriber.
* :func:`round_trip` — a ``settle`` for a factory whose publisher is across a wire.

A request past what the runtime counts (RSocket's 2^31-1) is taken as unbounded there
(§3.17 allows it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Any

from reactivex import Observable, abc
from reactivex.subject import Subject

from rxchannel.core import RxChannelError
from rxchannel.operators import request_n
from rxchannel.reactive import RxRemoteSink, outbound
from rxchannel.runtime import Peer, RemoteSink, RemoteStream, Request, Router

from ._api import MAX_DEMAND, Publisher, Subscriber, loop_turns

__all__ = [
    "from_async_iterable",
    "from_observable",
    "from_pipeline",
    "from_remote_stream",
    "round_trip",
    "serve",
    "sink_subscriber",
]

log = logging.getLogger("rxchannel.testing")


class _OnLoop:
    """Calls from any thread, carried onto the loop the adapter was made on."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.thread = threading.get_ident()

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        if threading.get_ident() == self.thread:
            fn(*args)
        elif not self.loop.is_closed():
            self.loop.call_soon_threadsafe(fn, *args)


# ------------------------------------------------------------------ Observables


class _PipelinePublisher:
    def __init__(self, build: Callable[[Observable[int]], Observable[Any]], description: str):
        self._build = build
        self.description = description

    def subscribe(self, subscriber: Subscriber) -> None:
        subscription = _PipelineSubscription(subscriber)
        subscriber.on_subscribe(subscription)  # first: what it requests here waits for the pipeline
        subscription.attach(self._build)

    def __repr__(self) -> str:
        return f"<publisher {self.description}>"


class _PipelineSubscription:
    def __init__(self, subscriber: Subscriber):
        self._subscriber = subscriber
        self._requests: Subject[int] = Subject()
        self._held: list[int] | None = []
        self._disposable: abc.DisposableBase | None = None
        self._cancelled = False

    def request(self, n: int) -> None:
        if self._held is not None:
            self._held.append(n)
        else:
            self._requests.on_next(n)

    def cancel(self) -> None:
        self._cancelled = True
        if self._disposable is not None:
            self._disposable.dispose()

    def attach(self, build: Callable[[Observable[int]], Observable[Any]]) -> None:
        s = self._subscriber
        self._disposable = build(self._requests).subscribe(
            on_next=s.on_next, on_error=s.on_error, on_completed=s.on_complete
        )
        held, self._held = self._held or [], None
        if self._cancelled:
            self._disposable.dispose()
            return
        for n in held:
            self._requests.on_next(n)


def from_pipeline(build: Callable[[Observable[int]], Observable[Any]], description: str = "pipeline") -> Publisher:
    """A publisher whose every subscription subscribes ``build(requests)``: ``requests``
    emits what the subscriber requests (give it to ``request_n``); cancel disposes it."""
    return _PipelinePublisher(build, description)


def from_observable(source: Observable[Any]) -> Publisher:
    """A demand Observable as a publisher: ``source.pipe(request_n(requests))``."""
    description = getattr(source, "description", type(source).__name__)
    return from_pipeline(lambda requests: source.pipe(request_n(requests)), description)


# ------------------------------------------------------------------ pull streams


class _Pump:
    """A subscription that runs one task delivering items; calls from any thread."""

    def __init__(self, subscriber: Subscriber):
        self._subscriber = subscriber
        self._on_loop = _OnLoop()
        self._task: asyncio.Task[None] | None = None
        self._cancelled = False
        self._done = False

    def start(self) -> None:
        if not self._cancelled:
            self._task = self._on_loop.loop.create_task(self._run())

    async def _run(self) -> None:
        raise NotImplementedError

    def request(self, n: int) -> None:
        self._on_loop.call(self._request, n)

    def _request(self, n: int) -> None:
        raise NotImplementedError

    def cancel(self) -> None:
        self._on_loop.call(self._cancel)

    def _cancel(self) -> None:
        self._cancelled = True
        if self._task is not None:
            self._task.cancel()

    def _next(self, item: Any) -> bool:
        """Deliver an item; False once the subscription is over (cancelled, or the
        subscriber raised: §2.13, it counts as cancelled and the error is logged)."""
        if self._cancelled:
            return False
        try:
            self._subscriber.on_next(item)
        except Exception:
            log.exception("a subscriber's on_next raised: its subscription is cancelled (Reactive Streams §2.13)")
            self._cancelled = True
            return False
        return True

    def _end(self, error: BaseException | None) -> None:
        if self._cancelled or self._done:
            return
        self._done = True
        if error is None:
            self._subscriber.on_complete()
        else:
            self._subscriber.on_error(error)

    async def _pull(self, pull: Callable[[], Awaitable[Any]], errors: type[Exception]) -> Any:
        """The source's next item, or ``_OVER`` once it ended (the end is passed on)."""
        try:
            return await pull()
        except StopAsyncIteration:
            self._end(None)
        except errors as exc:
            self._end(exc)
        return _OVER


_OVER = object()  # what _Pump._pull returns once the source ended


class _StreamSubscription(_Pump):
    def __init__(self, stream: RemoteStream, subscriber: Subscriber):
        super().__init__(subscriber)
        self._stream = stream

    def _request(self, n: int) -> None:
        if self._cancelled or self._done:
            return  # the stream is over: nothing to ask of it (§3.6)
        try:
            self._stream.request(min(n, MAX_DEMAND))
        except RxChannelError as exc:  # request(n <= 0): the runtime raises, a subscription signals (§3.9)
            self._end(exc)
            self._cancel()

    async def _run(self) -> None:
        stream = self._stream
        try:
            while True:
                item = await self._pull(stream.next, RxChannelError)
                if item is _OVER or not self._next(item):
                    return
        finally:
            await stream.aclose()


class _StreamPublisher:
    def __init__(self, open_stream: Callable[[], RemoteStream]):
        self._open = open_stream

    def subscribe(self, subscriber: Subscriber) -> None:
        subscription = _StreamSubscription(self._open(), subscriber)
        subscriber.on_subscribe(subscription)
        subscription.start()


def from_remote_stream(open_stream: Callable[[], RemoteStream]) -> Publisher:
    """A publisher whose every subscription is ``open_stream()``, a remote stream opened with
    manual demand (``window=rxc.Manual(0)``): request is the stream's request, cancel its
    ``aclose()``. The runtime raises for ``request(n <= 0)``; here that is ``on_error``."""
    return _StreamPublisher(open_stream)


class _IterableSubscription(_Pump):
    def __init__(self, factory: Callable[[], AsyncIterable[Any]], subscriber: Subscriber):
        super().__init__(subscriber)
        self._factory = factory
        self._demand = 0
        self._wake = asyncio.Event()

    def _request(self, n: int) -> None:
        if self._cancelled or self._done:
            return
        if n <= 0:
            self._end(ValueError(f"request({n}): Reactive Streams §3.9 allows only a positive number"))
            self._cancel()
            return
        self._demand = min(MAX_DEMAND, self._demand + n)
        self._wake.set()

    async def _run(self) -> None:
        try:
            context: Any = self._factory().__aiter__()
        except Exception as exc:  # refused (a broadcast joined too late): on_error, after on_subscribe (§1.9)
            self._end(exc)
            return
        entered = hasattr(context, "__aenter__")  # aiostream's streamers are iterated inside their context
        iterator = context
        try:
            if entered:
                iterator = await context.__aenter__()
            while True:
                while self._demand == 0:
                    self._wake.clear()
                    await self._wake.wait()
                item = await self._pull(iterator.__anext__, Exception)
                if item is _OVER:
                    return
                if self._demand < MAX_DEMAND:
                    self._demand -= 1
                if not self._next(item):
                    return
        finally:
            if entered:
                await context.__aexit__(None, None, None)
            else:
                aclose = getattr(iterator, "aclose", None)
                if aclose is not None:
                    await aclose()


class _IterablePublisher:
    def __init__(self, factory: Callable[[], AsyncIterable[Any]]):
        self._factory = factory

    def subscribe(self, subscriber: Subscriber) -> None:
        subscription = _IterableSubscription(self._factory, subscriber)
        subscriber.on_subscribe(subscription)
        subscription.start()


def from_async_iterable(factory: Callable[[], AsyncIterable[Any]]) -> Publisher:
    """A publisher whose every subscription iterates ``factory()``, pulling one item per
    item requested; cancel closes the iterator (``aclose``)."""
    return _IterablePublisher(factory)


# ------------------------------------------------------------------ sinks


class _SinkSubscriber:
    """A remote sink as a subscriber: the subscription is asked for what the remote grants,
    and cancelled when the remote wants no more (not when we ended it ourselves)."""

    def __init__(self, sink: RxRemoteSink | RemoteSink):
        self._rx = sink if isinstance(sink, RxRemoteSink) else None
        self._sink = sink.sink if isinstance(sink, RxRemoteSink) else sink
        self._subscription: Any = None
        self._ended = False  # we passed on the end (or the remote's end reached us)

    def on_subscribe(self, subscription: Any) -> None:
        if self._subscription is not None:
            subscription.cancel()  # §2.5: one subscription at a time
            return
        self._subscription = subscription
        if self._rx is not None:
            self._rx.demand.subscribe(on_next=self._grant, on_completed=self._remote_ended, on_error=self._remote_ended)
        else:
            self._sink.on_credit(self._grant)
            self._sink.done.add_done_callback(lambda _f: self._remote_ended())

    def _grant(self, n: int) -> None:
        if not self._ended:
            self._subscription.request(n)

    def _remote_ended(self, _error: Any = None) -> None:
        if not self._ended:
            self._ended = True
            self._subscription.cancel()

    def on_next(self, item: Any) -> None:
        if self._rx is not None:
            self._rx.on_next(item)
        elif not self._sink.done.done() or self._sink.done.exception() is None:
            self._sink.try_send(item)
        # else: the runtime's sink refuses items once the remote ended it (try_send raises,
        # its imperative contract); a subscriber drops one still on its way (§2.8)

    def on_error(self, error: BaseException) -> None:
        # on_error(None) breaks §2.13; it must still fail the stream, never complete it
        self._end(error if error is not None else RxChannelError("on_error(None)"))

    def on_complete(self) -> None:
        self._end(None)

    def _end(self, error: BaseException | None) -> None:
        """Pass the end on (``None``: on_complete, only); the sink is ours to end from now on."""
        self._ended = True
        if self._rx is not None and error is None:
            self._rx.on_completed()
        elif self._rx is not None:
            self._rx.on_error(error if isinstance(error, Exception) else RxChannelError(repr(error)))
        elif error is None:
            self._sink.complete()
        else:
            self._sink.fail(error)


def sink_subscriber(sink: RxRemoteSink | RemoteSink) -> Subscriber:
    """A remote sink (``reactive.remote_sink``, ``reactive.channel``, ``reactive.outbound``, or the
    runtime's :class:`~rxchannel.RemoteSink`) as a subscriber."""
    return _SinkSubscriber(sink)


def serve(router: Router, route: str, make: Callable[[Request], Publisher]) -> None:
    """Register a stream handler on ``router`` that sends ``make(request)``'s items to the
    requester through its outbound, following the requester's demand."""

    @router.stream(route)
    def handler(request: Request) -> None:
        make(request).subscribe(sink_subscriber(outbound(request)))


def round_trip(peer: Peer, turns: int = 20) -> Callable[[], Awaitable[None]]:
    """A ``settle`` for a publisher across ``peer``'s connection: loop turns, then a round
    trip on the connection, twice (a request for a route nobody serves: its refusal comes
    back after everything the far side sent before it)."""

    async def settle() -> None:
        for _ in range(2):
            await loop_turns(turns)
            with contextlib.suppress(RxChannelError):
                await peer.request_response("rxchannel.testing.tck/settle")
        await loop_turns(turns)

    return settle
