"""Tables and JSON lines for benchmark results."""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Sequence
from typing import Any


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def print_table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    cells = [[str(c) for c in columns]] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    print(f"\n{title}")
    for i, row in enumerate(cells):
        print("  " + "  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))
        if i == 0:
            print("  " + "  ".join("-" * w for w in widths))


def cells(rows: list[dict[str, Any]], keys: str, **formats: str) -> list[list[Any]]:
    """A table's cells: each row's values under ``keys`` (space-separated), in that order; a value
    whose key is in ``formats`` shown through that format string (e.g. ``ratio="{:.2f}x"``)."""
    names = keys.split()
    return [[formats[k].format(row[k]) if k in formats else row[k] for k in names] for row in rows]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
    return str(v)


def emit_json(record: dict[str, Any]) -> None:
    print(json.dumps(record, separators=(",", ":")), flush=True)


def add_row(rows: list[dict[str, Any]], row: dict[str, Any], as_json: bool) -> None:
    """Keep ``row`` for the table printed at the end; with ``--json``, print it now as a JSON line instead."""
    rows.append(row)
    if as_json:
        emit_json(row)


def add_run_options(parser: argparse.ArgumentParser, quick: str | None = None) -> None:
    """``--quick`` (a short run; ``quick`` says how short) and ``--json`` (a JSON line per row, no tables)."""
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--json", action="store_true")
