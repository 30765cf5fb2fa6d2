"""Run every benchmark: ``python -m benchmarks [--json] [--quick] [--only NAME] [--loop uvloop|asyncio|both]``."""

from __future__ import annotations

import argparse
import sys

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
    share,
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
}

#: the benchmarks that take --loop (adaptive measures a policy over an emulated path; network runs the CLI,
#: which is on uvloop by default)
WITH_LOOP = {"tcp", "datachannel", "pipelines", "hub", "jetstream"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rxchannel bench", description="all benchmarks, side by side")
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--loop", choices=["uvloop", "asyncio", "both"], default=None)
    args = parser.parse_args(argv)
    passthrough = (["--json"] if args.json else []) + (["--quick"] if args.quick else [])
    for name in args.only or sorted(BENCHMARKS):
        loop = ["--loop", args.loop] if args.loop and name in WITH_LOOP else []
        code = BENCHMARKS[name](passthrough + loop)
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
