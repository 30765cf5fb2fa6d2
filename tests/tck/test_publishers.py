"""rxchannel's publishers held to the Reactive Streams publisher rules (``rxchannel.testing.tck``).

In process: each local source, the hot buffers, the operators that shape demand after
them, the fan-out operators, the async-iteration facade. Across the wire (real peers over
memory, TCP, WebSocket and WebRTC DataChannels): a remote stream as a demand Observable,
as the runtime's ``RemoteStream``, as an async iterable and an aiostream pipe; a channel's
replies; a responder's Rx outbound seen from the requester.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import reactivex
from aiostream import pipe
from reactivex import operators as ops
from reactivex.scheduler import ThreadPoolScheduler

import rxchannel as rx
from rxchannel import aio
from rxchannel import aiostream as rxpipe
from rxchannel import reactive as rxc
from rxchannel.operators import (
    balance,
    observe_on,
    on_backpressure_buffer,
    on_backpressure_drop,
    on_backpressure_latest,
    request_n,
    share_demand,
)
from rxchannel.testing import tck
from rxchannel.testing.tck.adapters import (
    from_async_iterable,
    from_observable,
    from_pipeline,
    from_remote_stream,
    round_trip,
)
from tests.support import ConnectPeers, open_peers
from tests.tck.targets import Numbers, Ticker, Tracker, counting_router

POOL = ThreadPoolScheduler(2)


def _numbers(publisher_of: Callable[[Numbers], tck.Publisher], **options: Any) -> tck.PublisherFactory:
    """Publishers of ``publisher_of(Numbers(...))``: ``n`` items, or a failure; the tracker tells
    when every iteration was closed."""
    tracker = Tracker()
    return tck.PublisherFactory(
        create=lambda n: publisher_of(Numbers(n, tracker)),
        create_failed=lambda: publisher_of(Numbers(0, tracker, fail=True)),
        released=tracker.released,
        **options,
    )


# ------------------------------------------------------------------ in process


class TestFromIterable(tck.PublisherRules):
    @pytest.fixture
    def tck_factory(self) -> tck.PublisherFactory:
        return _numbers(lambda numbers: from_observable(rxc.from_iterable(numbers)))


class TestFromAsyncIterable(tck.PublisherRules):
    @pytest.fixture
    def tck_factory(self) -> tck.PublisherFactory:
        return _numbers(lambda numbers: from_observable(rxc.from_async_iterable(numbers.__aiter__)))


class TestFileSource(tck.PublisherRules):
    @pytest.fixture
    def tck_factory(self, tmp_path: Path) -> tck.PublisherFactory:
        def create(n: int) -> tck.Publisher:
            path = tmp_path / f"{n}.bin"
            path.write_bytes(b"x" * n)  # n chunks of one byte
            return from_observable(rxc.file_source(path, chunk_size=1))

        return tck.PublisherFactory(
            create=create,
            create_failed=lambda: from_observable(rxc.file_source(tmp_path / "missing", chunk_size=1)),
            min_elements=1,  # an empty file is one empty chunk: it carries the digest
            max_elements=1000,
        )


class TestOnBackpressureBuffer(tck.PublisherRules):
    """A hot source that emits every item at once into a buffer big enough for all of them."""

    @pytest.fixture(params=["error", "drop_oldest", "drop_latest"])
    def tck_factory(self, request: pytest.FixtureRequest) -> tck.PublisherFactory:
        overflow = request.param
        return tck.PublisherFactory(
            create=lambda n: from_observable(
                reactivex.from_iterable(range(n)).pipe(on_backpressure_buffer(max(n, 1), overflow))
            ),
            create_failed=lambda: from_observable(
                reactivex.throw(rx.ApplicationError("the hot source failed")).pipe(on_backpressure_buffer(4, overflow))
            ),
            max_elements=10_000,
        )


class TestOnBackpressureDropAndLatest(tck.PublisherRules):
    """A hot source that never stops (an item every loop turn): only what is requested may arrive."""

    @pytest.fixture(params=[on_backpressure_drop, on_backpressure_latest], ids=["drop", "latest"])
    async def tck_factory(self, request: pytest.FixtureRequest) -> AsyncIterator[tck.PublisherFactory]:
        operator = request.param
        tickers: list[Ticker] = []

        def create(n: int) -> tck.Publisher:
            tickers.append(ticker := Ticker())
            return from_observable(ticker.subject.pipe(operator()))

        yield tck.PublisherFactory(
            create=create,
            create_failed=lambda: from_observable(reactivex.throw(rx.ApplicationError("hot failure")).pipe(operator())),
            infinite=True,
        )
        for ticker in tickers:
            await ticker.stop()


class TestShareDemand(tck.PublisherRules):
    @pytest.fixture
    def tck_factory(self) -> tck.PublisherFactory:
        return _numbers(
            lambda numbers: from_observable(rxc.from_iterable(numbers).pipe(share_demand(4))), sharing="multicast"
        )


class TestBalance(tck.PublisherRules):
    @pytest.fixture
    def tck_factory(self) -> tck.PublisherFactory:
        return _numbers(lambda numbers: from_observable(rxc.from_iterable(numbers).pipe(balance())), sharing="balance")


class TestObserveOnAThreadPool(tck.PublisherRules):
    """Signals come from pool threads: the suite's subscriber checks they never overlap."""

    @pytest.fixture
    def tck_factory(self) -> tck.PublisherFactory:
        def pipeline(numbers: Numbers) -> tck.Publisher:
            source = rxc.from_iterable(numbers)
            return from_pipeline(lambda requests: source.pipe(request_n(requests), observe_on(POOL)))

        return _numbers(pipeline)


class TestMapAfterRequestN(tck.PublisherRules):
    """A plain reactivex operator between the demand and the subscriber (one item in, one out)."""

    @pytest.fixture
    def tck_factory(self) -> tck.PublisherFactory:
        def pipeline(n: int, fail: bool = False) -> tck.Publisher:
            source = rxc.from_iterable(Numbers(n, Tracker(), fail=fail))
            return from_pipeline(lambda requests: source.pipe(request_n(requests), ops.map(bytes.upper)))

        return tck.PublisherFactory(create=pipeline, create_failed=lambda: pipeline(0, fail=True))


class TestAioShareDemand(tck.PublisherRules):
    """``aio.share_demand``: a broadcast subscribed by async iteration."""

    @pytest.fixture
    def tck_factory(self) -> tck.PublisherFactory:
        return _numbers(
            lambda numbers: from_async_iterable(aio.share_demand(numbers, max_lag=4).subscribe), sharing="multicast"
        )


class TestAioFromObservable(tck.PublisherRules):
    """``rxc.to_async_iterable``: a demand Observable pulled by async iteration."""

    @pytest.fixture
    def tck_factory(self) -> tck.PublisherFactory:
        return _numbers(lambda numbers: from_async_iterable(lambda: rxc.to_async_iterable(rxc.from_iterable(numbers))))


# ------------------------------------------------------------------ across the wire


@pytest.fixture(params=["memory", "tcp"])
async def peers(request: pytest.FixtureRequest) -> AsyncIterator[tuple[rx.Peer, Tracker]]:
    """A client and a server serving ``counting_router`` over memory and TCP."""
    tracker = Tracker()
    client, server = await open_peers(request.param, counting_router(tracker))
    try:
        yield client, tracker
    finally:
        await client.close()
        await server.close()


def _remote(client: rx.Peer, tracker: Tracker, stream: Any, **options: Any) -> tck.PublisherFactory:
    return tck.PublisherFactory(
        create=lambda n: stream(client, "count", n),
        create_failed=lambda: stream(client, "fail", 0),
        released=tracker.released,
        settle=round_trip(client),
        **options,
    )


def _channel_count(
    client: rx.Peer, tracker: Tracker, channel: Callable[[rx.Peer, dict[str, Any]], tck.Publisher]
) -> tck.PublisherFactory:
    """Publishers over ``channel(client, info)`` opened on the ``channel-count`` route: ``n``
    items, or a failure (``info``)."""
    return tck.PublisherFactory(
        create=lambda n: channel(client, {"n": n, "fail": False}),
        create_failed=lambda: channel(client, {"n": 0, "fail": True}),
        released=tracker.released,
        settle=round_trip(client),
    )


class TestRequestStream(tck.PublisherRules):
    """``rxc.request_stream``: a demand Observable whose demand crosses the wire as REQUEST_N,
    over every transport."""

    @pytest.fixture
    async def tck_factory(self, connect_peers: ConnectPeers) -> tck.PublisherFactory:
        tracker = Tracker()
        client, _server = await connect_peers(counting_router(tracker))
        return _remote(
            client, tracker, lambda peer, route, n: from_observable(rxc.request_stream(peer, route, b"%d" % n))
        )


class TestRemoteStream(tck.PublisherRules):
    """The runtime's ``RemoteStream`` with manual demand (``window=rx.Manual(0)``)."""

    @pytest.fixture
    def tck_factory(self, peers: tuple[rx.Peer, Tracker]) -> tck.PublisherFactory:
        return _remote(
            *peers,
            lambda peer, route, n: from_remote_stream(
                lambda: peer.request_stream(route, b"%d" % n, window=rx.Manual(0))
            ),
        )


class TestRequestChannelReplies(tck.PublisherRules):
    """``rxc.request_channel``: the responder's items, with demand from ``request_n``."""

    @pytest.fixture
    def tck_factory(self, peers: tuple[rx.Peer, Tracker]) -> tck.PublisherFactory:
        return _channel_count(
            *peers,
            lambda client, info: from_observable(rxc.request_channel(client, "channel-count", [b"a", b"b"], info=info)),
        )


class TestChannelInbound(tck.PublisherRules):
    """``rxc.channel(...).inbound`` with demand from ``request_n``; RSocket opens a channel
    with a request for at least one item, so it opens with ``window=rx.Manual(1)``."""

    @pytest.fixture
    def tck_factory(self, peers: tuple[rx.Peer, Tracker]) -> tck.PublisherFactory:
        return _channel_count(
            *peers,
            lambda client, info: from_observable(
                rxc.channel(client, "channel-count", info=info, window=rx.Manual(1)).inbound
            ),
        )


class TestResponderRxOutbound(tck.PublisherRules):
    """A responder sending through ``rxc.outbound(request)`` (its Rx pipeline follows the
    requester's demand), seen from the requester."""

    @pytest.fixture
    def tck_factory(self, peers: tuple[rx.Peer, Tracker]) -> tck.PublisherFactory:
        client, tracker = peers
        factory = _remote(
            client, tracker, lambda peer, route, n: from_observable(rxc.request_stream(peer, route, b"%d" % n))
        )
        factory.create = lambda n: from_observable(rxc.request_stream(client, "outbound-count", b"%d" % n))
        return factory


class TestAioStream(tck.PublisherRules):
    """``aio.request_stream`` (a window of 4 across the wire), pulled by async iteration."""

    @pytest.fixture
    def tck_factory(self, peers: tuple[rx.Peer, Tracker]) -> tck.PublisherFactory:
        return _remote(
            *peers,
            lambda peer, route, n: from_async_iterable(lambda: aio.request_stream(peer, route, b"%d" % n, window=4)),
        )


class TestAiostreamPipe(tck.PublisherRules):
    """An aiostream pipeline: ``rxpipe.request_stream(...) | pipe.map(...)``."""

    @pytest.fixture
    def tck_factory(self, peers: tuple[rx.Peer, Tracker]) -> tck.PublisherFactory:
        def fetch(peer: rx.Peer, route: str, n: int) -> tck.Publisher:
            return from_async_iterable(
                lambda: rxpipe.request_stream(peer, route, b"%d" % n, window=4) | pipe.map(lambda item: item.data)
            )

        return _remote(*peers, fetch)
