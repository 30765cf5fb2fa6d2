"""The processor rules: a stage of yours between the suite's probe publisher (upstream) and
a recording subscriber (downstream).

A processor is held to both contracts at once (§4.1): the recording subscriber checks what
it signals downstream, the probe what it asks upstream; the publisher and subscriber
suites can also be run on each face alone.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Any

from ._api import ProcessorFactory, Publisher
from ._probes import Env, ManualSubscriber, ProbePublisher, subscribe
from ._rules import check

__all__ = ["ProcessorEnv"]

ROLE = "processor"


class ProcessorEnv(Env):
    """A processor check's environment: the factory, and the stages it set up."""

    def __init__(self, factory: ProcessorFactory):
        super().__init__(factory.settle, factory.timeout)
        self.factory = factory
        self.stages: list[tuple[ProbePublisher, ManualSubscriber]] = []

    async def stage(self, name: str) -> tuple[ProbePublisher, ManualSubscriber]:
        """A probe upstream, your stage on it, a recording subscriber downstream."""
        probe = ProbePublisher(self, self.factory.item)
        made: Any = self.factory.create(probe)
        publisher: Publisher = await made if inspect.isawaitable(made) else made
        subscriber = ManualSubscriber(self, name=name)
        self.stages.append((probe, subscriber))
        subscribe(publisher, subscriber)
        await subscriber.subscribed()
        return probe, subscriber

    async def flow(self, probe: ProbePublisher, subscriber: ManualSubscriber, count: int, rule: str) -> None:
        """Send items upstream as the stage asks for them until ``count`` reached downstream."""
        while len(subscriber.items) < count:
            await self.wait_for(
                lambda: len(subscriber.items) >= count or (probe.subscriber is not None and probe.outstanding > 0),
                rule,
                f"demand upstream for item #{probe.sent + 1} while {count} are wanted downstream "
                f"({len(subscriber.items)} arrived)",
            )
            if len(subscriber.items) < count and probe.sent < count:
                probe.send_next()
            elif len(subscriber.items) < count:
                await subscriber.expect_items(count, rule)

    async def cleanup(self) -> None:
        for probe, subscriber in self.stages:
            if subscriber.subscription is not None and not subscriber.cancelled and not subscriber.terminated:
                with contextlib.suppress(Exception):  # a failing cancel is the checks' business, not the cleanup's
                    subscriber.cancel()
            if probe.subscriber is not None and probe.terminated is None and not probe.cancelled:
                probe.send_complete()


@check("4.1", "a_processor_obeys_both_contracts", ROLE)
async def spec_4_1(env: ProcessorEnv) -> None:
    """Downstream demand reaches upstream, items flow only as far as the downstream asked,
    the end flows down, and a downstream cancel reaches upstream."""
    probe, subscriber = await env.stage("downstream")
    subscriber.request(2)
    await probe.subscribed("4.1")
    await env.flow(probe, subscriber, 2, "4.1")
    await subscriber.expect_none("4.1", "past the two items requested downstream")
    subscriber.request(3)
    await env.flow(probe, subscriber, 5, "4.1")
    probe.send_complete()
    await subscriber.expect_complete("4.1")
    probe, subscriber = await env.stage("downstream that cancels")
    subscriber.request(1)
    await probe.subscribed("4.1")
    await env.flow(probe, subscriber, 1, "4.1")
    subscriber.cancel()
    await probe.expect_cancel("4.1")


@check("4.2", "an_upstream_error_is_passed_on_or_recovered", ROLE)
async def spec_4_2(env: ProcessorEnv) -> None:
    """An error upstream reaches downstream at once, unless the stage recovers from it
    (then it asks nothing more upstream: the probe flags any call after the error)."""
    probe, subscriber = await env.stage("downstream")
    subscriber.request(2)
    await probe.subscribed("4.2")
    await env.flow(probe, subscriber, 1, "4.2")
    probe.send_error(RuntimeError("upstream failed"))
    if env.factory.recovers:
        await env.settle()
    else:
        await subscriber.expect_error("4.2")
