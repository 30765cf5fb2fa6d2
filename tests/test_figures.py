"""The pictures of the README and docs/ are generated from sources in the repository, and the
committed files are what those sources draw: the diagrams from ``docs/figures/diagrams.py``,
the benchmark plots from the kept results (``docs/figures/bench-results.jsonl``) by
``benchmarks/plots.py``. After changing either, run ``make figures``."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from benchmarks import plots

TOP = Path(__file__).resolve().parent.parent
FIGURES = TOP / "docs" / "figures"


def _diagrams() -> ModuleType:
    spec = importlib.util.spec_from_file_location("diagrams", FIGURES / "diagrams.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DIAGRAMS = _diagrams()


@pytest.mark.parametrize("name", sorted(DIAGRAMS.FIGURES))
def test_each_diagram_is_what_its_source_draws(name: str) -> None:
    drawn = DIAGRAMS.FIGURES[name]()
    assert drawn.startswith("<svg") and drawn.endswith("</svg>\n")
    committed = (FIGURES / name).read_text(encoding="utf-8")
    assert committed == drawn, f"docs/figures/{name} is out of date: run 'make figures'"


def test_the_diagram_script_checks_itself() -> None:
    done = subprocess.run([sys.executable, str(FIGURES / "diagrams.py"), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_plots_are_what_the_kept_results_draw() -> None:
    drawn = plots.draw(plots.read_records(FIGURES / "bench-results.jsonl"))
    assert "bench-slow-worker.svg" in drawn, "the slow worker's plot needs its results"
    for name, svg in drawn.items():
        committed = FIGURES / name
        assert committed.exists() and committed.read_text(encoding="utf-8") == svg, (
            f"docs/figures/{name} is out of date: run 'make figures'"
        )
    stale = {p.name for p in FIGURES.glob("bench-*.svg")} - set(drawn)
    assert not stale, f"plots with no results behind them: {stale}"


def test_the_benchmarks_page_shows_every_plot_and_the_readme_every_diagram() -> None:
    page = (TOP / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    for name in plots.draw(plots.read_records(FIGURES / "bench-results.jsonl")):
        assert f"(figures/{name})" in page, f"docs/benchmarks.md does not show {name}"
    readme = (TOP / "README.md").read_text(encoding="utf-8")
    for name in DIAGRAMS.FIGURES:
        assert f"(docs/figures/{name})" in readme, f"README.md does not show {name}"


def test_recording_keeps_the_other_benchmarks_results(tmp_path: Path) -> None:
    """``--record`` replaces the records of the benchmarks that ran and keeps the rest."""
    from benchmarks.__main__ import _record

    results = tmp_path / "results.jsonl"
    results.write_text('{"suite": "tcp", "x": 1}\n{"suite": "slow", "old": true}\n')
    fresh = {"suite": "slow", "samples": [[0, 0, 0], [1, 65536, 0]], "rate_mb_s": 4.0, "window": 8}
    fresh |= {"chunk": 65536, "max_lead_bytes": 65536, "bound_bytes": 589824}
    _record(results, {"slow": [fresh]})
    kept = plots.read_records(results)
    assert [r["suite"] for r in kept] == ["tcp", "slow"] and "old" not in kept[1]
    assert (tmp_path / "bench-slow-worker.svg").exists()
