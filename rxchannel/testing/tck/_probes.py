"""The suite's two instruments: a subscriber that records (and checks) every signal it is
sent, and a publisher that records (and checks) every request and cancel it gets.

Both check the rules that can be seen at the moment a signal or a call happens (more
items than requested, a signal after the end, two threads inside at once ...) and keep
what they saw as :class:`RuleViolation`\\ s; a rule test fails with the first one when it
ends, whichever rule it was about (the TCK's ``verifyNoAsyncErrors``).

Signals may come from any thread (a publisher on a thread pool): both record under a
lock and wake the event loop that waits on them thread-safely.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from ._api import MAX_DEMAND, Publisher, RuleViolation, Subscriber, Subscription

__all__ = ["Env", "ManualSubscriber", "ProbePublisher"]


class Env:
    """What one rule test runs with: the loop, the waits and every probe it made."""

    def __init__(self, settle: Callable[[], Awaitable[None]], timeout: float):
        self.loop = asyncio.get_running_loop()
        self.loop_thread = threading.get_ident()
        self._settle = settle
        self.timeout = timeout
        self.violations: list[RuleViolation] = []
        self._changed = asyncio.Event()

    def flag(self, rule: str, message: str) -> None:
        """Record a violation seen at the moment it happened (any thread)."""
        with _LOCK:
            self.violations.append(RuleViolation(rule, message))
        self.wake()

    def wake(self) -> None:
        if threading.get_ident() == self.loop_thread:
            self._changed.set()
        elif not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._changed.set)

    async def settle(self) -> None:
        """Wait until what the target does unprompted has happened."""
        await self._settle()

    async def wait_for(self, condition: Callable[[], bool], rule: str, what: str, timeout: float | None = None) -> None:
        """Wait until ``condition()`` holds, re-checked at every signal.

        Raises:
            RuleViolation: a violation was seen meanwhile (it is raised instead), or the
                condition did not hold within the timeout (``what`` says what was expected).
        """
        deadline = self.loop.time() + (self.timeout if timeout is None else timeout)
        while True:
            self._changed.clear()
            self.verify()
            if condition():
                return
            left = deadline - self.loop.time()
            if left <= 0:
                raise RuleViolation(rule, f"{what}: nothing within {self.timeout:g} s")
            with contextlib.suppress(TimeoutError):  # re-check: a condition may change without a signal
                await asyncio.wait_for(self._changed.wait(), min(left, 0.05))

    def verify(self) -> None:
        """Raise the first violation seen so far."""
        if self.violations:
            raise self.violations[0]

    async def cleanup(self) -> None:
        """End what the check left open (each role knows what that is)."""


_LOCK = threading.Lock()


class ManualSubscriber:
    """A subscriber the test drives by hand, recording every signal in order.

    Checked as signals arrive: §1.9 (``on_subscribe`` first), §2.12 (only once), §1.1 (no
    more ``on_next`` than requested), §1.7 (nothing after ``on_error``/``on_complete``),
    §1.3 (no two threads inside a signal at once), §3.3 (``on_next`` -> ``request``
    recursion within ``max_depth``).

    Args:
        request_on_subscribe: requested from inside ``on_subscribe`` (§3.2).
        request_on_next: requested from inside every ``on_next`` (§3.2, §3.3).
        raise_on_next: raised from ``on_next`` (a subscriber that breaks §2.13).
    """

    def __init__(
        self,
        env: Env,
        *,
        name: str = "subscriber",
        request_on_subscribe: list[int] | None = None,
        request_on_next: int = 0,
        raise_on_next: BaseException | None = None,
        max_depth: int = 1,
    ):
        self.env = env
        self.name = name
        self.subscription: Subscription | None = None
        self.subscribe_count = 0
        self.items: list[Any] = []
        self.signals: list[str] = []
        self.error: BaseException | None = None
        self.completed = False
        self.requested = 0
        self.requested_after_cancel = 0  # requests that must be no-ops (§3.6)
        self.cancelled = False
        self._request_on_subscribe = request_on_subscribe or []
        self._request_on_next = request_on_next
        self._raise_on_next = raise_on_next
        self._max_depth = max_depth
        self._inside: int | None = None  # the thread inside a signal now
        self._nesting = 0  # how deep that thread is (a synchronous publisher nests signals)
        self._ended: str | None = None
        self._next_depth = threading.local()

    # ------------------------------------------------------------ the signals

    def _enter(self, signal: str) -> None:
        me = threading.get_ident()
        with _LOCK:
            clash = self._inside not in (None, me)
            if not clash:
                self._inside = me
                self._nesting += 1
        if clash:
            self.env.flag("1.3", f"{self.name}: {signal} signalled while another thread was inside a signal")
        self.signals.append(signal)
        if signal != "on_subscribe" and self.subscribe_count == 0:
            self.env.flag("1.9", f"{self.name}: {signal} before on_subscribe")
        if signal != "on_subscribe" and self._ended is not None:
            self.env.flag("1.7", f"{self.name}: {signal} after {self._ended}")
        if signal in ("on_error", "on_complete") and self._ended is None:
            self._ended = signal

    def _leave(self) -> None:
        with _LOCK:
            if self._inside == threading.get_ident():
                self._nesting -= 1
                if self._nesting == 0:
                    self._inside = None
        self.env.wake()

    def on_subscribe(self, subscription: Subscription) -> None:
        self._enter("on_subscribe")
        self.subscribe_count += 1
        if self.subscribe_count > 1:
            self.env.flag("2.12", f"{self.name}: on_subscribe called {self.subscribe_count} times")
        else:
            self.subscription = subscription
        self._leave()
        if self.subscribe_count == 1:
            for n in self._request_on_subscribe:
                self.request(n)

    def on_next(self, item: Any) -> None:
        depth = getattr(self._next_depth, "n", 0) + 1
        self._next_depth.n = depth
        try:
            self._enter("on_next")
            self.items.append(item)
            if self.requested < MAX_DEMAND and len(self.items) > self.requested:
                if self.requested_after_cancel:
                    what = "for a request made after cancel"
                    self.env.flag("3.6", f"{self.name}: on_next #{len(self.items)} {what}")
                else:
                    what = f"with only {self.requested} requested"
                    self.env.flag("1.1", f"{self.name}: on_next #{len(self.items)} {what}")
            if depth > self._max_depth:
                self.env.flag(
                    "3.3", f"{self.name}: on_next nested {depth} deep inside request (bound {self._max_depth})"
                )
            if self._raise_on_next is not None:
                raise self._raise_on_next
            if self._request_on_next and not self.cancelled:
                self.request(self._request_on_next)
        finally:
            self._next_depth.n = depth - 1
            self._leave()

    def on_error(self, error: BaseException) -> None:
        self._enter("on_error")
        if self.error is None:
            self.error = error
        self._leave()

    def on_complete(self) -> None:
        self._enter("on_complete")
        self.completed = True
        self._leave()

    # ------------------------------------------------------------ what the test does

    def request(self, n: int) -> None:
        """Ask for ``n`` more (n <= 0 too: §3.9 asks what the publisher does with it)."""
        assert self.subscription is not None, f"{self.name}: request before on_subscribe"
        if n > 0 and not self.cancelled:
            self.requested = min(MAX_DEMAND, self.requested + n)
        elif n > 0:
            self.requested_after_cancel += n
        self.subscription.request(n)

    def cancel(self) -> None:
        assert self.subscription is not None, f"{self.name}: cancel before on_subscribe"
        self.cancelled = True
        self.subscription.cancel()

    @property
    def terminated(self) -> bool:
        return self.completed or self.error is not None

    async def subscribed(self, rule: str = "1.9") -> None:
        await self.env.wait_for(lambda: self.subscribe_count > 0, rule, f"{self.name}: on_subscribe")

    async def expect_items(self, total: int, rule: str) -> list[Any]:
        """Wait until ``total`` items have arrived in all (checking §1.1 meanwhile)."""
        await self.env.wait_for(
            lambda: len(self.items) >= total or self.terminated,
            rule,
            f"{self.name}: {total} item(s) expected, {len(self.items)} arrived",
        )
        if len(self.items) < total:
            ended = "an error" if self.error is not None else "completion"
            raise RuleViolation(rule, f"{self.name}: {ended} after {len(self.items)} of {total} expected items")
        return self.items[:total]

    async def expect_complete(self, rule: str) -> None:
        await self.env.wait_for(lambda: self.terminated, rule, f"{self.name}: on_complete expected")
        if self.error is not None:
            raise RuleViolation(rule, f"{self.name}: on_error({self.error!r}) where on_complete was expected")

    async def expect_error(self, rule: str) -> BaseException:
        await self.env.wait_for(lambda: self.terminated, rule, f"{self.name}: on_error expected")
        if self.error is None:
            raise RuleViolation(rule, f"{self.name}: on_complete where on_error was expected")
        return self.error

    async def expect_none(self, rule: str, when: str, since: int | None = None) -> None:
        """Wait until the publisher is quiet; nothing may have arrived meanwhile (or since
        ``since`` signals had arrived)."""
        before = len(self.signals) if since is None else since
        await self.env.settle()
        self.env.verify()
        if len(self.signals) > before:
            raise RuleViolation(rule, f"{self.name}: {', '.join(self.signals[before:])} {when}")


class _ProbeSubscription:
    def __init__(self, probe: ProbePublisher):
        self._probe = probe

    def request(self, n: int) -> None:
        self._probe._call("request", n)

    def cancel(self) -> None:
        self._probe._call("cancel", 0)


class ProbePublisher:
    """A publisher the test drives by hand: it sends what the test says and records every
    request and cancel its subscriber makes.

    Checked as calls arrive: §2.3 (no call from inside ``on_complete``/``on_error``), §2.4
    (none after them), §2.7 (calls one at a time, from the thread the signals come from),
    §2.13 (signal methods return normally).
    """

    def __init__(self, env: Env, item: Callable[[int], Any]):
        self.env = env
        self._item = item
        self.subscriber: Subscriber | None = None
        self.subscriptions = 0
        self.requested = 0
        self.requests: list[int] = []
        self.sent = 0
        self.cancelled = False
        self.terminated: str | None = None
        self._in_terminal = False
        self._busy = threading.Lock()
        #: the rule a signal method that raises breaks (a check about one kind of signal names its own)
        self.blame = "2.13"

    # ------------------------------------------------------------ Publisher

    def subscribe(self, subscriber: Subscriber) -> None:
        self.subscriptions += 1
        if self.subscriptions > 1:
            subscriber.on_subscribe(_ProbeSubscription(self))
            subscriber.on_error(RuntimeError("the probe publisher serves one subscriber"))
            return
        self.subscriber = subscriber
        self._signal("on_subscribe", lambda: subscriber.on_subscribe(_ProbeSubscription(self)))
        self.env.wake()

    def _call(self, kind: str, n: int) -> None:
        alone = self._busy.acquire(blocking=False)
        if not alone:
            self.env.flag("2.7", f"{kind}({n}) while another call to the subscription was in progress")
        try:
            if threading.get_ident() != self.env.loop_thread:
                self.env.flag("2.7", f"{kind}({n}) from a thread other than the one its signals come from")
            if self._in_terminal:
                self.env.flag("2.3", f"{kind}({n}) from inside {self.terminated}")
            elif self.terminated is not None:
                self.env.flag("2.4", f"{kind}({n}) after {self.terminated}: the subscription was over")
            if kind == "request":
                self.requests.append(n)
                if n > 0:
                    self.requested = min(MAX_DEMAND, self.requested + n)
            else:
                self.cancelled = True
        finally:
            if alone:
                self._busy.release()
        self.env.wake()

    # ------------------------------------------------------------ what the test does

    @property
    def outstanding(self) -> int:
        return self.requested - self.sent

    def _signal(self, name: str, call: Callable[[], None]) -> None:
        try:
            call()
        except Exception as exc:
            self.env.flag(self.blame, f"the subscriber's {name} raised {exc!r} instead of returning normally")

    def send_next(self, count: int = 1) -> None:
        """Send ``count`` items (never past the demand: that is the publisher's rule, not the subscriber's)."""
        assert self.subscriber is not None, "nothing subscribed to the probe"
        subscriber = self.subscriber
        for _ in range(count):
            assert self.outstanding > 0, f"the probe has no demand to send item #{self.sent + 1}"
            item = self._item(self.sent)
            self.sent += 1
            self._signal("on_next", lambda item=item: subscriber.on_next(item))  # type: ignore[misc]

    def send_complete(self) -> None:
        self._terminal("on_complete", lambda s: s.on_complete())

    def send_error(self, error: BaseException) -> None:
        self._terminal("on_error", lambda s: s.on_error(error))

    def _terminal(self, name: str, call: Callable[[Subscriber], None]) -> None:
        assert self.subscriber is not None, "nothing subscribed to the probe"
        subscriber = self.subscriber
        self.terminated = name
        self._in_terminal = True
        try:
            self._signal(name, lambda: call(subscriber))
        finally:
            self._in_terminal = False

    async def subscribed(self, rule: str) -> None:
        await self.env.wait_for(lambda: self.subscriber is not None, rule, "the subscriber never subscribed")

    async def expect_request(self, total: int, rule: str) -> None:
        """Wait until ``total`` items have been requested in all."""
        await self.env.wait_for(
            lambda: self.requested >= total, rule, f"a request for {total} item(s) in all (got {self.requested})"
        )

    async def expect_cancel(self, rule: str) -> None:
        await self.env.wait_for(lambda: self.cancelled, rule, "a cancel")


def subscribe(publisher: Publisher, subscriber: ManualSubscriber) -> None:
    """``publisher.subscribe(subscriber)``; §1.9: it must return normally."""
    try:
        publisher.subscribe(subscriber)
    except Exception as exc:
        raise RuleViolation("1.9", f"subscribe raised {exc!r} instead of returning normally") from exc
