"""``docs/reactive-streams.md`` stays true (issue 29).

Every rule of the specification has exactly one row, with its keyword; every check of
``rxchannel.testing.tck`` is cited in its rule's row and runs on every target of its role
(checked against pytest's own collection) and against its broken fixture; every other
cited test exists; only an ``untestable`` row may cite none.
"""

from __future__ import annotations

import functools
import re

import pytest

from rxchannel.testing.tck import CHECKS, RULES
from tests import doc_tables
from tests.doc_tables import ROOT, Row

DOC = ROOT / "docs" / "reactive-streams.md"
ROLE_FILES = {
    "publisher": "tests/tck/test_publishers.py",
    "subscriber": "tests/tck/test_subscribers.py",
    "processor": "tests/tck/test_processors.py",
}
BROKEN = "tests/tck/test_broken_fixtures.py"
STATUSES = {"yes", "deviation", "n/a", "untestable"}
ROW = re.compile(r"^\d\.\d+$")


def rows() -> list[Row]:
    """The table's rows: a rule (``id``), its keyword (``level``), its status, what it cites."""
    return doc_tables.rows(DOC, ROW)


@functools.cache
def collected() -> frozenset[str]:
    files = sorted({*ROLE_FILES.values(), BROKEN, *(n.split("::")[0] for r in rows() for n in r.node_ids)})
    return doc_tables.collected(files)


def test_every_rule_has_one_row_with_its_keyword_and_a_known_status() -> None:
    table = rows()
    assert sorted(r.id for r in table) == sorted(RULES), "rules missing or tabled twice"
    for row in table:
        assert row.level == RULES[row.id].keyword, (
            f"§{row.id}: {row.level} (the specification says {RULES[row.id].keyword})"
        )
        assert row.status in STATUSES, f"§{row.id}: unknown status {row.status!r}"
        if row.status != "untestable":
            assert row.check_names or row.node_ids, f"§{row.id} ({row.status}) cites no test"


def test_every_check_is_cited_in_its_rules_row_and_every_cited_check_exists() -> None:
    by_rule = {row.id: set(row.check_names) for row in rows()}
    names = {c.test_name for c in CHECKS}
    for check in CHECKS:
        if check.body is not None:
            assert check.test_name in by_rule[check.rule], f"§{check.rule}: {check.test_name} is not cited"
    cited = {name for row in rows() for name in row.check_names}
    assert cited <= names, f"cited checks the suite does not have: {sorted(cited - names)}"


@pytest.mark.timeout(600)
def test_every_check_runs_on_every_target_of_its_role_and_against_its_broken_fixture() -> None:
    node_ids = collected()
    for check in CHECKS:
        if check.body is None:
            continue
        path = ROLE_FILES[check.role]
        targets = {n.split("::")[1] for n in node_ids if n.startswith(path + "::")}
        assert targets, f"no target runs the {check.role} rules"
        for target in targets:
            prefix = f"{path}::{target}::{check.test_name}"
            assert any(n == prefix or n.startswith(prefix + "[") for n in node_ids), f"{prefix} is not collected"
        assert any(n.startswith(BROKEN) and check.test_name in n for n in node_ids), (
            f"{check.test_name} is never run against a broken fixture"
        )


@pytest.mark.timeout(600)
def test_every_cited_node_id_exists() -> None:
    node_ids = collected()
    for row in rows():
        for node_id in row.node_ids:
            assert any(n == node_id or n.startswith((node_id + "[", node_id + "::")) for n in node_ids), (
                f"§{row.id}: {node_id} is not collected"
            )
