"""Command line: ``rxchannel serve | fetch | send | ls | rendezvous | demo | bench``
(contract: docs/architecture.md, "URLs and exit codes").

A thin front over the public API; :func:`main` takes ``argv`` and returns the exit code
(never raises): 0 success (for fetch: the file is complete and verified), 1 usage or
local error, 2 the hub refused, 3 integrity failure, 4 connection failed or lost (a
fetch keeps its ``.part``: run the same command again to resume), 130 interrupted. With
``--json`` a failure also prints ``{"error": "...", "exit": N}`` on stdout.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from .commands import cmd_ls, cmd_serve
from .demo import cmd_demo
from .errors import UsageError, fail, report
from .loops import run as run_on_loop
from .parser import build_parser
from .rendezvous import cmd_rendezvous
from .stdio import cmd_fetch, cmd_send, stdout_is_data

__all__ = ["build_parser", "main", "run"]

_COMMANDS = {"serve": cmd_serve, "fetch": cmd_fetch, "send": cmd_send, "ls": cmd_ls, "rendezvous": cmd_rendezvous}


def _cmd_bench(argv: list[str]) -> int:
    """Run the benchmarks of a source checkout (they are not installed with the package)."""
    here = Path.cwd()
    if not (here / "benchmarks" / "__main__.py").exists():
        return fail(
            "'rxchannel bench' runs the benchmarks of a source checkout, which an installed package does not "
            f"include: run it from the repository's top directory (not {here}), e.g. 'make bench'",
            1,
        )
    return subprocess.call([sys.executable, "-m", "benchmarks", *argv], cwd=here)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        return _cmd_bench(argv[1:])
    json_line = "--json" in argv
    try:
        args = build_parser().parse_args(argv)
        args.argv = argv  # serve --processes starts its children with the same command line
    except UsageError as exc:
        return fail(str(exc), 1, json_line=json_line)
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else 0
    try:
        if args.command == "demo":
            return cmd_demo(args)
        return int(run_on_loop(_COMMANDS[args.command](args), args.loop))
    except (Exception, KeyboardInterrupt) as exc:
        to_stdout = stdout_is_data(args)  # fetch -o -: standard output is the data, and nothing resumes
        return report(
            exc,
            subject=_subject(args),
            resumable=args.command == "fetch" and not to_stdout,
            json_line=getattr(args, "json", False),
            json_file=sys.stderr if to_stdout else None,
        )


def _subject(args: argparse.Namespace) -> str:
    """What the command asked of the hub, for messages (``'data/big.bin'``, ``the upload``)."""
    if args.command == "fetch":
        return repr(args.remote_path)
    return {"send": "the upload", "ls": "the listing"}.get(args.command, "the request")


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
