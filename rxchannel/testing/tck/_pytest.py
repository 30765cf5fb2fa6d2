"""The checks as pytest tests: subclass a suite, give it a ``tck_factory`` fixture."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ._api import ProcessorFactory, PublisherFactory, SubscriberFactory
from ._rules import Check, checks_for
from ._runner import run_check

__all__ = ["ProcessorRules", "PublisherRules", "SubscriberRules"]

_FACTORIES: dict[str, type] = {
    "publisher": PublisherFactory,
    "subscriber": SubscriberFactory,
    "processor": ProcessorFactory,
}


def _test(check: Check) -> Callable[..., Any]:
    if check.body is None:

        def untestable(self: Any) -> None:
            pytest.skip(f"§{check.rule} cannot be tested: {check.reason}")

        untestable.__doc__ = check.reason
        return untestable

    async def test(self: Any, tck_factory: PublisherFactory | SubscriberFactory | ProcessorFactory) -> None:
        expected = _FACTORIES[check.role]
        if not isinstance(tck_factory, expected):
            raise TypeError(f"the {check.role} rules need a {expected.__name__}, got {type(tck_factory).__name__}")
        outcome = await run_check(check, tck_factory)
        if outcome.status == "failed":
            pytest.fail(outcome.message, pytrace=False)
        elif outcome.status == "reported":
            pytest.xfail(f"optional (§{check.rule}: {check.reason}): {outcome.message}")
        elif outcome.status == "skipped":
            pytest.skip(outcome.message)

    test.__doc__ = check.body.__doc__
    return test


def _suite(name: str, role: str, doc: str) -> type:
    namespace: dict[str, Any] = {check.test_name: _test(check) for check in checks_for(role)}
    namespace["__doc__"] = doc
    namespace["__module__"] = __name__
    return type(name, (), namespace)


PublisherRules = _suite(
    "PublisherRules",
    "publisher",
    """The publisher rules as tests: subclass it as ``Test...`` with a ``tck_factory`` fixture
    that returns a :class:`PublisherFactory`.""",
)
SubscriberRules = _suite(
    "SubscriberRules",
    "subscriber",
    """The subscriber rules as tests: subclass it as ``Test...`` with a ``tck_factory`` fixture
    that returns a :class:`SubscriberFactory`.""",
)
ProcessorRules = _suite(
    "ProcessorRules",
    "processor",
    """The processor rules as tests: subclass it as ``Test...`` with a ``tck_factory`` fixture
    that returns a :class:`ProcessorFactory`.""",
)
