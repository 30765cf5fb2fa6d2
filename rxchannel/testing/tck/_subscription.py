"""The subscription rules (§3): what a publisher's subscription must do when its subscriber
requests, cancels, or does both at the wrong moments; driven like the publisher rules
(:mod:`._publisher`), by the suite's recording subscriber.
"""

from __future__ import annotations

import gc
import threading
import weakref

from ._api import MAX_DEMAND, Publisher, RuleViolation
from ._probes import ManualSubscriber
from ._publisher import ROLE, PublisherEnv
from ._rules import check

__all__: list[str] = []


# ------------------------------------------------------------------ §3 Subscription
# (§3.1, 3.4, 3.10, 3.11 and 3.14 no test can check: ._rules lists them, with the reasons)


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
        failed = await env.refused("3.15", "subscriber cancelling after an error")
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
        failed = await env.refused("3.16", "subscriber requesting after an error")
        env.request(failed, 1)
    await env.settle()


@check("3.17", "demand_up_to_2_63_minus_1_is_supported", ROLE)
async def spec_3_17(env: PublisherEnv) -> None:
    """2^63-1 at once; 2^62-1 + 2^62-1 + 1 (2^63-1 in all); 2^63-2 more from every on_next
    (demand far above 2^63-1): never an error, every item, then the end."""
    await env.whole_stream("3.17", 3, requested=MAX_DEMAND, name="subscriber requesting 2^63-1")
    summed = env.subscribe(await env.publisher(3), "subscriber requesting 2^63-1 in three calls")
    await summed.subscribed()
    env.request(summed, MAX_DEMAND // 2)
    env.request(summed, MAX_DEMAND // 2)
    env.request(summed, 1)
    await summed.expect_items(3, "3.17")
    await summed.expect_complete("3.17")
    n = min(10, env.factory.max_elements)
    await env.whole_stream(
        "3.17", n, requested=1, name="subscriber requesting past 2^63-1", request_on_next=MAX_DEMAND - 1
    )
