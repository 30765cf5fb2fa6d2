"""``--loop uvloop|asyncio|both`` for the benchmarks (default: uvloop where installed)."""

from __future__ import annotations

import argparse

from rxchannel.cli.loops import LOOPS, default_loop
from rxchannel.cli.loops import run as run_on

__all__ = ["add_loop_option", "loops_from", "run_on"]


def add_loop_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--loop",
        choices=[*LOOPS, "both"],
        default=default_loop(),
        help="event loop of every process (both: each round runs on each, alternating)",
    )


def loops_from(args: argparse.Namespace) -> list[str]:
    return list(LOOPS) if args.loop == "both" else [args.loop]
