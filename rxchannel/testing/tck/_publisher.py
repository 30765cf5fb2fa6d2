"""The publisher rules: a publisher of yours (and its subscriptions) driven by a recording subscriber.

Each check follows the TCK's ``PublisherVerification`` test of the same rule where there is
one (the steps are described, not copied), and adds checks the TCK leaves untested where a
Python publisher can be observed doing it (the source released after the end, §1.6; a
raising subscriber cancelled, §2.13).
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import threading
import weakref
from typing import Any

from ._api import MAX_DEMAND, Publisher, PublisherFactory, RuleViolation
from ._probes import Env, ManualSubscriber, subscribe
from ._rules import check, untestable

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
    sub = env.subscribe(await env.publisher(3))
    await sub.subscribed()
    env.request(sub, 10)
    await sub.expect_items(3, "1.2")
    await sub.expect_complete("1.2")


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
    sub = env.subscribe(await env.failed())
    await sub.subscribed()
    env.request(sub, 1)
    await sub.expect_error("1.4")


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
        sub = env.subscribe(await env.publisher(n), f"subscriber of {n}")
        await sub.subscribed()
        env.request(sub, n)
        await sub.expect_items(n, "1.5")
        await sub.expect_complete("1.5")


@check("1.6", "after_a_terminal_signal_the_subscription_is_cancelled", ROLE)
async def spec_1_6(env: PublisherEnv) -> None:
    """After on_complete (and after on_error) the publisher has let its source go, and
    request and cancel do nothing."""
    sub = env.subscribe(await env.publisher(1))
    await sub.subscribed()
    env.request(sub, 1)
    await sub.expect_items(1, "1.6")
    await _ending(env, sub, "1.6")
    await env.released("1.6", "after on_complete")
    since = len(sub.signals)
    env.request(sub, 5)
    env.cancel(sub)
    await sub.expect_none("1.6", "after on_complete, then request and cancel", since)
    if env.factory.create_failed is not None:
        failed = env.subscribe(await env.failed(), "subscriber of a failed publisher")
        await failed.subscribed()
        env.request(failed, 1)
        await failed.expect_error("1.6")
        await env.released("1.6", "after on_error")
        since = len(failed.signals)
        env.request(failed, 5)
        env.cancel(failed)
        await failed.expect_none("1.6", "after on_error, then request and cancel", since)


@check("1.7", "no_signal_after_a_terminal_one", ROLE)
async def spec_1_7(env: PublisherEnv) -> None:
    sub = env.subscribe(await env.publisher(1))
    await sub.subscribed()
    env.request(sub, 10)
    await sub.expect_items(1, "1.7")
    await sub.expect_complete("1.7")
    since = len(sub.signals)
    env.request(sub, 10)
    await sub.expect_none("1.7", "after on_complete", since)
    if env.factory.create_failed is not None:
        failed = env.subscribe(await env.failed(), "subscriber of a failed publisher")
        await failed.subscribed()
        env.request(failed, 10)
        await failed.expect_error("1.7")
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
        failed = env.subscribe(await env.failed(), "subscriber of a failed publisher")
        await failed.subscribed()
        env.request(failed, 1)
        await failed.expect_error("1.9")


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
    sub = env.subscribe(await env.publisher(3))
    await sub.subscribed()
    env.request(sub, 3)
    await sub.expect_items(3, "2.12")
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


# ------------------------------------------------------------------ §3 Subscription

untestable(
    "3.1",
    "request_and_cancel_only_from_the_subscriber_s_context",
    ROLE,
    "a subscription cannot tell where its caller runs; the subscriber-side check of §2.7 "
    "sees that every request and cancel comes from the thread the signals come from",
)


@check("3.2", "request_may_be_called_from_on_subscribe_and_on_next", ROLE)
async def spec_3_2(env: PublisherEnv) -> None:
    sub = env.subscribe(await env.publisher(6, completes=False), request_on_subscribe=[1, 1, 1], request_on_next=1)
    await sub.expect_items(6, "3.2")


@check("3.3", "request_bounds_synchronous_recursion", ROLE)
async def spec_3_3(env: PublisherEnv) -> None:
    """on_next requests one more, every time: on_next may not nest inside request deeper
    than the factory's ``max_recursion`` (1 by default, as the TCK's)."""
    n = min(env.factory.max_recursion + 5, env.factory.max_elements)
    sub = env.subscribe(await env.publisher(n, completes=False), request_on_next=1)
    await sub.subscribed()
    env.request(sub, 1)
    await sub.expect_items(n, "3.3")


untestable(
    "3.4",
    "request_returns_in_a_timely_manner",
    ROLE,
    "a matter of wall-clock time on the caller's thread, which a test cannot bound without flaking",
)


@check("3.5", "cancel_is_idempotent_and_thread_safe", ROLE)
async def spec_3_5(env: PublisherEnv) -> None:
    """cancel from four threads at once and from the loop: each returns normally, and the
    signals stop."""
    n = min(100, env.factory.max_elements)
    sub = env.subscribe(await env.publisher(n, completes=False))
    await sub.subscribed()
    env.request(sub, MAX_DEMAND)
    await sub.expect_items(1, "3.5")
    assert sub.subscription is not None
    cancel = sub.subscription.cancel
    raised: list[BaseException] = []
    start = threading.Barrier(4)

    def from_thread() -> None:
        start.wait()
        try:
            cancel()
        except BaseException as exc:
            raised.append(exc)

    threads = [threading.Thread(target=from_thread) for _ in range(4)]
    for thread in threads:
        thread.start()
    sub.cancelled = True
    env.cancel(sub, "3.5")
    await env.wait_for(lambda: not any(t.is_alive() for t in threads), "3.5", "cancel returning on four threads")
    if raised:
        raise RuleViolation("3.5", f"cancel() from another thread raised {raised[0]!r}")
    await env.settle()
    await sub.expect_none("3.5", "after cancel (from five threads at once)")


@check("3.6", "request_after_cancel_is_a_no_op", ROLE)
async def spec_3_6(env: PublisherEnv) -> None:
    sub = env.subscribe(await env.publisher(3, completes=False))
    await sub.subscribed()
    since = len(sub.signals)
    env.cancel(sub)
    for _ in range(3):
        env.request(sub, 1)
    await sub.expect_none("3.6", "after cancel, then request(1) three times", since)


@check("3.7", "cancel_after_cancel_is_a_no_op", ROLE)
async def spec_3_7(env: PublisherEnv) -> None:
    sub = env.subscribe(await env.publisher(1, completes=False))
    await sub.subscribed()
    since = len(sub.signals)
    for _ in range(3):
        env.cancel(sub, "3.7")
    await sub.expect_none("3.7", "after cancel() three times", since)


@check("3.8", "requests_add_up", ROLE)
async def spec_3_8(env: PublisherEnv) -> None:
    sub = env.subscribe(await env.publisher(10, completes=False))
    await sub.subscribed()
    env.request(sub, 1)
    env.request(sub, 1)
    env.request(sub, 2)
    await sub.expect_items(4, "3.8")
    await sub.expect_none("3.8", "past the 1 + 1 + 2 items requested")
    env.request(sub, 3)
    await sub.expect_items(7, "3.8")


@check("3.9", "request_zero_or_negative_signals_an_error", ROLE)
async def spec_3_9(env: PublisherEnv) -> None:
    for n in (0, -1, -(1 << 40)):
        sub = env.subscribe(await env.publisher(10, completes=False), f"subscriber requesting {n}")
        await sub.subscribed()
        env.request(sub, n)
        await sub.expect_error("3.9")


@check(
    "3.9",
    "optional_the_error_is_a_value_error_that_says_why",
    ROLE,
    "optional",
    "the specification asks for Java's IllegalArgumentException (Python's ValueError) and says its "
    "message SHOULD explain that non-positive requests are illegal",
)
async def spec_3_9_message(env: PublisherEnv) -> None:
    sub = env.subscribe(await env.publisher(10, completes=False))
    await sub.subscribed()
    env.request(sub, -1)
    error = await sub.expect_error("3.9")
    if not isinstance(error, ValueError):
        raise RuleViolation("3.9", f"request(-1) signalled {type(error).__name__}, not a ValueError")
    if not any(word in str(error) for word in ("3.9", "positive", "negative")):
        raise RuleViolation("3.9", f"the error does not say why request(-1) is illegal: {error}")


untestable(
    "3.10",
    "request_may_signal_on_next_synchronously",
    ROLE,
    "a permission: every check accepts items signalled from inside request and items signalled later",
)
untestable(
    "3.11",
    "request_may_signal_the_end_synchronously",
    ROLE,
    "a permission: every check accepts on_complete/on_error signalled from inside request and later",
)


@check("3.12", "cancel_makes_the_publisher_stop", ROLE)
async def spec_3_12(env: PublisherEnv) -> None:
    """With 15 requested of 20, cancel after the first item: at most the 15 arrive, then
    nothing, and the cancel reached the source (it was let go)."""
    n = min(20, env.factory.max_elements)
    sub = env.subscribe(await env.publisher(n, completes=False))
    await sub.subscribed()
    env.request(sub, min(10, n))
    env.request(sub, min(5, n))
    await sub.expect_items(1, "3.12")
    env.cancel(sub)
    await env.settle()
    await sub.expect_none("3.12", "after cancel (and after the publisher had time to see it)")
    await env.released("3.12", "after cancel")


@check("3.13", "cancel_drops_every_reference_to_the_subscriber", ROLE)
async def spec_3_13(env: PublisherEnv) -> None:
    publisher = await env.publisher(3, completes=False)
    ref = await _subscribe_take_one_and_cancel(env, publisher)

    def collected() -> bool:
        gc.collect()
        return ref() is None

    await env.settle()
    await env.wait_for(collected, "3.13", "the cancelled subscriber garbage-collected (the publisher keeps it)")


async def _subscribe_take_one_and_cancel(env: PublisherEnv, publisher: Publisher) -> weakref.ref[ManualSubscriber]:
    sub = env.subscribe(publisher, keep=False)
    await sub.subscribed()
    env.request(sub, 1)
    await sub.expect_items(1, "3.13")
    env.cancel(sub)
    return weakref.ref(sub)


untestable(
    "3.14",
    "cancel_may_shut_a_stateful_publisher_down",
    ROLE,
    "a permission: §1.10 checks that a later subscriber still gets an answer, items or on_error",
)


@check("3.15", "cancel_returns_normally", ROLE)
async def spec_3_15(env: PublisherEnv) -> None:
    """cancel before any request, in the middle, after on_complete and after on_error."""
    before = env.subscribe(await env.publisher(3, completes=False), "subscriber cancelling first")
    await before.subscribed()
    env.cancel(before)
    middle = env.subscribe(await env.publisher(3, completes=False), "subscriber cancelling in the middle")
    await middle.subscribed()
    env.request(middle, 1)
    await middle.expect_items(1, "3.15")
    env.cancel(middle)
    if not env.factory.infinite:
        ended = env.subscribe(await env.publisher(1), "subscriber cancelling after the end")
        await ended.subscribed()
        env.request(ended, 2)
        await ended.expect_complete("3.15")
        env.cancel(ended)
    if env.factory.create_failed is not None:
        failed = env.subscribe(await env.failed(), "subscriber cancelling after an error")
        await failed.subscribed()
        env.request(failed, 1)
        await failed.expect_error("3.15")
        env.cancel(failed)
    await env.settle()


@check("3.16", "request_returns_normally", ROLE)
async def spec_3_16(env: PublisherEnv) -> None:
    """request(n) for every n (0, negative, 2^63-1, above it) and in every state."""
    sub = env.subscribe(await env.publisher(3, completes=False))
    await sub.subscribed()
    for n in (1, MAX_DEMAND, MAX_DEMAND, 0, -1):
        env.request(sub, n)
    env.cancel(sub)
    env.request(sub, 1)
    if not env.factory.infinite:
        ended = env.subscribe(await env.publisher(1), "subscriber requesting after the end")
        await ended.subscribed()
        env.request(ended, 2)
        await ended.expect_complete("3.16")
        env.request(ended, 1)
    if env.factory.create_failed is not None:
        failed = env.subscribe(await env.failed(), "subscriber requesting after an error")
        await failed.subscribed()
        env.request(failed, 1)
        await failed.expect_error("3.16")
        env.request(failed, 1)
    await env.settle()


@check("3.17", "demand_up_to_2_63_minus_1_is_supported", ROLE)
async def spec_3_17(env: PublisherEnv) -> None:
    """2^63-1 at once; 2^62-1 + 2^62-1 + 1 (2^63-1 in all); 2^63-2 more from every on_next
    (demand far above 2^63-1): never an error, every item, then the end."""
    single = env.subscribe(await env.publisher(3), "subscriber requesting 2^63-1")
    await single.subscribed()
    env.request(single, MAX_DEMAND)
    await single.expect_items(3, "3.17")
    await single.expect_complete("3.17")
    summed = env.subscribe(await env.publisher(3), "subscriber requesting 2^63-1 in three calls")
    await summed.subscribed()
    env.request(summed, MAX_DEMAND // 2)
    env.request(summed, MAX_DEMAND // 2)
    env.request(summed, 1)
    await summed.expect_items(3, "3.17")
    await summed.expect_complete("3.17")
    n = min(10, env.factory.max_elements)
    above = env.subscribe(await env.publisher(n), "subscriber requesting past 2^63-1", request_on_next=MAX_DEMAND - 1)
    await above.subscribed()
    env.request(above, 1)
    await above.expect_items(n, "3.17")
    await above.expect_complete("3.17")
