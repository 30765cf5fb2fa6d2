"""Command line: ``rxchannel serve | fetch | send | ls | rendezvous | demo | bench``.

A thin front over the public API; :func:`main` takes ``argv`` and returns the exit code
(never raises): 0 success (for fetch: the file is complete and verified), 1 usage or
local error, 2 the hub refused, 3 integrity failure, 4 connection failed or lost, 130
interrupted (141: the reader of ``fetch -o -`` went away). With ``--json`` a failure also
prints ``{"error": "...", "exit": N}`` on stdout. A fetch that stopped keeps what it
received in a ``.part`` and resumes from it when run again; its message says so only
when there is one.

This module imports only the standard library: the commands (and aiohttp, aiortc, rich
under them) load inside :func:`main`, where a Ctrl-C during the imports is reported as
an interruption (exit 130) instead of a traceback.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["build_parser", "main", "run"]

EXIT_INTERRUPTED = 130


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    try:
        from .dispatch import main as dispatch
    except KeyboardInterrupt:
        print("rxchannel: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    return dispatch(argv)


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


def __getattr__(name: str) -> Any:
    if name == "build_parser":  # the parser, for tests and tools (loads the commands' modules)
        from .parser import build_parser

        return build_parser
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
