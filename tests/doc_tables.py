"""What the tests of the docs' rule tables share: the rows of a table, and the tests pytest
collects (the ids the rows cite are checked against them).

A rule table (``docs/conformance.md``, ``docs/reactive-streams.md``) has six columns: the
row's id, what it says, its requirement level (MUST ...), its status, notes, and its tests."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NODE_ID = re.compile(r"`(tests/[\w/]+\.py::[^`]+)`")
CHECK_NAME = re.compile(r"`(test_spec_\w+)`")


@dataclass(frozen=True)
class Row:
    section: str
    id: str
    level: str
    status: str
    tests: str  # the tests cell, as written

    @property
    def node_ids(self) -> tuple[str, ...]:
        """The tests the row cites by node id (``tests/...py::...``)."""
        return tuple(NODE_ID.findall(self.tests))

    @property
    def check_names(self) -> tuple[str, ...]:
        """The checks of ``rxchannel.testing.tck`` the row cites by name (``test_spec_...``)."""
        return tuple(CHECK_NAME.findall(self.tests))


def rows(doc: Path, row_id: re.Pattern[str]) -> list[Row]:
    """The rows of ``doc``'s tables whose first cell is an id (``row_id``), each with its section."""
    found, section = [], ""
    for line in doc.read_text().splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
        elif line.startswith("|"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if row_id.match(cells[0]):
                assert len(cells) == 6, f"{cells[0]}: {len(cells)} cells (an unescaped | in a cell?)"
                found.append(Row(section, cells[0], cells[2], cells[3], cells[5]))
    return found


def collected(files: list[str], *options: str, codes: tuple[int, ...] = (0,)) -> frozenset[str]:
    """The node ids pytest collects from ``files``; it must exit with one of ``codes``."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *options, *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode in codes, result.stdout + result.stderr
    return frozenset(line for line in result.stdout.splitlines() if "::" in line)
