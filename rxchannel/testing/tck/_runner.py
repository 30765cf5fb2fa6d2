"""Running the checks without pytest: one check at a time, or a whole role into a report."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from ._api import ProcessorFactory, PublisherFactory, RuleViolation, SubscriberFactory
from ._probes import Env
from ._processor import ProcessorEnv
from ._publisher import PublisherEnv, SkipCheck
from ._rules import Check, checks_for
from ._subscriber import SubscriberEnv
from ._subscription import spec_3_2 as _registered  # noqa: F401 - importing registers the §3 checks

__all__ = ["Outcome", "Report", "run_check", "verify_processor", "verify_publisher", "verify_subscriber"]

Factory = PublisherFactory | SubscriberFactory | ProcessorFactory


@dataclass(frozen=True)
class Outcome:
    """What one check found.

    Attributes:
        check: the check.
        status: ``passed``, ``failed`` (a required check), ``reported`` (an optional one
            that did not pass), ``skipped`` (does not apply to the factory) or
            ``untestable``.
        message: why it failed, was skipped or cannot be tested.
        rule: the rule the failure was about (a check fails with the first violation it
            saw, of any rule); empty when it passed.
    """

    check: Check
    status: str
    message: str = ""
    rule: str = ""

    @property
    def ok(self) -> bool:
        return self.status != "failed"


def _env(factory: Factory) -> Env:
    if isinstance(factory, PublisherFactory):
        return PublisherEnv(factory)
    if isinstance(factory, SubscriberFactory):
        return SubscriberEnv(factory)
    return ProcessorEnv(factory)


async def run_check(check: Check, factory: Factory) -> Outcome:
    """Run one check against ``factory`` (on the running event loop)."""
    if check.body is None:
        return Outcome(check, "untestable", check.reason)
    env: Any = _env(factory)
    if check.level == "optional":
        env.timeout = env.timeout / 10  # what a MAY allows may never come: do not wait long for it
    failure: RuleViolation | None = None
    try:
        async with asyncio.timeout(max(30.0, 10 * env.timeout)):
            await check.body(env)
            env.verify()
    except SkipCheck as exc:
        return Outcome(check, "skipped", str(exc))
    except RuleViolation as exc:
        failure = exc
    except TimeoutError:
        failure = RuleViolation(check.rule, "the check did not finish (a wait without a timeout hung)")
    except AssertionError as exc:
        failure = RuleViolation(check.rule, str(exc))
    except Exception as exc:
        failure = RuleViolation(check.rule, f"the check failed with {exc!r}")
    finally:
        try:
            await env.cleanup()
            await env.settle()
        except Exception as exc:
            failure = failure or RuleViolation(check.rule, f"cleaning up after the check failed with {exc!r}")
    if failure is None:
        return Outcome(check, "passed")
    status = "reported" if check.level == "optional" else "failed"
    return Outcome(check, status, str(failure), failure.rule)


@dataclass(frozen=True)
class Report:
    """Every check of one role against one factory."""

    role: str
    outcomes: tuple[Outcome, ...]

    @property
    def ok(self) -> bool:
        """No required check failed."""
        return all(o.ok for o in self.outcomes)

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    def __str__(self) -> str:
        lines = [f"Reactive Streams rules, {self.role}:"]
        for outcome in self.outcomes:
            check = outcome.check
            line = f"  {outcome.status:<10} §{check.rule:<5} {check.test_name}"
            if outcome.message:
                line += f"\n{'':14}{outcome.message}"
            lines.append(line)
        counts = ", ".join(
            f"{self.count(s)} {s}"
            for s in ("passed", "failed", "reported", "skipped", "untestable")
            if self.count(s) or s == "failed"
        )
        lines.append(f"  {counts}")
        return "\n".join(lines)


async def _verify(role: str, factory: Factory) -> Report:
    return Report(role, tuple([await run_check(check, factory) for check in checks_for(role)]))


async def verify_publisher(factory: PublisherFactory) -> Report:
    """Every publisher check against ``factory``, one after another."""
    return await _verify("publisher", factory)


async def verify_subscriber(factory: SubscriberFactory) -> Report:
    """Every subscriber check against ``factory``, one after another."""
    return await _verify("subscriber", factory)


async def verify_processor(factory: ProcessorFactory) -> Report:
    """Every processor check against ``factory``, one after another."""
    return await _verify("processor", factory)
