"""The suite's public surface, and what importing it costs."""

from __future__ import annotations

import inspect
import typing

from rxchannel.testing import tck
from tests.fresh_python import python_output


def test_every_public_name_is_exported_and_every_export_is_there() -> None:
    bound = {
        name
        for name, value in vars(tck).items()
        if not name.startswith("_")
        and not inspect.ismodule(value)
        and not hasattr(typing, name)
        and name != "annotations"
    }
    lazy = set(tck._SUITES)  # the pytest suites, loaded on first use (pytest only then)
    assert set(tck.__all__) == bound | lazy | {"adapters"}
    assert all(hasattr(tck, name) for name in tck.__all__)
    assert {"PublisherRules", "SubscriberRules", "ProcessorRules", "verify_publisher"} <= set(tck.__all__)


def test_only_the_pytest_suites_need_pytest() -> None:
    code = (
        "import sys; from rxchannel.testing import transfer; light = 'reactivex' not in sys.modules; "
        "from rxchannel.testing import tck; no_pytest = 'pytest' not in sys.modules; "
        "tck.PublisherRules; print(light, no_pytest, 'pytest' in sys.modules)"
    )
    printed = python_output(code)
    assert printed.split() == ["True", "True", "True"], printed


def test_every_rule_has_a_check_and_every_check_a_level() -> None:
    levels = {level: sum(c.level == level for c in tck.CHECKS) for level in ("required", "optional", "untestable")}
    assert len(tck.RULES) == 43
    assert {c.rule for c in tck.CHECKS} == set(tck.RULES)
    assert levels == {"required": 36, "optional": 4, "untestable": 7}
