"""The Reactive Streams rules as a reusable test suite (the TCK's rules, in Python).

The specification's 43 rules (Publisher §1, Subscriber §2, Subscription §3, Processor §4)
as one check per rule, named by its number, run against a factory you write for your own
publisher, subscriber or processing stage, as the Java TCK's ``createPublisher(n)`` /
``createFailedPublisher()`` are. Required checks must pass; optional ones (a MAY or
SHOULD) are reported; the untestable ones are listed with the reason.

With pytest, subclass a suite and give it a ``tck_factory`` fixture::

    from rxchannel.testing import tck

    class TestMyStream(tck.PublisherRules):
        @pytest.fixture
        async def tck_factory(self, peer):
            return tck.PublisherFactory(
                create=lambda n: tck.adapters.from_observable(reactive.request_stream(peer, "count", b"%d" % n)),
                settle=tck.adapters.round_trip(peer),
            )

Without pytest, ``report = await tck.verify_publisher(factory)`` runs every check and
``print(report)`` tables them (``report.ok``: no required check failed).

The checks speak Reactive Streams (:class:`Publisher`, :class:`Subscriber`,
:class:`Subscription`); :mod:`rxchannel.testing.tck.adapters` turns rxchannel's demand
Observables, remote streams, async iterables and sinks into those shapes. The pytest
suites (``PublisherRules``, ``SubscriberRules``, ``ProcessorRules``) need pytest and
pytest-asyncio; the rest needs neither. ``docs/reactive-streams.md`` tables the rules,
what rxchannel does about each, and the tests.
"""

from __future__ import annotations

from typing import Any

from . import adapters
from ._api import (
    MAX_DEMAND,
    ProcessorFactory,
    Publisher,
    PublisherFactory,
    RuleViolation,
    Subscriber,
    SubscriberFactory,
    SubscriberHandle,
    Subscription,
    loop_turns,
)
from ._probes import ManualSubscriber, ProbePublisher
from ._publisher import SkipCheck
from ._rules import CHECKS, RULES, Check, Rule, checks_for
from ._runner import Outcome, Report, run_check, verify_processor, verify_publisher, verify_subscriber
from ._subscriber import ProbeError

__all__ = [
    "CHECKS",
    "MAX_DEMAND",
    "RULES",
    "Check",
    "ManualSubscriber",
    "Outcome",
    "ProbeError",
    "ProbePublisher",
    "ProcessorFactory",
    "ProcessorRules",
    "Publisher",
    "PublisherFactory",
    "PublisherRules",
    "Report",
    "Rule",
    "RuleViolation",
    "SkipCheck",
    "Subscriber",
    "SubscriberFactory",
    "SubscriberHandle",
    "SubscriberRules",
    "Subscription",
    "adapters",
    "checks_for",
    "loop_turns",
    "run_check",
    "verify_processor",
    "verify_publisher",
    "verify_subscriber",
]

_SUITES = ("PublisherRules", "SubscriberRules", "ProcessorRules")


def __getattr__(name: str) -> Any:
    """The pytest suites, imported only when asked for (they need pytest)."""
    if name in _SUITES:
        from . import _pytest

        return getattr(_pytest, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
