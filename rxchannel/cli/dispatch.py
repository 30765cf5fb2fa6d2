"""The commands behind :func:`rxchannel.cli.main`: parse, run, and turn what went wrong into
an exit code and one line (:mod:`.errors`).

Imported only once the package's light entry point (:mod:`rxchannel.cli`) runs, so that a
Ctrl-C while these imports load (aiohttp, aiortc, rich: a few hundred milliseconds) is an
interruption like any other, not a traceback.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from .commands import cmd_ls, cmd_serve
from .demo import cmd_demo
from .errors import EXIT_INTERRUPTED, UsageError, fail, report
from .loops import run as run_on_loop
from .outputs import kept_to_resume
from .parser import build_parser
from .rendezvous import cmd_rendezvous
from .stdio import cmd_fetch, cmd_send, stdout_is_data

__all__ = ["main"]

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
    except KeyboardInterrupt:  # nothing has started yet
        return fail("interrupted", EXIT_INTERRUPTED, json_line=json_line)
    command: Coroutine[Any, Any, int] | None = None
    try:
        if args.command == "demo":
            return cmd_demo(args)
        command = _COMMANDS[args.command](args)
        return int(run_on_loop(command, args.loop))
    except (Exception, KeyboardInterrupt) as exc:
        if command is not None:
            command.close()  # interrupted before the loop ran it: never started, not "never awaited"
        to_stdout = stdout_is_data(args)  # fetch -o -: standard output is the data, and nothing resumes
        return report(
            exc,
            subject=_subject(args),
            kept=kept_to_resume(args) if args.command == "fetch" and not to_stdout else None,
            json_line=getattr(args, "json", False),
            json_file=sys.stderr if to_stdout else None,
        )


def _subject(args: argparse.Namespace) -> str:
    """What the command asked of the hub, for messages (``'data/big.bin'``, ``the upload``)."""
    if args.command == "fetch":
        return repr(args.remote_path)
    return {"send": "the upload", "ls": "the listing"}.get(args.command, "the request")
