"""The suite's own tests: no rule test can pass vacuously.

Every rule test runs against a reference publisher (subscriber, processor) with exactly one
flaw, the one that breaks its rule, and must fail with a violation of that rule (an
optional check: be reported). The same references without a flaw pass every check.
"""

from __future__ import annotations

import pytest

from rxchannel.testing.tck import CHECKS, RULES, Check, run_check
from tests.tck import reference

#: rule test -> the flaw that breaks its rule (reference.PUBLISHER_FLAWS / SUBSCRIBER_FLAWS / PROCESSOR_FLAWS)
BROKEN = {
    # publisher
    "test_spec_1_1_never_signals_more_on_next_than_requested": "extra-item",
    "test_spec_1_2_may_signal_fewer_than_requested_and_terminate": "stall-when-over-requested",
    "test_spec_1_3_signals_serially": "concurrent-signal",
    "test_spec_1_4_a_failing_publisher_signals_on_error": "complete-instead-of-error",
    "test_spec_1_4_optional_signals_on_error_without_a_request": "error-after-request",
    "test_spec_1_5_a_finite_stream_signals_on_complete": "never-complete",
    "test_spec_1_5_optional_completes_without_a_request_past_its_items": "complete-needs-request",
    "test_spec_1_6_after_a_terminal_signal_the_subscription_is_cancelled": "keep-after-end",
    "test_spec_1_7_no_signal_after_a_terminal_one": "signal-after-end",
    "test_spec_1_8_a_cancelled_subscription_stops_being_signalled": "ignore-cancel",
    "test_spec_1_9_subscribe_signals_on_subscribe_first_and_returns_normally": "signal-before-subscribe",
    "test_spec_1_10_subscribe_may_be_called_again_with_another_subscriber": "subscribe-once",
    "test_spec_1_11_optional_several_subscribers_each_get_a_whole_stream": "shared-iterator",
    "test_spec_2_12_on_subscribe_is_called_once_per_subscriber": "subscribe-again-at-end",
    "test_spec_2_13_a_subscriber_that_raises_is_cancelled": "ignore-raising-subscriber",
    "test_spec_3_2_request_may_be_called_from_on_subscribe_and_on_next": "drop-reentrant-requests",
    "test_spec_3_3_request_bounds_synchronous_recursion": "synchronous",
    "test_spec_3_5_cancel_is_idempotent_and_thread_safe": "cancel-not-thread-safe",
    "test_spec_3_6_request_after_cancel_is_a_no_op": "request-after-cancel",
    "test_spec_3_7_cancel_after_cancel_is_a_no_op": "second-cancel-signals",
    "test_spec_3_8_requests_add_up": "demand-replaces",
    "test_spec_3_9_request_zero_or_negative_signals_an_error": "ignore-bad-request",
    "test_spec_3_9_optional_the_error_is_a_value_error_that_says_why": "runtime-error",
    "test_spec_3_12_cancel_makes_the_publisher_stop": "keep-after-cancel",
    "test_spec_3_13_cancel_drops_every_reference_to_the_subscriber": "keep-subscribers",
    "test_spec_3_15_cancel_returns_normally": "cancel-raises-after-end",
    "test_spec_3_16_request_returns_normally": "request-raises",
    "test_spec_3_17_demand_up_to_2_63_minus_1_is_supported": "overflow-error",
    # subscriber
    "test_spec_2_1_signals_demand_before_receiving": "never-request",
    "test_spec_2_3_no_subscription_call_from_on_complete_or_on_error": "cancel-in-on-complete",
    "test_spec_2_4_after_a_terminal_signal_the_subscription_is_cancelled": "request-after-end",
    "test_spec_2_5_a_second_on_subscribe_is_cancelled": "take-second-subscription",
    "test_spec_2_6_cancels_when_no_longer_needed": "forget-without-cancel",
    "test_spec_2_7_calls_the_subscription_serially_from_its_own_context": "request-from-caller-thread",
    "test_spec_2_8_takes_on_next_after_it_cancelled": "raise-after-cancel",
    "test_spec_2_9_takes_on_complete_with_or_without_a_request": "raise-on-unrequested-complete",
    "test_spec_2_10_takes_on_error_with_or_without_a_request": "raise-on-unrequested-error",
    "test_spec_2_13_signal_methods_return_normally": "raise-on-next",
    # processor
    "test_spec_4_1_a_processor_obeys_both_contracts": "keep-upstream",
    "test_spec_4_2_an_upstream_error_is_passed_on_or_recovered": "swallow-error",
}

TESTABLE = [c for c in CHECKS if c.body is not None]


def factory(check: Check, flaw: str = "") -> object:
    return {
        "publisher": reference.publisher_factory,
        "subscriber": reference.subscriber_factory,
        "processor": reference.processor_factory,
    }[check.role](flaw)


def test_every_testable_check_has_a_broken_fixture_and_every_rule_a_check() -> None:
    assert sorted(BROKEN) == sorted(c.test_name for c in TESTABLE)
    assert {c.rule for c in CHECKS} == set(RULES)
    flaws = {**reference.PUBLISHER_FLAWS, **reference.SUBSCRIBER_FLAWS, **reference.PROCESSOR_FLAWS}
    assert set(BROKEN.values()) == set(flaws), "a flaw no rule test is run against, or one that does not exist"


@pytest.mark.parametrize("check", TESTABLE, ids=lambda c: f"{c.role}-{c.test_name}")
async def test_the_reference_passes(check: Check) -> None:
    outcome = await run_check(check, factory(check))  # type: ignore[arg-type]
    assert outcome.status == "passed", outcome.message


@pytest.mark.parametrize("check", TESTABLE, ids=lambda c: f"{c.test_name}-against-{BROKEN.get(c.test_name, '?')}")
async def test_each_rule_test_fails_against_the_fixture_that_breaks_its_rule(check: Check) -> None:
    outcome = await run_check(check, factory(check, BROKEN[check.test_name]))  # type: ignore[arg-type]
    expected = "reported" if check.level == "optional" else "failed"
    assert outcome.status == expected, f"{outcome.status}: {outcome.message}"
    assert outcome.rule == check.rule, f"failed for §{outcome.rule}, not §{check.rule}: {outcome.message}"
