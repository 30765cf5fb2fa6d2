"""rxchannel's subscribers held to the Reactive Streams subscriber rules (``rxchannel.testing.tck``).

The suite's probe publisher stands where the items come from, and records every request
and cancel that reaches it:

* on the far side of a remote stream, sending through the responder's outbound (an Rx
  remote sink, ``tck.adapters.serve``): the subscriber is the requester's demand operator
  (``windowed``, ``stop_and_wait``, ``limit_rate``, ``adaptive``, ``request_n``) with what
  it feeds, an ``RxFileSink`` acknowledging writes, or an ``async for`` over ``aio.request_stream``;
  with ``request_n`` that chain is the responder's outbound following the requester's demand;
* on the requester's side of a channel: the subscriber is a remote sink (``rxc.remote_sink``,
  ``rxc.channel``, ``aio.remote_sink``) sending what the responder asks for.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from reactivex import Observable
from reactivex.subject import Subject

import rxchannel as rx
from rxchannel import aio
from rxchannel import reactive as rxc
from rxchannel.operators import adaptive, limit_rate, request_n, stop_and_wait, windowed
from rxchannel.testing import tck
from rxchannel.testing.tck.adapters import round_trip, sink_subscriber
from tests.support import eventually, open_peers
from tests.tck.targets import Recorder, Remote, fixture_over, remote_probes

# ------------------------------------------------------------------ the probe behind a remote stream


remote_everywhere = fixture_over(remote_probes, "memory", "tcp", "datachannel")
remote = fixture_over(remote_probes, "memory", "tcp")
remote_in_memory = fixture_over(remote_probes, "memory")


def demand_operator(remote: Remote, operator: Callable[[], Callable[[Observable[Any]], Observable[Any]]]) -> Any:
    """A requester whose demand operator is ``operator()``, recording what comes out of it."""

    def create(probe: tck.Publisher, key: str) -> tck.SubscriberHandle:
        recorder = Recorder()
        subscription = rxc.request_stream(remote.client, "probe", key.encode()).pipe(operator()).subscribe(recorder)
        return recorder.handle(cancel=subscription.dispose)

    return remote.factory(create)


class TestWindowed(tck.SubscriberRules):
    @pytest.fixture
    def tck_factory(self, remote_everywhere: Remote) -> tck.SubscriberFactory:
        return demand_operator(remote_everywhere, lambda: windowed(4))


class TestStopAndWait(tck.SubscriberRules):
    @pytest.fixture
    def tck_factory(self, remote_in_memory: Remote) -> tck.SubscriberFactory:
        return demand_operator(remote_in_memory, stop_and_wait)


class TestLimitRate(tck.SubscriberRules):
    @pytest.fixture
    def tck_factory(self, remote_in_memory: Remote) -> tck.SubscriberFactory:
        return demand_operator(remote_in_memory, lambda: limit_rate(8, 2))


class TestAdaptive(tck.SubscriberRules):
    @pytest.fixture
    def tck_factory(self, remote_in_memory: Remote) -> tck.SubscriberFactory:
        return demand_operator(remote_in_memory, adaptive)


class TestOutboundFollowingRequestN(tck.SubscriberRules):
    """``request_n`` at the requester, the responder's Rx outbound (a remote sink) at the far
    end: demand from any thread reaches the probe on the loop. RSocket opens a stream with
    its first request (n >= 1), so the requester asks for one item to start."""

    @pytest.fixture
    def tck_factory(self, remote: Remote) -> tck.SubscriberFactory:
        def create(probe: tck.Publisher, key: str) -> tck.SubscriberHandle:
            recorder, requests = Recorder(), Subject[int]()
            source = rxc.request_stream(remote.client, "probe", key.encode())
            subscription = source.pipe(request_n(requests)).subscribe(recorder)
            requests.on_next(1)
            return recorder.handle(request=requests.on_next, cancel=subscription.dispose, request_from_threads=True)

        return remote.factory(create)


class TestRxFileSink(tck.SubscriberRules):
    """``windowed(4, acks=sink.acks)`` into an ``RxFileSink``: demand follows what was written."""

    @pytest.fixture
    def tck_factory(self, remote_in_memory: Remote, tmp_path: Path) -> tck.SubscriberFactory:
        def create(probe: tck.Publisher, key: str) -> tck.SubscriberHandle:
            sink = rxc.RxFileSink(tmp_path / f"{key}.bin")
            # a disposed pipeline never tells its sink: the sink's outcome is read, if ever, at the loop's end
            sink.done.add_done_callback(lambda done: done.cancelled() or done.exception())
            written: list[int] = []
            sink.acks.subscribe(written.append)
            source = rxc.request_stream(remote_in_memory.client, "probe", key.encode())
            subscription = source.pipe(windowed(4, acks=sink.acks)).subscribe(sink)
            return tck.SubscriberHandle(
                received=lambda: written,
                completed=lambda: sink.done.done() and sink.done.exception() is None,
                error=lambda: sink.done.exception() if sink.done.done() else None,
                cancel=subscription.dispose,
            )

        return remote_in_memory.factory(create)


class TestAsyncForOverAioStream(tck.SubscriberRules):
    """An ``async for`` loop over ``aio.request_stream(window=4)``; leaving it is the cancel."""

    @pytest.fixture
    def tck_factory(self, remote_in_memory: Remote) -> tck.SubscriberFactory:
        def create(probe: tck.Publisher, key: str) -> tck.SubscriberHandle:
            recorder = Recorder()

            async def loop() -> None:
                try:
                    async for item in aio.request_stream(remote_in_memory.client, "probe", key.encode(), window=4):
                        recorder.on_next(item)
                except rx.RxChannelError as exc:
                    recorder.on_error(exc)
                else:
                    recorder.on_completed()

            task = asyncio.get_running_loop().create_task(loop())
            return recorder.handle(cancel=task.cancel)

        return remote_in_memory.factory(create)


# ------------------------------------------------------------------ a remote sink in front of the probe


class Inbox:
    """A client and a server whose ``inbox`` channel takes what a sink sends with manual
    demand (``window=rx.Manual(0)``), recording it; by key, the test asks it for more or
    makes it stop."""

    def __init__(self, client: rx.Peer):
        self.client = client
        self.recorders: dict[str, Recorder] = {}
        self.requests: dict[str, Subject[int]] = {}
        self.stops: dict[str, Callable[[], None]] = {}

    def router(self) -> rx.Router:
        router = rx.Router()

        @router.channel("inbox", window=rx.Manual(0))
        async def inbox(request: rx.Request) -> AsyncIterator[bytes]:
            key = request.info["key"]
            recorder, requests = self.recorders[key], self.requests[key]
            over = asyncio.get_running_loop().create_future()

            def end(*_: Any) -> None:
                if not over.done():
                    over.set_result(None)

            subscription = (
                rxc.inbound(request)
                .pipe(request_n(requests))
                .subscribe(
                    on_next=recorder.on_next,
                    on_error=lambda e: (recorder.on_error(e), end()),
                    on_completed=lambda: (recorder.on_completed(), end()),
                )
            )
            self.stops[key] = lambda: (subscription.dispose(), end())
            await over  # our outbound stays open until the inbound is over: nothing to send back
            return
            yield  # an async generator

        return router

    def factory(self, sink_for: Callable[[str], Any]) -> tck.SubscriberFactory:
        keys = iter(range(1 << 30))

        async def create(probe: tck.Publisher) -> tck.SubscriberHandle:
            key = str(next(keys))
            recorder, requests = Recorder(), Subject[int]()
            self.recorders[key], self.requests[key] = recorder, requests
            subscriber = sink_subscriber(sink_for(key))
            probe.subscribe(subscriber)
            await eventually(lambda: key in self.stops, what="the inbox handler running")
            return recorder.handle(request=requests.on_next, cancel=lambda: self.stops[key](), subscriber=subscriber)

        return tck.SubscriberFactory(create=create, settle=round_trip(self.client))


async def _inbox(kind: str) -> AsyncIterator[Inbox]:
    inbox = Inbox(None)  # type: ignore[arg-type]
    client, server = await open_peers(kind, inbox.router())
    inbox.client = client
    try:
        yield inbox
    finally:
        await client.close()
        await server.close()


inbox = fixture_over(_inbox, "memory", "tcp")
inbox_in_memory = fixture_over(_inbox, "memory")


class TestRemoteSink(tck.SubscriberRules):
    @pytest.fixture
    def tck_factory(self, inbox: Inbox) -> tck.SubscriberFactory:
        return inbox.factory(lambda key: rxc.remote_sink(inbox.client, "inbox", info={"key": key}))


class TestChannel(tck.SubscriberRules):
    @pytest.fixture
    def tck_factory(self, inbox_in_memory: Inbox) -> tck.SubscriberFactory:
        return inbox_in_memory.factory(lambda key: rxc.channel(inbox_in_memory.client, "inbox", info={"key": key}))


class TestAioRemoteSink(tck.SubscriberRules):
    """The runtime's ``RemoteSink`` (``aio.remote_sink``), driven through its credit callbacks."""

    @pytest.fixture
    def tck_factory(self, inbox_in_memory: Inbox) -> tck.SubscriberFactory:
        return inbox_in_memory.factory(lambda key: aio.remote_sink(inbox_in_memory.client, "inbox", info={"key": key}))
