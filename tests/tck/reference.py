"""A small, correct Reactive Streams publisher, subscriber and processor, each of which can
be given one flaw that breaks exactly one rule: the fixtures the suite's own tests run
every rule test against (``test_broken_fixtures.py``).

The publisher is asynchronous (one item per event-loop callback), so the suite's "nothing
more arrives" checks have something to wait for; ``synchronous`` makes ``request`` deliver
in place instead.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

from rxchannel.testing.tck import (
    MAX_DEMAND,
    ProcessorFactory,
    Publisher,
    PublisherFactory,
    Subscriber,
    SubscriberFactory,
    SubscriberHandle,
    Subscription,
)

#: every flaw a reference publisher can have, and what it does
PUBLISHER_FLAWS = {
    "extra-item": "signals one item more than requested (§1.1)",
    "stall-when-over-requested": "asked for more than it has, it never ends (§1.2)",
    "concurrent-signal": "asked for more from inside on_next, signals the next item from another thread (§1.3)",
    "complete-instead-of-error": "fails by signalling on_complete (§1.4)",
    "error-after-request": "a failed publisher signals on_error only once something is requested (optional §1.4)",
    "never-complete": "never signals on_complete (§1.5)",
    "complete-needs-request": "signals on_complete only when asked for one more item (optional §1.5)",
    "keep-after-end": "keeps its source after on_complete or on_error (§1.6)",
    "signal-after-end": "a request after the end signals on_complete again (§1.7)",
    "ignore-cancel": "keeps signalling after cancel (§1.8)",
    "signal-before-subscribe": "an empty stream signals on_complete before on_subscribe (§1.9)",
    "subscribe-once": "ignores a second subscribe (§1.10)",
    "shared-iterator": "subscribers at once share one stream of items, split between them (optional §1.11)",
    "subscribe-again-at-end": "calls on_subscribe again when the stream ends (§2.12)",
    "ignore-raising-subscriber": "keeps signalling a subscriber whose on_next raised (§2.13)",
    "drop-reentrant-requests": "loses a request made from inside on_subscribe or on_next (§3.2)",
    "synchronous": "delivers inside request, recursively (§3.3)",
    "cancel-not-thread-safe": "cancel from another thread raises (§3.5)",
    "request-after-cancel": "a request after cancel starts it again (§3.6)",
    "second-cancel-signals": "a second cancel signals on_error (§3.7)",
    "demand-replaces": "request(n) sets the demand to n instead of adding n (§3.8)",
    "ignore-bad-request": "ignores request(n <= 0) (§3.9)",
    "runtime-error": "request(n <= 0) signals a RuntimeError that does not say why (optional §3.9)",
    "keep-after-cancel": "stops signalling after cancel but keeps its source (§3.12)",
    "keep-subscribers": "keeps every subscriber it ever had (§3.13)",
    "cancel-raises-after-end": "cancel after the end raises (§3.15)",
    "request-raises": "request(n <= 0) raises instead of signalling (§3.16)",
    "overflow-error": "demand past 2^63-1 signals on_error (§3.17)",
}


@dataclass
class Tracker:
    """Counts the sources a publisher opened and let go (the factory's ``released``)."""

    opened: int = 0
    released: int = 0
    kept: list[Any] = field(default_factory=list)

    def all_released(self) -> bool:
        return self.released == self.opened


class RefPublisher:
    """``n`` items (the numbers 0..n-1), or a failure, to every subscriber."""

    def __init__(self, n: int, tracker: Tracker, *, fail: bool = False, flaw: str = ""):
        assert flaw in PUBLISHER_FLAWS or not flaw, flaw
        self.n, self.tracker, self.fail, self.flaw = n, tracker, fail, flaw
        self.subscriptions = 0
        self.shared: list[int] = [0]  # the next item of the shared iterator ("shared-iterator")

    def subscribe(self, subscriber: Subscriber) -> None:
        if self.flaw == "subscribe-once" and self.subscriptions:
            return
        self.subscriptions += 1
        subscription = RefSubscription(self, subscriber)
        if self.flaw == "keep-subscribers":
            self.tracker.kept.append(subscriber)
        if self.flaw == "signal-before-subscribe" and self.n == 0:
            subscriber.on_complete()
        subscriber.on_subscribe(subscription)
        if self.fail:
            if self.flaw != "error-after-request":
                subscription.schedule_failure()
        else:
            subscription.schedule()  # an empty stream ends without a request (§2.9)


class RefSubscription:
    def __init__(self, publisher: RefPublisher, subscriber: Subscriber):
        self.publisher = publisher
        self.flaw = publisher.flaw
        self.subscriber = subscriber
        self.loop = asyncio.get_running_loop()
        self.thread = threading.get_ident()
        self.next = 0
        self.demand = 0
        self.cancelled = self.done = self.released = self.scheduled = self.delivering = self.extra_sent = False
        publisher.tracker.opened += 1

    # ------------------------------------------------------------ Subscription

    def request(self, n: int) -> None:
        if threading.get_ident() != self.thread:
            self.loop.call_soon_threadsafe(self.request, n)
            return
        if self.flaw == "request-raises" and n <= 0:
            raise ValueError(f"request({n})")
        if self.cancelled:
            if self.flaw != "request-after-cancel":
                return
            self.cancelled = False
        if self.done:
            if self.flaw == "signal-after-end":
                self.subscriber.on_complete()
            return
        if n <= 0:
            if self.flaw != "ignore-bad-request":
                kind = RuntimeError if self.flaw == "runtime-error" else ValueError
                self.end(kind(f"request({n}): Reactive Streams §3.9 needs a positive number"))
            return
        if self.delivering and self.flaw == "drop-reentrant-requests":
            return
        if self.publisher.fail:
            if self.flaw == "error-after-request":
                self.schedule_failure()
            return
        self.demand = n if self.flaw == "demand-replaces" else self.demand + n
        if self.demand > MAX_DEMAND:
            if self.flaw == "overflow-error":
                self.end(OverflowError("demand past 2^63-1"))
                return
            self.demand = MAX_DEMAND
        if self.delivering and self.flaw == "concurrent-signal":
            thread = threading.Thread(target=self.subscriber.on_next, args=("from another thread",))
            thread.start()
            thread.join()
        if self.flaw == "synchronous":
            while not self.done and not self.cancelled and self.step():
                pass
        else:
            self.schedule()

    def cancel(self) -> None:
        if threading.get_ident() != self.thread:
            if self.flaw == "cancel-not-thread-safe":
                raise RuntimeError("cancel() called from another thread")
            self.loop.call_soon_threadsafe(self.cancel)
            return
        if self.flaw == "cancel-raises-after-end" and self.done:
            raise RuntimeError("the subscription is already over")
        if self.cancelled:
            if self.flaw == "second-cancel-signals" and not self.done:
                self.done = True
                self.subscriber.on_error(RuntimeError("cancelled twice"))
            return
        if self.flaw == "ignore-cancel":
            return
        self.cancelled = True
        if self.flaw != "keep-after-cancel":
            self.release()

    # ------------------------------------------------------------ producing

    def schedule(self) -> None:
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.run_step)

    def run_step(self) -> None:
        self.scheduled = False
        if self.step():
            self.schedule()

    def schedule_failure(self) -> None:
        self.loop.call_soon(self.fail)

    def fail(self) -> None:
        if self.cancelled or self.done:
            return
        if self.flaw == "complete-instead-of-error":
            self.end(None)
        else:
            self.end(RuntimeError("the reference publisher failed"))

    def step(self) -> bool:
        """Signal what comes next, if anything may be; True if there may be more."""
        if self.done or self.cancelled:
            return False
        if self.next_index() >= self.publisher.n:
            if self.flaw == "never-complete":
                return False
            if self.flaw == "complete-needs-request" and self.demand == 0:
                return False
            if self.flaw == "stall-when-over-requested" and self.demand > 0:
                return False
            self.end(None)
            return False
        if self.demand == 0:
            if self.flaw == "extra-item" and self.next > 0 and not self.extra_sent:
                self.extra_sent = True
                self.deliver()
            return False
        if self.demand < MAX_DEMAND:
            self.demand -= 1
        return self.deliver()

    def next_index(self) -> int:
        return self.publisher.shared[0] if self.flaw == "shared-iterator" else self.next

    def deliver(self) -> bool:
        item = self.next_index()
        if self.flaw == "shared-iterator":
            self.publisher.shared[0] += 1
        self.next += 1
        self.delivering = True
        try:
            self.subscriber.on_next(item)
        except Exception:
            if self.flaw != "ignore-raising-subscriber":
                self.cancelled = True
                self.release()
                return False
        finally:
            self.delivering = False
        return True

    def end(self, error: BaseException | None) -> None:
        self.done = True
        if error is None:
            self.subscriber.on_complete()
            if self.flaw == "subscribe-again-at-end":
                self.subscriber.on_subscribe(self)
        else:
            self.subscriber.on_error(error)
        if self.flaw != "keep-after-end":
            self.release()

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.publisher.tracker.released += 1


def publisher_factory(flaw: str = "", timeout: float = 0.5) -> PublisherFactory:
    tracker = Tracker()
    return PublisherFactory(
        create=lambda n: RefPublisher(n, tracker, flaw=flaw),
        create_failed=lambda: RefPublisher(0, tracker, fail=True, flaw=flaw),
        released=tracker.all_released,
        timeout=timeout,
    )


# ------------------------------------------------------------------ subscriber

SUBSCRIBER_FLAWS = {
    "never-request": "never requests, even when asked to (§2.1)",
    "cancel-in-on-complete": "cancels its subscription from inside on_complete (§2.3)",
    "request-after-end": "still requests after on_complete or on_error when asked to (§2.4)",
    "take-second-subscription": "takes a second subscription without cancelling it (§2.5)",
    "forget-without-cancel": "no longer needed, drops its subscription without cancelling it (§2.6)",
    "request-from-caller-thread": "calls request on whichever thread asked it for demand (§2.7)",
    "raise-after-cancel": "raises from on_next once it has cancelled (§2.8)",
    "raise-on-unrequested-complete": "raises from on_complete if it never requested (§2.9)",
    "raise-on-unrequested-error": "raises from on_error if it never requested (§2.10)",
    "raise-on-next": "raises from on_next (§2.13)",
}


class RefSubscriber:
    """Records what it gets; requests and cancels when its handle says so (on the loop)."""

    def __init__(self, flaw: str = ""):
        assert flaw in SUBSCRIBER_FLAWS or not flaw, flaw
        self.flaw = flaw
        self.loop = asyncio.get_running_loop()
        self.thread = threading.get_ident()
        self.subscription: Subscription | None = None
        self.items: list[Any] = []
        self.completed = False
        self.error: BaseException | None = None
        self.cancelled = False
        self.requested = False

    def handle(self) -> SubscriberHandle:
        return SubscriberHandle(
            received=lambda: self.items,
            completed=lambda: self.completed,
            error=lambda: self.error,
            request=self.request,
            cancel=self.cancel,
            subscriber=self,
            request_from_threads=True,
        )

    def on_subscribe(self, subscription: Subscription) -> None:
        if self.subscription is not None and self.flaw != "take-second-subscription":
            subscription.cancel()
            return
        self.subscription = subscription

    def on_next(self, item: Any) -> None:
        if self.cancelled:
            if self.flaw == "raise-after-cancel":
                raise RuntimeError("an item after cancel")
            return
        if self.flaw == "raise-on-next":
            raise RuntimeError("cannot take items")
        self.items.append(item)

    def on_error(self, error: BaseException) -> None:
        if self.flaw == "raise-on-unrequested-error" and not self.requested:
            raise RuntimeError("an error before any request")
        self.error = error

    def on_complete(self) -> None:
        if self.flaw == "raise-on-unrequested-complete" and not self.requested:
            raise RuntimeError("the end before any request")
        self.completed = True
        if self.flaw == "cancel-in-on-complete" and self.subscription is not None:
            self.subscription.cancel()

    def request(self, n: int) -> None:
        if threading.get_ident() != self.thread and self.flaw != "request-from-caller-thread":
            self.loop.call_soon_threadsafe(self.request, n)
            return
        if self.flaw == "never-request" or self.subscription is None or self.cancelled:
            return
        if (self.completed or self.error is not None) and self.flaw != "request-after-end":
            return
        self.requested = True
        self.subscription.request(n)

    def cancel(self) -> None:
        if self.cancelled or self.subscription is None:
            return
        self.cancelled = True
        if self.completed or self.error is not None:
            return
        if self.flaw != "forget-without-cancel":
            self.subscription.cancel()


def subscriber_factory(flaw: str = "", timeout: float = 0.5) -> SubscriberFactory:
    async def create(probe: Publisher) -> SubscriberHandle:
        subscriber = RefSubscriber(flaw)
        probe.subscribe(subscriber)
        return subscriber.handle()

    return SubscriberFactory(create=create, timeout=timeout)


# ------------------------------------------------------------------ processor

PROCESSOR_FLAWS = {
    "keep-upstream": "does not cancel upstream when downstream cancels (§4.1)",
    "swallow-error": "drops an upstream error (§4.2)",
}


class RefProcessor:
    """Items through one to one, demand and cancel up, the end down (one downstream subscriber)."""

    def __init__(self, upstream: Publisher, flaw: str = ""):
        assert flaw in PROCESSOR_FLAWS or not flaw, flaw
        self.upstream, self.flaw = upstream, flaw
        self.up: Subscription | None = None
        self.down: Subscriber | None = None
        self.pending: list[int] = []

    # downstream's publisher
    def subscribe(self, subscriber: Subscriber) -> None:
        self.down = subscriber
        subscriber.on_subscribe(_Down(self))
        self.upstream.subscribe(self)

    # upstream's subscriber
    def on_subscribe(self, subscription: Subscription) -> None:
        self.up = subscription
        for n in self.pending:
            subscription.request(n)
        self.pending.clear()

    def on_next(self, item: Any) -> None:
        assert self.down is not None
        self.down.on_next(item)

    def on_error(self, error: BaseException) -> None:
        if self.flaw != "swallow-error" and self.down is not None:
            self.down.on_error(error)

    def on_complete(self) -> None:
        if self.down is not None:
            self.down.on_complete()


class _Down:
    def __init__(self, processor: RefProcessor):
        self.processor = processor

    def request(self, n: int) -> None:
        if self.processor.up is None:
            self.processor.pending.append(n)
        else:
            self.processor.up.request(n)

    def cancel(self) -> None:
        if self.processor.up is not None and self.processor.flaw != "keep-upstream":
            self.processor.up.cancel()


def processor_factory(flaw: str = "", timeout: float = 0.5) -> ProcessorFactory:
    return ProcessorFactory(create=lambda upstream: RefProcessor(upstream, flaw), timeout=timeout)
