"""The 43 rules of the Reactive Streams specification (1.0.4), and the checks that test them.

Rules are paraphrased, not quoted: the specification (README.md of
reactive-streams/reactive-streams-jvm) is the authority. Each check is one test, named
``test_spec_<rule>_<what it checks>``, in one of three roles: the ``publisher`` rules run
on a publisher (its subscriptions included), the ``subscriber`` rules on a subscriber
attached to the suite's probe publisher, the ``processor`` rules on a stage between a probe
and a recording subscriber. A check is ``required`` (it must pass), ``optional`` (a MAY or
SHOULD of the specification, or a stricter reading of a MUST: reported, never failing the
run) or ``untestable`` (listed with the reason; the test is skipped).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["CHECKS", "RULES", "Check", "Rule", "check", "checks_for", "untestable"]


@dataclass(frozen=True)
class Rule:
    """One numbered rule: ``id`` ("3.9"), the specification's keyword, and what it asks."""

    id: str
    keyword: str
    text: str


RULES: dict[str, Rule] = {
    rule.id: rule
    for rule in [
        Rule("1.1", "MUST", "A publisher never signals more on_next than its subscriber has requested."),
        Rule("1.2", "MAY", "A publisher may signal fewer items than requested and end with on_complete or on_error."),
        Rule("1.3", "MUST", "Signals to a subscriber are serial: never two at once."),
        Rule("1.4", "MUST", "A publisher that fails signals on_error."),
        Rule("1.5", "MUST", "A publisher that ends successfully (a finite stream) signals on_complete."),
        Rule("1.6", "MUST", "After on_error or on_complete, the subscription counts as cancelled."),
        Rule("1.7", "MUST", "After a terminal signal (on_error, on_complete), no signal follows."),
        Rule("1.8", "MUST", "Once its subscription is cancelled, a subscriber eventually stops being signalled."),
        Rule(
            "1.9",
            "MUST",
            "subscribe calls on_subscribe before any other signal and returns normally; it refuses a "
            "subscriber only with on_error, after on_subscribe.",
        ),
        Rule("1.10", "MAY", "subscribe may be called any number of times, with a different subscriber each time."),
        Rule("1.11", "MAY", "A publisher may serve several subscribers, and chooses unicast or multicast."),
        Rule("2.1", "MUST", "A subscriber signals demand with request(n) to receive on_next."),
        Rule(
            "2.2",
            "SHOULD",
            "A subscriber whose processing could slow its publisher dispatches signals asynchronously.",
        ),
        Rule("2.3", "MUST NOT", "on_complete and on_error do not call the subscription or the publisher."),
        Rule("2.4", "MUST", "After on_complete or on_error, a subscriber takes its subscription as cancelled."),
        Rule("2.5", "MUST", "A subscriber that already has an active subscription cancels a second one it is given."),
        Rule("2.6", "MUST", "A subscriber cancels its subscription once it no longer needs it."),
        Rule("2.7", "MUST", "A subscriber calls request and cancel serially."),
        Rule(
            "2.8",
            "MUST",
            "A subscriber is prepared for on_next after it cancelled, while requested items are pending.",
        ),
        Rule("2.9", "MUST", "A subscriber is prepared for on_complete with or without a request before it."),
        Rule("2.10", "MUST", "A subscriber is prepared for on_error with or without a request before it."),
        Rule("2.11", "MUST", "A subscriber's signal methods happen-before the processing of those signals."),
        Rule("2.12", "MUST", "on_subscribe is called at most once for a given subscriber."),
        Rule(
            "2.13",
            "MUST",
            "A subscriber's signal methods return normally; if one raises, its subscription counts as "
            "cancelled and the caller reports the error.",
        ),
        Rule("3.1", "MUST", "request and cancel are called only from within the subscriber's context."),
        Rule(
            "3.2",
            "MUST",
            "A subscription lets its subscriber call request synchronously from on_next and on_subscribe.",
        ),
        Rule("3.3", "MUST", "request bounds the synchronous recursion between publisher and subscriber."),
        Rule("3.4", "SHOULD", "request returns in a timely manner."),
        Rule("3.5", "MUST", "cancel returns in a timely manner, is idempotent and thread-safe."),
        Rule("3.6", "MUST", "After cancel, request is a no-op."),
        Rule("3.7", "MUST", "After cancel, cancel is a no-op."),
        Rule("3.8", "MUST", "While not cancelled, request(n) adds n to the items to be produced."),
        Rule("3.9", "MUST", "While not cancelled, request(n) with n <= 0 signals on_error (an illegal argument)."),
        Rule("3.10", "MAY", "While not cancelled, request may call on_next synchronously."),
        Rule("3.11", "MAY", "While not cancelled, request may call on_complete or on_error synchronously."),
        Rule("3.12", "MUST", "While not cancelled, cancel asks the publisher to eventually stop signalling."),
        Rule("3.13", "MUST", "While not cancelled, cancel asks the publisher to eventually drop its subscriber."),
        Rule("3.14", "MAY", "cancel may shut a stateful publisher down when no other subscription remains."),
        Rule("3.15", "MUST", "cancel returns normally."),
        Rule("3.16", "MUST", "request returns normally."),
        Rule(
            "3.17",
            "MUST",
            "A subscription supports any number of request calls and a demand up to 2^63-1, which it may "
            "treat as unbounded.",
        ),
        Rule("4.1", "MUST", "A processor is a subscriber and a publisher, and obeys both contracts."),
        Rule(
            "4.2",
            "MAY",
            "A processor may recover from on_error (then its subscription counts as cancelled); otherwise it "
            "passes on_error on at once.",
        ),
    ]
}

Body = Callable[[Any], Awaitable[None]]


@dataclass(frozen=True)
class Check:
    """One rule test: ``test_<name>`` in its role's suite.

    Attributes:
        rule: the rule it tests.
        name: ``spec_<rule>_<what>``.
        role: ``publisher``, ``subscriber`` or ``processor``.
        level: ``required``, ``optional`` or ``untestable``.
        body: the test (None when untestable).
        reason: why it is optional or untestable.
    """

    rule: str
    name: str
    role: str
    level: str
    body: Body | None
    reason: str = ""

    @property
    def test_name(self) -> str:
        return f"test_{self.name}"


CHECKS: list[Check] = []


def check(rule: str, what: str, role: str, level: str = "required", reason: str = "") -> Callable[[Body], Body]:
    """Register the decorated coroutine function as the test of ``rule`` in ``role``."""

    def register(body: Body) -> Body:
        name = f"spec_{rule.replace('.', '_')}_{what}"
        assert rule in RULES and all(c.name != name or c.role != role for c in CHECKS), name
        CHECKS.append(Check(rule, name, role, level, body, reason))
        return body

    return register


def untestable(rule: str, what: str, role: str, reason: str) -> None:
    """List ``rule`` as one that no test can check, with the reason."""
    name = f"spec_{rule.replace('.', '_')}_{what}"
    CHECKS.append(Check(rule, name, role, "untestable", None, reason))


def checks_for(role: str) -> list[Check]:
    """The checks of ``role``, in rule order."""
    return sorted((c for c in CHECKS if c.role == role), key=lambda c: (_order(c.rule), c.name))


def _order(rule: str) -> tuple[int, int]:
    major, minor = rule.split(".")
    return int(major), int(minor)
