"""The three Reactive Streams interfaces in Python, and what a user hands the suite.

The suite speaks Reactive Streams itself (``subscribe`` / ``on_subscribe`` / ``on_next`` /
``on_error`` / ``on_complete``; ``request(n)`` / ``cancel()``), so that one set of rule
tests can drive anything: rxchannel's demand Observables, remote streams, async
iterables and sinks get there through :mod:`rxchannel.testing.tck.adapters`, a user's own
publisher through whatever it already is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

__all__ = [
    "MAX_DEMAND",
    "ProcessorFactory",
    "Publisher",
    "PublisherFactory",
    "RuleViolation",
    "Subscriber",
    "SubscriberFactory",
    "SubscriberHandle",
    "Subscription",
    "loop_turns",
]

T = TypeVar("T")

#: The largest demand a subscription must support (Reactive Streams §3.17: Java's Long.MAX_VALUE).
MAX_DEMAND = (1 << 63) - 1


class Subscription(Protocol):
    """What a publisher hands its subscriber in ``on_subscribe``."""

    def request(self, n: int) -> None: ...
    def cancel(self) -> None: ...


class Subscriber(Protocol):
    """What subscribes to a publisher: it is told the subscription, then the signals."""

    def on_subscribe(self, subscription: Subscription) -> None: ...
    def on_next(self, item: Any) -> None: ...
    def on_error(self, error: BaseException) -> None: ...
    def on_complete(self) -> None: ...


class Publisher(Protocol):
    """What a subscriber subscribes to."""

    def subscribe(self, subscriber: Subscriber) -> None: ...


class RuleViolation(AssertionError):  # noqa: N818 - a failed check, named as the TCK's reports name it
    """A rule of the Reactive Streams specification was broken.

    Attributes:
        rule: the rule's number, such as ``"3.9"``.
    """

    def __init__(self, rule: str, message: str):
        super().__init__(f"§{rule}: {message}")
        self.rule = rule
        self.detail = message


async def loop_turns(turns: int = 50) -> None:
    """Let the event loop run ``turns`` times: what an in-process publisher does unprompted
    (items it should not send, a late signal) has happened by then."""
    for _ in range(turns):
        await asyncio.sleep(0)


@dataclass
class PublisherFactory:
    """How the suite gets publishers of yours (the TCK's ``createPublisher(n)``).

    Attributes:
        create: ``create(n)`` returns (or returns an awaitable of) a publisher that emits
            exactly ``n`` items when asked for them, then completes (``n`` may be 0).
        create_failed: returns a publisher that fails (signals ``on_error``) once
            subscribed; None if you cannot make one (the rules that need it are skipped).
        max_elements: the most items ``create`` can make; rules that need more are skipped.
        min_elements: the fewest (a file source sends at least one chunk, an empty one for
            an empty file); rules that need fewer are skipped, or that part of them.
        infinite: ``create`` ignores ``n`` and makes a stream that never completes on its
            own (a hot source); rules that need completion are skipped.
        settle: waits until what the publisher does unprompted has happened (signals it
            should not send, included): :func:`loop_turns` by default; across a wire, add a
            round trip on the connection. The negative checks ("nothing more arrives") wait
            on it.
        released: True once every source the publisher opened was let go (a remote
            source closed on the far side, a file closed); checked after cancel and after
            the end of a stream. None: not checked.
        sharing: how several subscribers at once are served (§1.11): ``"unicast"`` (a stream
            each), ``"multicast"`` (the same items to all) or ``"balance"`` (each item to one).
        max_recursion: how deep ``on_next`` -> ``request`` -> ``on_next`` may nest (§3.3).
        timeout: seconds to wait for a signal that must come before the check fails (a
            tenth of it in an optional check: what a MAY allows may never come).
    """

    create: Callable[[int], Publisher | Awaitable[Publisher]]
    create_failed: Callable[[], Publisher | Awaitable[Publisher]] | None = None
    max_elements: int = MAX_DEMAND
    min_elements: int = 0
    infinite: bool = False
    settle: Callable[[], Awaitable[None]] = loop_turns
    released: Callable[[], bool] | None = None
    sharing: str = "unicast"
    max_recursion: int = 1
    timeout: float = 5.0


@dataclass
class SubscriberHandle:
    """A subscriber of yours, attached to the suite's probe publisher, as the rules see it.

    Attributes:
        received: the items your subscriber has processed (passed on, written, sent).
        completed: whether it has seen the end of the stream (passed on ``on_complete``).
        error: the error it has seen (passed on), or None.
        request: makes it request ``n`` more (the TCK's ``triggerRequest``); None if it
            decides its demand itself (a window).
        cancel: makes it no longer need its subscription (it must cancel it); None if
            nothing can.
        subscriber: the Reactive Streams subscriber the probe was subscribed with, for the
            rules that call it directly (§2.5).
        request_from_threads: ``request`` may be called from any thread.
    """

    received: Callable[[], list[Any]]
    completed: Callable[[], bool]
    error: Callable[[], BaseException | None]
    request: Callable[[int], None] | None = None
    cancel: Callable[[], None] | None = None
    subscriber: Subscriber | None = None
    request_from_threads: bool = False


@dataclass
class SubscriberFactory:
    """How the suite gets subscribers of yours (the TCK's ``createSubscriber(probe)``).

    Attributes:
        create: ``create(publisher)`` subscribes your subscriber to ``publisher`` (the
            suite's probe: it sends what a rule needs and records every request and cancel)
            and returns its :class:`SubscriberHandle`. It may subscribe later (across a wire).
        item: ``item(i)`` is the ``i``-th item the probe sends (your subscriber must accept it).
        settle: as for :class:`PublisherFactory`.
        timeout: as for :class:`PublisherFactory`.
    """

    create: Callable[[Publisher], Awaitable[SubscriberHandle]]
    item: Callable[[int], Any] = field(default=lambda i: str(i).encode())
    settle: Callable[[], Awaitable[None]] = loop_turns
    timeout: float = 5.0


@dataclass
class ProcessorFactory:
    """How the suite gets processing stages of yours (subscriber upstream, publisher downstream).

    Attributes:
        create: ``create(upstream)`` subscribes your stage to ``upstream`` (the suite's
            probe) when it needs to, and returns the publisher of its output.
        item: ``item(i)`` is the ``i``-th item the probe sends upstream.
        recovers: your stage recovers from an upstream error (§4.2) instead of passing it on.
        settle, timeout: as for :class:`PublisherFactory`.
    """

    create: Callable[[Publisher], Publisher | Awaitable[Publisher]]
    item: Callable[[int], Any] = field(default=lambda i: str(i).encode())
    recovers: bool = False
    settle: Callable[[], Awaitable[None]] = loop_turns
    timeout: float = 5.0
