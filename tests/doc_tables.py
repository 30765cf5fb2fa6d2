"""What the tests of the docs' rule tables share: the rows of a table, and the tests pytest
collects (the ids the rows cite are checked against them)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def table_rows(doc: Path, first_cell: re.Pattern[str]) -> Iterator[tuple[str, list[str]]]:
    """The section and the six cells of every table row of ``doc`` whose first cell matches."""
    section = ""
    for line in doc.read_text().splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
        elif line.startswith("|"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if first_cell.match(cells[0]):
                assert len(cells) == 6, f"{cells[0]}: {len(cells)} cells (an unescaped | in a cell?)"
                yield section, cells


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
