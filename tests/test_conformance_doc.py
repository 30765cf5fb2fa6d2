"""``docs/conformance.md`` stays true (issue 10).

Every test id the tables cite exists (checked against pytest's own collection); every row
that claims a behaviour names a test; a known nonconformance ("no") names a strict-xfail
test and a row that claims conformance names none; every xfail test of the conformance
files is cited by a "no" row; no section loses rows; ids are unique.
"""

from __future__ import annotations

import functools
import re

import pytest

from tests import doc_tables
from tests.doc_tables import ROOT, Row

DOC = ROOT / "docs" / "conformance.md"
CONFORMANCE_TESTS = ["tests/core/test_conformance.py", "tests/runtime/test_conformance_wire.py"]

STATUSES = {"yes", "n/a", "deviation", "no", "not supported"}
#: statuses that describe what rxchannel does, so a test must show it
NEEDS_TEST = {"yes", "n/a", "deviation", "no"}
#: rows per section when the document was written; a section may grow, never shrink
MIN_ROWS = {
    "Framing and frame length": 7,
    "Frame header and flags": 4,
    "Metadata": 4,
    "Stream IDs": 8,
    "SETUP and connection establishment": 12,
    "ERROR and error codes": 5,
    "KEEPALIVE": 7,
    "REQUEST_RESPONSE": 3,
    "REQUEST_FNF": 2,
    "REQUEST_STREAM": 3,
    "REQUEST_CHANNEL": 10,
    "REQUEST_N": 3,
    "CANCEL": 1,
    "PAYLOAD": 3,
    "METADATA_PUSH": 1,
    "EXT": 2,
    "Fragmentation and reassembly": 6,
    "Flow control and Reactive Streams semantics": 7,
    "Handling the Unexpected": 15,
    "LEASE": 7,
    "RESUME": 10,
}
ROW_ID = re.compile(r"^[A-Z]+-\d+$")


def rows() -> list[Row]:
    """The table rows of the document, with the section each is in."""
    return doc_tables.rows(DOC, ROW_ID)


@functools.cache
def collected(*options: str) -> frozenset[str]:
    """Node ids pytest collects from every file the document cites (and the conformance files)."""
    files = sorted({t.split("::")[0] for row in rows() for t in row.node_ids} | set(CONFORMANCE_TESTS))
    return doc_tables.collected(files, *options, codes=(0, 5))  # 5: nothing selected (no xfail left)


def matches(test_id: str, node_ids: frozenset[str]) -> set[str]:
    """The collected node ids ``test_id`` names: itself, or every parametrization or method of it."""
    return {n for n in node_ids if n == test_id or n.startswith((test_id + "[", test_id + "::"))}


def test_every_section_keeps_its_rows_and_ids_are_unique() -> None:
    table = rows()
    per_section: dict[str, int] = {}
    for row in table:
        per_section[row.section] = per_section.get(row.section, 0) + 1
    for section, minimum in MIN_ROWS.items():
        assert per_section.get(section, 0) >= minimum, f"section {section!r} has {per_section.get(section, 0)} rows"
    ids = [row.id for row in table]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})


def test_every_row_has_a_known_status_and_a_level() -> None:
    for row in rows():
        assert row.status in STATUSES, f"{row.id}: unknown status {row.status!r}"
        assert row.level, f"{row.id}: no level"


def test_every_row_that_describes_behaviour_names_a_test() -> None:
    missing = [row.id for row in rows() if row.status in NEEDS_TEST and not row.node_ids]
    assert not missing, f"rows without a test: {missing}"


@pytest.mark.timeout(900)
def test_every_cited_test_exists() -> None:
    node_ids = collected()
    unknown = [(row.id, t) for row in rows() for t in row.node_ids if not matches(t, node_ids)]
    assert not unknown, f"cited tests that pytest does not collect: {unknown}"


@pytest.mark.timeout(900)
def test_nonconformances_cite_xfail_tests_and_conformance_rows_cite_none() -> None:
    xfail = collected("-m", "xfail")  # empty once every known nonconformance is fixed
    for row in rows():
        cited_xfail = [t for t in row.node_ids if matches(t, xfail)]
        if row.status == "no":
            assert cited_xfail, f"{row.id} is a nonconformance but cites no xfail test"
        else:
            assert not cited_xfail, f"{row.id} ({row.status}) rests on tests known to fail: {cited_xfail}"
    cited_by_no = {t for row in rows() if row.status == "no" for t in row.node_ids}
    uncited = [
        n
        for n in xfail
        if n.startswith(tuple(CONFORMANCE_TESTS)) and not any(matches(t, frozenset([n])) for t in cited_by_no)
    ]
    assert not uncited, f"xfail tests no 'no' row cites: {uncited}"
