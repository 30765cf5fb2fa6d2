"""rxchannel's processing stages held to the Reactive Streams processor rules (``rxchannel.testing.tck``).

The suite's probe publisher is upstream, behind a remote stream (served through the
responder's outbound); the stage's output is downstream, where the suite's recording
subscriber requests and cancels: ``share_demand`` and ``balance`` (with one subscriber),
``observe_on`` a thread pool, and a channel relaying through a responder that keeps
demand end to end (``Router.channel(window=Manual(0))`` + ``request_n(out.demand)``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from reactivex import Observable
from reactivex import operators as ops
from reactivex.scheduler import ThreadPoolScheduler

import rxchannel as rx
from rxchannel import reactive as rxc
from rxchannel.operators import balance, observe_on, request_n, share_demand
from rxchannel.testing import tck
from rxchannel.testing.tck.adapters import from_observable, from_pipeline, round_trip, sink_subscriber
from tests.tck.targets import Remote, fixture_over, remote_probes

POOL = ThreadPoolScheduler(2)


def relay_router() -> rx.Router:
    router = rx.Router()

    @router.channel("relay", window=rx.Manual(0))  # grant only what our own outbound is granted
    def relay(request: rx.Request) -> None:
        out = rxc.outbound(request)
        rxc.inbound(request).pipe(request_n(out.demand), ops.map(lambda item: item.data.upper())).subscribe(out)

    return router


remote = fixture_over(lambda kind: remote_probes(kind, relay_router()), "memory", "tcp")


def _factory(remote: Remote, create: object) -> tck.ProcessorFactory:
    return tck.ProcessorFactory(create=create, settle=round_trip(remote.client))  # type: ignore[arg-type]


def _behind_a_stream(remote: Remote, stage: Callable[[Observable[Any]], tck.Publisher]) -> tck.ProcessorFactory:
    """``stage`` applied to the probe's items, received through a remote stream."""

    def create(upstream: tck.Publisher) -> tck.Publisher:
        return stage(rxc.request_stream(remote.client, "probe", remote.probes.add(upstream).encode()))

    return _factory(remote, create)


class TestShareDemand(tck.ProcessorRules):
    @pytest.fixture
    def tck_factory(self, remote: Remote) -> tck.ProcessorFactory:
        return _behind_a_stream(remote, lambda source: from_observable(source.pipe(share_demand(4))))


class TestBalance(tck.ProcessorRules):
    @pytest.fixture
    def tck_factory(self, remote: Remote) -> tck.ProcessorFactory:
        return _behind_a_stream(remote, lambda source: from_observable(source.pipe(balance())))


class TestObserveOn(tck.ProcessorRules):
    @pytest.fixture
    def tck_factory(self, remote: Remote) -> tck.ProcessorFactory:
        return _behind_a_stream(
            remote, lambda source: from_pipeline(lambda requests: source.pipe(request_n(requests), observe_on(POOL)))
        )


class TestChannelRelay(tck.ProcessorRules):
    """What the requester sends (the probe's items, through ``rxc.channel``) comes back
    through the responder's relay (``ch.inbound``, demand by ``request_n``)."""

    @pytest.fixture
    def tck_factory(self, remote: Remote) -> tck.ProcessorFactory:
        def create(upstream: tck.Publisher) -> tck.Publisher:
            ch = rxc.channel(remote.client, "relay", window=rx.Manual(1))  # a request carries n >= 1
            upstream.subscribe(sink_subscriber(ch))
            return from_observable(ch.inbound)

        return _factory(remote, create)
