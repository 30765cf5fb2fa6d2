"""Run every benchmark: ``python -m benchmarks [--json] [--quick] [--only NAME] [--loop uvloop|asyncio|both]
[--record FILE]``.

``--record FILE`` (what ``make bench`` does, with ``docs/figures/bench-results.jsonl``) runs each
benchmark with ``--json``, keeps its records in FILE (one JSON object per line, each tagged
with ``"suite"``: the benchmark's name here; a run of some benchmarks replaces only their
records), and draws the plots of ``docs/benchmarks.md`` beside FILE (:mod:`.plots`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from . import (
    adaptive,
    browser,
    datachannel,
    hub_workers,
    jetstream,
    multisource,
    network,
    paths,
    pipelines,
    plots,
    share,
    slow_worker,
    tcp_throughput,
)

BENCHMARKS = {
    "tcp": tcp_throughput.main,
    "datachannel": datachannel.main,
    "adaptive": adaptive.main,
    "pipelines": pipelines.main,
    "network": network.main,
    "hub": hub_workers.main,
    "share": share.main,
    "browser": browser.main,
    "jetstream": jetstream.main,
    "paths": paths.main,
    "multisource": multisource.main,
    "slow": slow_worker.main,
}

#: the benchmarks that take --loop (adaptive measures a policy over an emulated path; network runs the CLI,
#: which is on uvloop by default)
WITH_LOOP = {"tcp", "datachannel", "pipelines", "hub", "jetstream"}


class _Records:
    """Standard output while one benchmark runs with ``--json``: its JSON lines are kept (tagged
    with the suite), anything else (tables, notes) goes on to the terminal."""

    def __init__(self, suite: str, out: TextIO):
        self.suite, self.out = suite, out
        self.records: list[dict[str, Any]] = []
        self._line = ""

    def write(self, text: str) -> int:
        self._line += text
        while "\n" in self._line:
            line, self._line = self._line.split("\n", 1)
            self._take(line)
        return len(text)

    def _take(self, line: str) -> None:
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    self.records.append({"suite": self.suite, **record})
                    return
        self.out.write(line + "\n")

    def flush(self) -> None:
        self.out.flush()


def _record(path: Path, ran: dict[str, list[dict[str, Any]]]) -> None:
    """Replace the records of the suites that ran, keep the others, draw the plots."""
    kept = [r for r in plots.read_records(path) if r.get("suite") not in ran]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for record in [*kept, *(r for records in ran.values() for r in records)]:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
    drawn = plots.write_plots(path, path.parent)
    print(f"\nrecorded {sum(map(len, ran.values()))} result(s) in {path}; plots: {', '.join(p.name for p in drawn)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rxchannel bench", description="all benchmarks, side by side")
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--loop", choices=["uvloop", "asyncio", "both"], default=None)
    parser.add_argument(
        "--record", type=Path, metavar="FILE", help="keep the results (JSON lines) in FILE and draw the plots beside it"
    )
    args = parser.parse_args(argv)
    passthrough = (["--json"] if args.json or args.record else []) + (["--quick"] if args.quick else [])
    ran: dict[str, list[dict[str, Any]]] = {}
    code = 0
    for name in args.only or sorted(BENCHMARKS):
        loop = ["--loop", args.loop] if args.loop and name in WITH_LOOP else []
        if args.record is None:
            code = BENCHMARKS[name](passthrough + loop)
        else:
            kept = _Records(name, sys.stdout)
            with contextlib.redirect_stdout(kept):  # type: ignore[type-var]
                code = BENCHMARKS[name](passthrough + loop)
            ran[name] = kept.records
            print(f"{name}: {len(kept.records)} result(s)", flush=True)
        if code:
            break
    if args.record is not None and ran:
        _record(args.record, ran)
    return code


if __name__ == "__main__":
    sys.exit(main())
