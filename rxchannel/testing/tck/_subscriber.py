"""The subscriber rules: a subscriber of yours attached to the suite's probe publisher.

The probe records every request and cancel (and flags those made from inside
``on_complete``/``on_error``, after them, from another thread, or while another call is in
progress); the handle your factory returns says what your subscriber passed on and lets
the check ask it for demand or tell it it is no longer needed (the TCK's whitebox
"puppet"). Java's null-argument rules (§2.13's NullPointerException) have no Python
counterpart: ``None`` is an item like any other.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from ._api import RuleViolation, SubscriberFactory, SubscriberHandle
from ._probes import Env, ProbePublisher
from ._publisher import SkipCheck
from ._rules import check

__all__ = ["ProbeError", "Stage", "SubscriberEnv"]

ROLE = "subscriber"


class ProbeError(Exception):
    """The error the probe signals (§2.10)."""


@dataclass
class Stage:
    """A probe publisher with a subscriber of yours on it."""

    env: SubscriberEnv
    probe: ProbePublisher
    handle: SubscriberHandle

    async def demand(self, at_least: int, rule: str) -> int:
        """Demand of ``at_least`` in all (asked for through the handle when it can be);
        a subscriber that sets its own demand may grant less: what it granted is returned."""
        missing = at_least - self.probe.requested
        if missing > 0 and self.handle.request is not None:
            self.handle.request(missing)
            await self.probe.expect_request(at_least, rule)
        else:
            await self.probe.expect_request(1, rule)
        return self.probe.requested

    async def received(self, count: int, rule: str) -> None:
        await self.env.wait_for(
            lambda: len(self.handle.received()) >= count,
            rule,
            f"the subscriber to pass on {count} item(s) (it passed on {len(self.handle.received())})",
        )

    async def pass_one(self, rule: str) -> None:
        """Demand of one, one item sent: the subscriber passes it on."""
        await self.demand(1, rule)
        self.probe.send_next()
        await self.received(1, rule)

    async def completed(self, rule: str) -> None:
        await self.env.wait_for(self.handle.completed, rule, "the subscriber to pass on on_complete")

    async def failed(self, rule: str) -> None:
        await self.env.wait_for(lambda: self.handle.error() is not None, rule, "the subscriber to pass on on_error")


class SubscriberEnv(Env):
    """A subscriber check's environment: the factory, and the stages it set up."""

    def __init__(self, factory: SubscriberFactory):
        super().__init__(factory.settle, factory.timeout)
        self.factory = factory
        self.stages: list[Stage] = []

    async def stage(self, rule: str) -> Stage:
        """A new probe, your subscriber subscribed to it."""
        probe = ProbePublisher(self, self.factory.item)
        handle = await self.factory.create(probe)
        stage = Stage(self, probe, handle)
        self.stages.append(stage)
        await probe.subscribed(rule)
        return stage

    async def cleanup(self) -> None:
        """End every probe's stream still open, so the subscriber releases what it holds."""
        for stage in self.stages:
            probe = stage.probe
            if probe.subscriber is not None and probe.terminated is None and not probe.cancelled:
                probe.send_complete()


# ------------------------------------------------------------------ §2 Subscriber
# (§2.2 and 2.11 no test can check: ._rules lists them, with the reasons)


@check("2.1", "signals_demand_before_receiving", ROLE)
async def spec_2_1(env: SubscriberEnv) -> None:
    stage = await env.stage("2.1")
    await stage.pass_one("2.1")


@check("2.3", "no_subscription_call_from_on_complete_or_on_error", ROLE)
async def spec_2_3(env: SubscriberEnv) -> None:
    """The probe flags any request or cancel made while it is inside on_complete or on_error."""
    stage = await env.stage("2.3")
    await stage.pass_one("2.3")
    stage.probe.send_complete()
    await stage.completed("2.3")
    failing = await env.stage("2.3")
    await failing.demand(1, "2.3")
    failing.probe.send_error(ProbeError("the probe failed"))
    await failing.failed("2.3")
    await env.settle()


@check("2.4", "after_a_terminal_signal_the_subscription_is_cancelled", ROLE)
async def spec_2_4(env: SubscriberEnv) -> None:
    """After on_complete (and on_error), asked for more, the subscriber calls nothing on
    its subscription: the probe flags any request or cancel after a terminal signal."""
    for end in ("on_complete", "on_error"):
        stage = await env.stage("2.4")
        await stage.demand(1, "2.4")
        if end == "on_complete":
            stage.probe.send_complete()
            await stage.completed("2.4")
        else:
            stage.probe.send_error(ProbeError("the probe failed"))
            await stage.failed("2.4")
        await env.settle()
        if stage.handle.request is not None:
            stage.handle.request(1)
        if stage.handle.cancel is not None:
            stage.handle.cancel()
        await env.settle()


@check("2.5", "a_second_on_subscribe_is_cancelled", ROLE)
async def spec_2_5(env: SubscriberEnv) -> None:
    stage = await env.stage("2.5")
    if stage.handle.subscriber is None:
        raise SkipCheck("the handle gives no subscriber to call on_subscribe on")
    second = _SecondSubscription()
    stage.handle.subscriber.on_subscribe(second)
    await env.wait_for(lambda: second.cancelled, "2.5", "the second subscription cancelled")
    if second.requested:
        raise RuleViolation("2.5", f"the subscriber requested {second.requested} from its second subscription")


class _SecondSubscription:
    def __init__(self) -> None:
        self.cancelled = False
        self.requested = 0

    def request(self, n: int) -> None:
        self.requested += n

    def cancel(self) -> None:
        self.cancelled = True


@check("2.6", "cancels_when_no_longer_needed", ROLE)
async def spec_2_6(env: SubscriberEnv) -> None:
    stage = await env.stage("2.6")
    if stage.handle.cancel is None:
        raise SkipCheck("the handle cannot tell the subscriber it is no longer needed")
    await stage.pass_one("2.6")
    stage.handle.cancel()
    await stage.probe.expect_cancel("2.6")


@check("2.7", "calls_the_subscription_serially_from_its_own_context", ROLE)
async def spec_2_7(env: SubscriberEnv) -> None:
    """Requests asked for from four threads at once (when the handle allows it) reach the
    probe one at a time, on the thread its signals come from."""
    stage = await env.stage("2.7")
    request = stage.handle.request
    if request is None:
        raise SkipCheck("the subscriber sets its own demand: nothing to ask from other threads")
    before = stage.probe.requested
    if stage.handle.request_from_threads:
        start = threading.Barrier(4)

        def from_thread() -> None:
            start.wait()
            request(1)

        threads = [threading.Thread(target=from_thread) for _ in range(4)]
        for thread in threads:
            thread.start()
        await env.wait_for(lambda: not any(t.is_alive() for t in threads), "2.7", "four threads asking for demand")
    else:
        for _ in range(4):
            request(1)
    await stage.probe.expect_request(before + 4, "2.7")
    if stage.handle.cancel is not None:
        stage.handle.cancel()
    await env.settle()


@check("2.8", "takes_on_next_after_it_cancelled", ROLE)
async def spec_2_8(env: SubscriberEnv) -> None:
    """Cancelled with an item still requested, the subscriber takes that item when it comes
    (its on_next returns normally), and asking it for more does not reopen anything."""
    stage = await env.stage("2.8")
    if stage.handle.cancel is None:
        raise SkipCheck("the handle cannot tell the subscriber it is no longer needed")
    if await stage.demand(2, "2.8") < 2:
        raise SkipCheck("the subscriber grants one item at a time: none is pending when it cancels")
    stage.probe.send_next()
    await stage.received(1, "2.8")
    stage.handle.cancel()
    await stage.probe.expect_cancel("2.8")
    stage.probe.blame = "2.8"
    stage.probe.send_next()  # requested before the cancel: a publisher may still send it
    if stage.handle.request is not None:
        stage.handle.request(1)
        stage.handle.request(1)
    await env.settle()


@check("2.9", "takes_on_complete_with_or_without_a_request", ROLE)
async def spec_2_9(env: SubscriberEnv) -> None:
    requested = await env.stage("2.9")
    await requested.demand(1, "2.9")
    requested.probe.blame = "2.9"
    requested.probe.send_complete()
    await requested.completed("2.9")
    unrequested = await env.stage("2.9")
    unrequested.probe.blame = "2.9"
    unrequested.probe.send_complete()  # at once: before any request the subscriber did not make by itself
    await unrequested.completed("2.9")


@check("2.10", "takes_on_error_with_or_without_a_request", ROLE)
async def spec_2_10(env: SubscriberEnv) -> None:
    requested = await env.stage("2.10")
    await requested.demand(1, "2.10")
    requested.probe.blame = "2.10"
    requested.probe.send_error(ProbeError("the probe failed after a request"))
    await requested.failed("2.10")
    unrequested = await env.stage("2.10")
    unrequested.probe.blame = "2.10"
    unrequested.probe.send_error(ProbeError("the probe failed at once"))
    await unrequested.failed("2.10")


@check("2.13", "signal_methods_return_normally", ROLE)
async def spec_2_13(env: SubscriberEnv) -> None:
    """Items, then on_complete; items, then on_error: every signal method returns normally
    (the probe flags one that raises)."""
    stage = await env.stage("2.13")
    granted = await stage.demand(3, "2.13")
    stage.probe.send_next(min(granted, 3))
    await stage.received(min(granted, 3), "2.13")
    stage.probe.send_complete()
    await stage.completed("2.13")
    failing = await env.stage("2.13")
    await failing.pass_one("2.13")
    failing.probe.send_error(ProbeError("the probe failed"))
    await failing.failed("2.13")
