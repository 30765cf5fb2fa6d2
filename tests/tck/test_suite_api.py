"""The suite's public surface, and what importing it costs."""

from __future__ import annotations

import subprocess
import sys

from rxchannel.testing import tck


def test_exported_names_are_pinned() -> None:
    assert sorted(tck.__all__) == sorted(
        [
            "CHECKS",
            "MAX_DEMAND",
            "RULES",
            "Check",
            "ManualSubscriber",
            "Outcome",
            "ProbeError",
            "ProbePublisher",
            "ProcessorFactory",
            "ProcessorRules",
            "Publisher",
            "PublisherFactory",
            "PublisherRules",
            "Report",
            "Rule",
            "RuleViolation",
            "SkipCheck",
            "Subscriber",
            "SubscriberFactory",
            "SubscriberHandle",
            "SubscriberRules",
            "Subscription",
            "adapters",
            "checks_for",
            "loop_turns",
            "run_check",
            "verify_processor",
            "verify_publisher",
            "verify_subscriber",
        ]
    )
    assert all(hasattr(tck, name) for name in tck.__all__)


def test_only_the_pytest_suites_need_pytest() -> None:
    code = (
        "import sys; from rxchannel.testing import transfer; light = 'reactivex' not in sys.modules; "
        "from rxchannel.testing import tck; no_pytest = 'pytest' not in sys.modules; "
        "tck.PublisherRules; print(light, no_pytest, 'pytest' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True", "True"], out.stdout + out.stderr


def test_every_rule_has_a_check_and_every_check_a_level() -> None:
    levels = {level: sum(c.level == level for c in tck.CHECKS) for level in ("required", "optional", "untestable")}
    assert len(tck.RULES) == 43
    assert {c.rule for c in tck.CHECKS} == set(tck.RULES)
    assert levels == {"required": 36, "optional": 4, "untestable": 7}
