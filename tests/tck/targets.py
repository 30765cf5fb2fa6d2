"""What the rule tests of rxchannel's own publishers, subscribers and processors share:
sources that count whether they were let go, a hot ticker, a route serving the suite's
probe publisher, a recording Rx observer, and fixtures over several transports."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Generator
from typing import Any, TypeVar

import pytest
from reactivex.subject import Subject

import rxchannel as rx
from rxchannel import reactive as rxc
from rxchannel.testing import tck
from rxchannel.testing.tck.adapters import round_trip
from tests.support import eventually, open_peers

T = TypeVar("T")


class Tracker:
    """Counts the sources opened and closed (a factory's ``released``)."""

    def __init__(self) -> None:
        self.opened = 0
        self.closed = 0

    def released(self) -> bool:
        return self.opened == self.closed


class Numbers:
    """A re-iterable of ``n`` items (``b"0"``, ``b"1"`` ...), or of a failure after them;
    every iteration is counted open until its generator is closed."""

    def __init__(self, n: int, tracker: Tracker, fail: bool = False):
        self.n, self.tracker, self.fail = n, tracker, fail

    def __iter__(self) -> Generator[bytes, None, None]:
        self.tracker.opened += 1
        try:
            for i in range(self.n):
                yield str(i).encode()
            if self.fail:
                raise rx.ApplicationError("the source failed")
        finally:
            self.tracker.closed += 1

    async def __aiter__(self) -> AsyncIterator[bytes]:  # type: ignore[override]
        items = self.__iter__()  # counted as a plain iteration is, and closed with this one
        try:
            for item in items:
                yield item
        finally:
            items.close()


class Ticker:
    """A hot source: a Subject emitting 0, 1, 2 ... once per event-loop turn until stopped."""

    def __init__(self) -> None:
        self.subject: Subject[int] = Subject()
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        for i in itertools.count():
            self.subject.on_next(i)
            await asyncio.sleep(0)

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def counting_router(tracker: Tracker) -> rx.Router:
    """Routes ``count`` (``int(data)`` items), ``fail`` (a handler that fails) and
    ``channel-count`` (a channel answering ``int(data)`` items, whatever it is sent)."""
    router = rx.Router()

    @router.stream("count")
    def count(request: rx.Request) -> Any:
        return Numbers(int(request.data), tracker).__aiter__()

    @router.stream("fail")
    def fail(request: rx.Request) -> Any:
        raise rx.ApplicationError("this route always fails")

    @router.channel("channel-count")
    def channel_count(request: rx.Request) -> Any:
        n, _, failing = request.info.get("n", 0), None, request.info.get("fail", False)
        return Numbers(n, tracker, fail=failing).__aiter__()

    @router.stream("outbound-count")
    def outbound_count(request: rx.Request) -> None:
        from rxchannel.operators import request_n

        out = rxc.outbound(request)
        n = int(request.data)
        source = rxc.from_async_iterable(lambda: Numbers(n, tracker).__aiter__())
        source.pipe(request_n(out.demand)).subscribe(out)

    return router


class Probes:
    """Probe publishers waiting for a remote requester, by key (a route serves them)."""

    def __init__(self) -> None:
        self.waiting: dict[str, tck.Publisher] = {}
        self.keys = itertools.count()

    def add(self, probe: tck.Publisher) -> str:
        key = str(next(self.keys))
        self.waiting[key] = probe
        return key

    def take(self, key: str) -> tck.Publisher:
        return self.waiting.pop(key)

    def serve(self, router: rx.Router, route: str = "probe") -> None:
        """``route`` sends the probe its request's data names, following the requester's demand."""
        tck.adapters.serve(router, route, lambda request: self.take(request.data.decode()))


class Recorder:
    """An Rx observer that records what reaches it (the end of a subscriber's pipeline)."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.completed = False
        self.error: BaseException | None = None

    def on_next(self, item: Any) -> None:
        self.items.append(item)

    def on_error(self, error: BaseException) -> None:
        self.error = error

    def on_completed(self) -> None:
        self.completed = True

    def handle(self, **options: Any) -> tck.SubscriberHandle:
        return tck.SubscriberHandle(
            received=lambda: self.items, completed=lambda: self.completed, error=lambda: self.error, **options
        )


class Remote:
    """A client, and a server that sends each probe publisher to the request naming it
    (its route ``probe``, the probe's key as the request's data)."""

    def __init__(self, client: rx.Peer, probes: Probes):
        self.client, self.probes = client, probes

    def factory(self, create: Callable[[tck.Publisher, str], Any]) -> tck.SubscriberFactory:
        async def make(probe: tck.Publisher) -> tck.SubscriberHandle:
            key = self.probes.add(probe)
            handle: tck.SubscriberHandle = create(probe, key)
            await eventually(lambda: getattr(probe, "subscriber", None) is not None, what="the probe served")
            handle.subscriber = probe.subscriber  # type: ignore[attr-defined]
            return handle

        return tck.SubscriberFactory(create=make, settle=round_trip(self.client))


async def remote_probes(kind: str, router: rx.Router | None = None) -> AsyncIterator[Remote]:
    """A :class:`Remote` over ``kind`` (``router``'s routes served too), closed at the end."""
    probes = Probes()
    router = router or rx.Router()
    probes.serve(router)
    client, server = await open_peers(kind, router)
    try:
        yield Remote(client, probes)
    finally:
        await client.close()
        await server.close()


def fixture_over(open_kind: Callable[[str], AsyncIterator[T]], *kinds: str) -> Any:
    """A fixture of what ``open_kind(kind)`` yields, over each of ``kinds`` (``"memory"``, ``"tcp"`` ...)."""

    @pytest.fixture(params=kinds if len(kinds) > 1 else None)  # one kind: the test ids stay plain
    async def fixture(request: pytest.FixtureRequest) -> AsyncIterator[T]:
        async for opened in open_kind(getattr(request, "param", kinds[0])):
            yield opened

    return fixture
