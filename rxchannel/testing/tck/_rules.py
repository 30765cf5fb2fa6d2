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

import re
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


#: The rules: number, keyword, what it asks.
_TABLE = """
1.1   MUST      A publisher never signals more on_next than its subscriber has requested.
1.2   MAY       A publisher may signal fewer items than requested and end with on_complete or on_error.
1.3   MUST      Signals to a subscriber are serial: never two at once.
1.4   MUST      A publisher that fails signals on_error.
1.5   MUST      A publisher that ends successfully (a finite stream) signals on_complete.
1.6   MUST      After on_error or on_complete, the subscription counts as cancelled.
1.7   MUST      After a terminal signal (on_error, on_complete), no signal follows.
1.8   MUST      Once its subscription is cancelled, a subscriber eventually stops being signalled.
1.9   MUST      subscribe calls on_subscribe before any other signal and returns normally; it refuses a subscriber only
                with on_error, after on_subscribe.
1.10  MAY       subscribe may be called any number of times, with a different subscriber each time.
1.11  MAY       A publisher may serve several subscribers, and chooses unicast or multicast.
2.1   MUST      A subscriber signals demand with request(n) to receive on_next.
2.2   SHOULD    A subscriber whose processing could slow its publisher dispatches signals asynchronously.
2.3   MUST NOT  on_complete and on_error do not call the subscription or the publisher.
2.4   MUST      After on_complete or on_error, a subscriber takes its subscription as cancelled.
2.5   MUST      A subscriber that already has an active subscription cancels a second one it is given.
2.6   MUST      A subscriber cancels its subscription once it no longer needs it.
2.7   MUST      A subscriber calls request and cancel serially.
2.8   MUST      A subscriber is prepared for on_next after it cancelled, while requested items are pending.
2.9   MUST      A subscriber is prepared for on_complete with or without a request before it.
2.10  MUST      A subscriber is prepared for on_error with or without a request before it.
2.11  MUST      A subscriber's signal methods happen-before the processing of those signals.
2.12  MUST      on_subscribe is called at most once for a given subscriber.
2.13  MUST      A subscriber's signal methods return normally; if one raises, its subscription counts as cancelled and
                the caller reports the error.
3.1   MUST      request and cancel are called only from within the subscriber's context.
3.2   MUST      A subscription lets its subscriber call request synchronously from on_next and on_subscribe.
3.3   MUST      request bounds the synchronous recursion between publisher and subscriber.
3.4   SHOULD    request returns in a timely manner.
3.5   MUST      cancel returns in a timely manner, is idempotent and thread-safe.
3.6   MUST      After cancel, request is a no-op.
3.7   MUST      After cancel, cancel is a no-op.
3.8   MUST      While not cancelled, request(n) adds n to the items to be produced.
3.9   MUST      While not cancelled, request(n) with n <= 0 signals on_error (an illegal argument).
3.10  MAY       While not cancelled, request may call on_next synchronously.
3.11  MAY       While not cancelled, request may call on_complete or on_error synchronously.
3.12  MUST      While not cancelled, cancel asks the publisher to eventually stop signalling.
3.13  MUST      While not cancelled, cancel asks the publisher to eventually drop its subscriber.
3.14  MAY       cancel may shut a stateful publisher down when no other subscription remains.
3.15  MUST      cancel returns normally.
3.16  MUST      request returns normally.
3.17  MUST      A subscription supports any number of request calls and a demand up to 2^63-1, which it may treat as
                unbounded.
4.1   MUST      A processor is a subscriber and a publisher, and obeys both contracts.
4.2   MAY       A processor may recover from on_error (then its subscription counts as cancelled); otherwise it passes
                on_error on at once.
"""
_ROW = re.compile(r"(\d\.\d+) +(MUST NOT|MUST|SHOULD|MAY) +(.+)")


def _rules(table: str) -> dict[str, Rule]:
    """The rules of ``table``, one a line; an indented line goes on with the text of the rule above."""
    rows: list[list[str]] = []
    for line in table.strip().splitlines():
        if line.startswith(" "):
            rows[-1][2] += " " + line.strip()
        else:
            row = _ROW.fullmatch(line)
            if row is None:
                raise ValueError(f"a rule line is not 'id  KEYWORD  text': {line!r}")
            rows.append(list(row.groups()))
    return {id: Rule(id, keyword, text) for id, keyword, text in rows}


RULES: dict[str, Rule] = _rules(_TABLE)

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


def untestable(rules: dict[str, tuple[str, str, str]]) -> None:
    """List each rule of ``rules`` (``{rule: (role, what, why)}``) as one that no test can check."""
    for rule, (role, what, reason) in rules.items():
        name = f"spec_{rule.replace('.', '_')}_{what}"
        CHECKS.append(Check(rule, name, role, "untestable", None, reason))


# the rules no test can check, each with the role whose suite lists it and the reason
untestable(
    {
        "2.2": (
            "subscriber",
            "dispatches_asynchronously_when_processing_is_slow",
            "a recommendation about the subscriber's own judgement of its speed; nothing to observe",
        ),
        "2.11": (
            "subscriber",
            "signal_calls_happen_before_their_processing",
            "a memory-model guarantee (Java's happens-before) that no test can observe from outside",
        ),
        "3.1": (
            "publisher",
            "request_and_cancel_only_from_the_subscriber_s_context",
            "a subscription cannot tell where its caller runs; the subscriber-side check of §2.7 "
            "sees that every request and cancel comes from the thread the signals come from",
        ),
        "3.4": (
            "publisher",
            "request_returns_in_a_timely_manner",
            "a matter of wall-clock time on the caller's thread, which a test cannot bound without flaking",
        ),
        "3.10": (
            "publisher",
            "request_may_signal_on_next_synchronously",
            "a permission: every check accepts items signalled from inside request and items signalled later",
        ),
        "3.11": (
            "publisher",
            "request_may_signal_the_end_synchronously",
            "a permission: every check accepts on_complete/on_error signalled from inside request and later",
        ),
        "3.14": (
            "publisher",
            "cancel_may_shut_a_stateful_publisher_down",
            "a permission: §1.10 checks that a later subscriber still gets an answer, items or on_error",
        ),
    }
)


def checks_for(role: str) -> list[Check]:
    """The checks of ``role``, in rule order."""
    return sorted((c for c in CHECKS if c.role == role), key=lambda c: (_order(c.rule), c.name))


def _order(rule: str) -> tuple[int, int]:
    major, minor = rule.split(".")
    return int(major), int(minor)
