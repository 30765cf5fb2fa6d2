"""Command line: ``rxchannel serve | fetch | send | demo | bench`` (contract: DESIGN.md §6).

A thin front over the public API; :func:`main` takes ``argv`` and returns the exit code.
Exit codes: 0 success (for fetch: the file is complete and verified), 1 usage or local
error, 2 the hub refused, 3 integrity failure, 4 connection lost (the ``.part`` is kept:
run the same command again to resume).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from pathlib import Path

from rxchannel.core import RxChannelError

from .commands import cmd_fetch, cmd_send, cmd_serve, fail
from .demo import cmd_demo
from .ice import add_ice_options
from .units import parse_size

__all__ = ["build_parser", "main", "run"]


def _cmd_bench(argv: list[str]) -> int:
    """Run the benchmarks of a source checkout (they are not installed with the package)."""
    here = Path.cwd()
    if not (here / "benchmarks" / "__main__.py").exists():
        return fail("run 'rxchannel bench' from a source checkout (it runs benchmarks/)", 1)
    return subprocess.call([sys.executable, "-m", "benchmarks", *argv], cwd=here)


def _window(text: str) -> int | str:
    if text == "auto":
        return text
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("--window must be a positive number of chunks or 'auto'")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rxchannel", description="Reactive streams with end-to-end demand.")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        add_ice_options(p, hub=p is serve)
        p.add_argument(
            "--secret",
            default=os.environ.get("RXCHANNEL_SECRET"),
            help="shared secret peers present in SETUP (default: $RXCHANNEL_SECRET; none: no authentication)",
        )
        p.add_argument("--keepalive", type=float, default=10.0, help="seconds between keepalives (client side)")
        p.add_argument(
            "--max-lifetime", type=float, default=30.0, help="seconds of silence before a peer is declared dead"
        )
        p.add_argument("--max-streams", type=int, default=256, help="streams a peer may have open at once")

    serve = sub.add_parser("serve", help="share ROOT as a hub")
    serve.add_argument("root")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--transport", choices=["webrtc", "tcp", "ws"], default="webrtc")
    serve.add_argument("--inbox", default=None, help="where pushed files go (default: ROOT.inbox beside ROOT)")
    serve.add_argument("--chunk-size", type=int, default=64 * 1024, help="bytes per item of a file stream")
    serve.add_argument(
        "--max-connections", type=int, default=256, help="connections at once (default 256; 1/8 of it per address)"
    )
    serve.add_argument("--max-upload", type=parse_size, default=1 << 30, help="largest push accepted (default 1GiB)")
    serve.add_argument(
        "--max-open-files",
        type=int,
        default=1024,
        help="files open for streams at once (default 1024; 16 per connection)",
    )
    common(serve)

    fetch = sub.add_parser("fetch", help="fetch a file from a hub")
    fetch.add_argument("url")
    fetch.add_argument("remote_path")
    fetch.add_argument("-o", "--output")
    fetch.add_argument("--window", type=_window, default=32, help="chunks in flight, or 'auto' (default 32)")
    fetch.add_argument("--no-resume", action="store_true")
    fetch.add_argument(
        "--max-size", type=parse_size, default=None, help="refuse files larger than this (default: the free disk space)"
    )
    fetch.add_argument(
        "--shared",
        action="store_true",
        help="join the hub's shared read of the file (share/PATH: one read for the workers that ask together); "
        "if late or detached, continue from the bytes received on files/PATH",
    )
    fetch.add_argument("--json", action="store_true")
    fetch.add_argument("--progress", action="store_true", help="show the progress bar on a terminal even with --json")
    common(fetch)

    send = sub.add_parser("send", help="push a file into a hub's inbox")
    send.add_argument("url")
    send.add_argument("file")
    send.add_argument("--name", help="name in the inbox (default: the file's name)")
    send.add_argument("--json", action="store_true")
    common(send)

    demo = sub.add_parser("demo", help="hub and worker in two processes over WebRTC on loopback")
    demo.add_argument("--size", default="32MiB")
    demo.add_argument("--window", type=_window, default=32)
    demo.add_argument("--transport", choices=["webrtc", "tcp", "ws"], default="webrtc")

    sub.add_parser("bench", help="run the benchmarks side by side (from a source checkout)", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        return _cmd_bench(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            return cmd_demo(args, build_parser().parse_args)
        command = {"serve": cmd_serve, "fetch": cmd_fetch, "send": cmd_send}[args.command]
        return int(asyncio.run(command(args)))
    except (ConnectionError, TimeoutError) as exc:  # the hub unreachable, ICE failed, a timeout: exit 4
        return fail(str(exc) or f"{type(exc).__name__}: the connection could not be made or was lost", 4)
    except (RxChannelError, OSError, ValueError) as exc:
        return fail(str(exc), 1)
    except KeyboardInterrupt:
        return 130


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
