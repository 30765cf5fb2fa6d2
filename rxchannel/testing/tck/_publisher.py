"""The publisher rules: a publisher of yours (and its subscriptions) driven by a recording subscriber.

Each check follows the TCK's ``PublisherVerification`` test of the same rule where there is
one (the steps are described, not copied), and adds checks the TCK leaves untested where a
Python publisher can be observed doing it (the source released after the end, §1.6; a
raising subscriber cancelled, §2.13).
"""

from __future__ import annotations

import contextlib
import inspect
import weakref
from typing import Any

from ._api import MAX_DEMAND, Publisher, PublisherFactory, RuleViolation
from ._probes import Env, ManualSubscriber, subscribe
from ._rules import check

__all__ = ["PublisherEnv", "SkipCheck"]

ROLE = "publisher"


class SkipCheck(Exception):  # noqa: N818 - it is not an error: the check does not apply
    """The check does not apply to this factory (it says why)."""


class PublisherEnv(Env):
    """A publisher check's environment: the factory, and every subscriber it made."""

    def __init__(self, factory: PublisherFactory):
        super().__init__(factory.settle, factory.timeout)
        self.factory = factory
        self.subscribers: list[weakref.ref[ManualSubscriber]] = []
        self._keep: list[ManualSubscriber] = []

    async def publisher(self, n: int, *, completes: bool = True) -> Publisher:
        """A publisher of ``n`` items (skips the check if the factory cannot make one)."""
        if n > self.factory.max_elements:
            raise SkipCheck(f"needs a publisher of {n} items; the factory makes at most {self.factory.max_elements}")
        if n < self.factory.min_elements:
            raise SkipCheck(f"needs a publisher of {n} items; the factory makes at least {self.factory.min_elements}")
        if completes and self.factory.infinite:
            raise SkipCheck("needs a stream that completes; the factory's never does")
        return await _made(self.factory.create(n))

    async def failed(self) -> Publisher:
        if self.factory.create_failed is None:
            raise SkipCheck("needs a failed publisher; the factory makes none")
        return await _made(self.factory.create_failed())

    async def all_items(
        self, rule: str, n: int, *, requested: int, name: str = "subscriber", **options: Any
    ) -> ManualSubscriber:
        """A new subscriber of a stream of ``n`` items, once ``request(requested)`` got it all of them."""
        subscriber = self.subscribe(await self.publisher(n), name, **options)
        await subscriber.subscribed()
        self.request(subscriber, requested)
        await subscriber.expect_items(n, rule)
        return subscriber

    async def whole_stream(
        self, rule: str, n: int, *, requested: int, name: str = "subscriber", **options: Any
    ) -> ManualSubscriber:
        """A new subscriber of a stream of ``n`` items, once ``request(requested)`` got it all of them
        and on_complete."""
        subscriber = await self.all_items(rule, n, requested=requested, name=name, **options)
        await subscriber.expect_complete(rule)
        return subscriber

    async def refused(self, rule: str, name: str, *, requested: int = 1) -> ManualSubscriber:
        """A new subscriber of a failed publisher, once ``request(requested)`` got it on_error."""
        subscriber = self.subscribe(await self.failed(), name)
        await subscriber.subscribed()
        self.request(subscriber, requested)
        await subscriber.expect_error(rule)
        return subscriber

    def subscribe(
        self, publisher: Publisher, name: str = "subscriber", *, keep: bool = True, **options: Any
    ) -> ManualSubscriber:
        """Subscribe a new recording subscriber to ``publisher``."""
        options.setdefault("max_depth", self.factory.max_recursion)
        subscriber = ManualSubscriber(self, name=name, **options)
        self.subscribers.append(weakref.ref(subscriber))
        if keep:
            self._keep.append(subscriber)
        subscribe(publisher, subscriber)
        return subscriber

    def request(self, subscriber: ManualSubscriber, n: int, rule: str = "3.16") -> None:
        """``request(n)``, which must return normally (§3.16)."""
        try:
            subscriber.request(n)
        except Exception as exc:
            raise RuleViolation(rule, f"request({n}) raised {exc!r} instead of returning normally") from exc

    def cancel(self, subscriber: ManualSubscriber, rule: str = "3.15") -> None:
        """``cancel()``, which must return normally (§3.15)."""
        try:
            subscriber.cancel()
        except Exception as exc:
            raise RuleViolation(rule, f"cancel() raised {exc!r} instead of returning normally") from exc

    async def released(self, rule: str, when: str) -> None:
        """Wait until the factory says every source was let go (when it can tell)."""
        released = self.factory.released
        if released is not None:
            await self.wait_for(released, rule, f"the publisher's source released {when}")

    async def cleanup(self) -> None:
        """Cancel what is still open, so that sources close before the test's resources do."""
        for ref in self.subscribers:
            subscriber = ref()
            if subscriber is not None and subscriber.subscription is not None and not subscriber.cancelled:
                with contextlib.suppress(Exception):  # a failing cancel was the check's business, not the cleanup's
                    subscriber.cancel()
        self._keep.clear()


async def _made(made: Any) -> Publisher:
    return await made if inspect.isawaitable(made) else made  # type: ignore[no-any-return]


async def _ending(env: PublisherEnv, sub: ManualSubscriber, rule: str) -> None:
    """Wait for on_complete; a publisher that needs one more request to find its end gets it."""
    await env.settle()
    if not sub.terminated:
        env.request(sub, 1)
    await sub.expect_complete(rule)


# ------------------------------------------------------------------ §1 Publisher


@check("1.1", "never_signals_more_on_next_than_requested", ROLE)
async def spec_1_1(env: PublisherEnv) -> None:
    sub = env.subscribe(await env.publisher(5, completes=False))
    await sub.subscribed()
    await sub.expect_none("1.1", "before any request")
    env.request(sub, 1)
    await sub.expect_items(1, "1.1")
    await sub.expect_none("1.1", "past the one item requested")
    env.request(sub, 1)
    env.request(sub, 2)
    await sub.expect_items(4, "1.1")
    await sub.expect_none("1.1", "past the four items requested")


@check("1.2", "may_signal_fewer_than_requested_and_terminate", ROLE)
async def spec_1_2(env: PublisherEnv) -> None:
    await env.whole_stream("1.2", 3, requested=10)


@check("1.3", "signals_serially", ROLE)
async def spec_1_3(env: PublisherEnv) -> None:
    """Requests from inside on_subscribe and on_next, ten times over: the probe flags any
    signal that enters while another thread is inside one (a stochastic rule in the TCK)."""
    for run in range(10):
        publisher = await env.publisher(10)
        sub = env.subscribe(publisher, f"subscriber {run + 1}", request_on_subscribe=[1], request_on_next=1)
        await sub.expect_items(10, "1.3")
        await _ending(env, sub, "1.3")


@check("1.4", "a_failing_publisher_signals_on_error", ROLE)
async def spec_1_4(env: PublisherEnv) -> None:
    await env.refused("1.4", "subscriber")


@check(
    "1.4",
    "optional_signals_on_error_without_a_request",
    ROLE,
    "optional",
    "the TCK asks a failed publisher for its error without requesting anything (§2.10 lets it); a "
    "publisher that starts its work with the first request finds its failure only then",
)
async def spec_1_4_unrequested(env: PublisherEnv) -> None:
    sub = env.subscribe(await env.failed())
    await sub.subscribed()
    await sub.expect_error("1.4")


@check("1.5", "a_finite_stream_signals_on_complete", ROLE)
async def spec_1_5(env: PublisherEnv) -> None:
    sub = env.subscribe(await env.publisher(3))
    await sub.subscribed()
    for count in (1, 2, 3):
        env.request(sub, 1)
        await sub.expect_items(count, "1.5")
    await _ending(env, sub, "1.5")
    await sub.expect_none("1.5", "after on_complete")
    if env.factory.min_elements > 0:
        return  # it cannot make an empty stream
    empty = env.subscribe(await env.publisher(0), "subscriber of an empty stream")
    await empty.subscribed()
    env.request(empty, 1)
    await empty.expect_complete("1.5")


@check(
    "1.5",
    "optional_completes_without_a_request_past_its_items",
    ROLE,
    "optional",
    "the TCK lets a publisher ask for one more request to find its end; §2.9 lets it complete "
    "without one (rxchannel's sources do: a terminal signal needs no credit)",
)
async def spec_1_5_exact(env: PublisherEnv) -> None:
    for n in (1, 3):
        await env.whole_stream("1.5", n, requested=n, name=f"subscriber of {n}")


@check("1.6", "after_a_terminal_signal_the_subscription_is_cancelled", ROLE)
async def spec_1_6(env: PublisherEnv) -> None:
    """After on_complete (and after on_error) the publisher has let its source go, and
    request and cancel do nothing."""
    sub = await env.all_items("1.6", 1, requested=1)
    await _ending(env, sub, "1.6")
    await env.released("1.6", "after on_complete")
    since = len(sub.signals)
    env.request(sub, 5)
    env.cancel(sub)
    await sub.expect_none("1.6", "after on_complete, then request and cancel", since)
    if env.factory.create_failed is not None:
        failed = await env.refused("1.6", "subscriber of a failed publisher")
        await env.released("1.6", "after on_error")
        since = len(failed.signals)
        env.request(failed, 5)
        env.cancel(failed)
        await failed.expect_none("1.6", "after on_error, then request and cancel", since)


@check("1.7", "no_signal_after_a_terminal_one", ROLE)
async def spec_1_7(env: PublisherEnv) -> None:
    sub = await env.whole_stream("1.7", 1, requested=10)
    since = len(sub.signals)
    env.request(sub, 10)
    await sub.expect_none("1.7", "after on_complete", since)
    if env.factory.create_failed is not None:
        failed = await env.refused("1.7", "subscriber of a failed publisher", requested=10)
        since = len(failed.signals)
        env.request(failed, 10)
        await failed.expect_none("1.7", "after on_error", since)


@check("1.8", "a_cancelled_subscription_stops_being_signalled", ROLE)
async def spec_1_8(env: PublisherEnv) -> None:
    """Unbounded demand, cancelled after the first item: once the publisher is quiet,
    nothing more arrives (no item, no on_complete, no on_error)."""
    n = min(100, env.factory.max_elements)
    sub = env.subscribe(await env.publisher(n, completes=False))
    await sub.subscribed()
    env.request(sub, MAX_DEMAND)
    await sub.expect_items(1, "1.8")
    env.cancel(sub)
    await env.settle()
    await sub.expect_none("1.8", "after cancel (and after the publisher had time to see it)")


@check("1.9", "subscribe_signals_on_subscribe_first_and_returns_normally", ROLE)
async def spec_1_9(env: PublisherEnv) -> None:
    """on_subscribe comes first (the subscriber flags anything before it), ``subscribe``
    returns normally; a failed publisher refuses with on_error after on_subscribe. (Java's
    rule for a null subscriber has no Python counterpart.)"""
    sub = env.subscribe(await env.publisher(1, completes=False))
    await sub.subscribed()
    if env.factory.create_failed is not None:
        await env.refused("1.9", "subscriber of a failed publisher")


@check("1.10", "subscribe_may_be_called_again_with_another_subscriber", ROLE)
async def spec_1_10(env: PublisherEnv) -> None:
    """The same publisher subscribed three times in turn: each subscriber gets on_subscribe
    and then its items or a refusal (on_error); none is left without an answer."""
    publisher = await env.publisher(3)
    for turn in range(3):
        sub = env.subscribe(publisher, f"subscriber {turn + 1}")
        await sub.subscribed("1.10")
        env.request(sub, 3)
        await env.wait_for(
            lambda sub=sub: len(sub.items) == 3 or sub.terminated,  # type: ignore[misc]
            "1.10",
            f"subscriber {turn + 1}: its items or on_error",
        )
        if sub.error is None:
            await _ending(env, sub, "1.10")


@check(
    "1.11",
    "optional_several_subscribers_each_get_a_whole_stream",
    ROLE,
    "optional",
    "§1.11 lets a publisher choose whether and how it serves several subscribers at once",
)
async def spec_1_11(env: PublisherEnv) -> None:
    """Three subscribers at once: with a stream each (unicast) or the same one (multicast)
    each gets every item, in the same order; a balancing publisher gives every item to one."""
    n = 5
    publisher = await env.publisher(n)
    subs = [env.subscribe(publisher, f"subscriber {i + 1}") for i in range(3)]
    for sub in subs:
        await sub.subscribed()
    for sub in subs:
        env.request(sub, n)
    if env.factory.sharing == "balance":
        await env.wait_for(lambda: sum(len(s.items) for s in subs) >= n, "1.11", f"{n} items between them")
        for sub in subs:
            await _ending(env, sub, "1.11")
        if sum(len(s.items) for s in subs) != n:
            raise RuleViolation("1.11", f"{n} items balanced over 3 subscribers arrived {[len(s.items) for s in subs]}")
        return
    sequences = [await sub.expect_items(n, "1.11") for sub in subs]
    for sub in subs:
        await _ending(env, sub, "1.11")
    if any(seq != sequences[0] for seq in sequences):
        raise RuleViolation("1.11", f"the subscribers got different sequences: {sequences}")


# ------------------------------------------------------------------ §2 on the publisher's side


@check("2.12", "on_subscribe_is_called_once_per_subscriber", ROLE)
async def spec_2_12(env: PublisherEnv) -> None:
    """The subscriber flags a second on_subscribe; a whole stream and its end give the
    publisher every chance to call it again."""
    sub = await env.all_items("2.12", 3, requested=3)
    await _ending(env, sub, "2.12")
    await sub.expect_none("2.12", "after on_complete")
    if sub.subscribe_count != 1:
        raise RuleViolation("2.12", f"on_subscribe was called {sub.subscribe_count} times")


@check("2.13", "a_subscriber_that_raises_is_cancelled", ROLE)
async def spec_2_13(env: PublisherEnv) -> None:
    """A subscriber whose on_next raises: the publisher takes its subscription as cancelled
    (no more items; the error may be handed back as on_error) and lets its source go."""
    failure = _SubscriberError("the subscriber's on_next failed")
    n = min(10, env.factory.max_elements)
    sub = env.subscribe(await env.publisher(n, completes=False), raise_on_next=failure)
    await sub.subscribed()
    env.request(sub, n)
    await sub.expect_items(1, "2.13")
    await env.settle()
    await env.settle()
    if len(sub.items) > 1:
        raise RuleViolation("2.13", f"{len(sub.items) - 1} more on_next after the subscriber's on_next raised")
    if sub.completed:
        raise RuleViolation("2.13", "on_complete after the subscriber's on_next raised")
    await env.released("2.13", "after the subscriber's on_next raised")


class _SubscriberError(Exception):
    """What the suite's subscriber raises to see how a publisher takes it (§2.13)."""
