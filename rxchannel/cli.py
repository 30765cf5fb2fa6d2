"""Command line: ``rxchannel serve | fetch | send | demo | bench`` (contract: DESIGN.md §6).

A thin front over the public API; :func:`main` takes ``argv`` and returns the exit code.
Exit codes: 0 success (for fetch: the file is complete and verified), 1 usage or local
error, 2 the hub refused, 3 integrity failure, 4 connection lost (the ``.part`` is kept:
run the same command again to resume).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .auth import with_secret
from .core import ConnectionConfig, ConnectionLostError, RemoteError, RxChannelError
from .files import (
    FILE_CHANGED,
    FileBusyError,
    IntegrityError,
    TargetExistsError,
    TransferResult,
    fetch_file,
    push_file,
    sha256_file,
)

__all__ = ["main", "run"]


def peak_rss_mb(pid: int | None = None) -> float:
    """Peak resident memory of this process (or ``pid``, from /proc) in MB."""
    if pid is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def parse_size(text: str) -> int:
    """``32MiB``, ``512KiB``, ``1GiB``, ``1000`` -> bytes."""
    units = {"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "b": 1}
    lowered = text.strip().lower()
    for unit, factor in units.items():
        if lowered.endswith(unit):
            return int(float(lowered[: -len(unit)]) * factor)
    return int(lowered)


@contextlib.contextmanager
def progress_bar(enabled: bool, label: str) -> Iterator[Any]:
    """A rich progress bar on a terminal (bytes, rate, ETA, credits in flight); a no-op otherwise."""
    if not enabled:
        yield None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        TextColumn("credits in flight: {task.fields[credits]}"),
    )
    from rich.console import Console

    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(label, total=None, credits=0)

        def update(done: int, total: int | None, credits: int) -> None:
            bar.update(task, completed=done, total=total, credits=credits)

        yield update


def _summary(result: TransferResult) -> dict[str, Any]:
    return {
        "path": str(result.path),
        "bytes": result.size,
        "received": result.received,
        "resumed_from": result.resumed_from,
        "seconds": round(result.seconds, 3),
        "mb_per_s": round(result.mb_per_s, 2),
        "sha256": result.sha256,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def _fail(message: str, code: int) -> int:
    print(f"rxchannel: {message}", file=sys.stderr)
    return code


def _config(args: argparse.Namespace, *, server: bool) -> ConnectionConfig | None:
    config = ConnectionConfig(
        keepalive_interval=args.keepalive, max_lifetime=args.max_lifetime, max_streams=args.max_streams
    )
    return with_secret(config, args.secret, server=server)


def _transfer_failed(exc: BaseException, refused: str, lost_hint: str) -> int:
    """Print why a transfer failed and return its exit code (see the module docstring)."""
    if isinstance(exc, RemoteError) and exc.code == FILE_CHANGED:
        return _fail(f"{exc.message} (run the same command again)", 4)
    if isinstance(exc, RemoteError):
        return _fail(f"{refused}: {exc.message or exc}", 2)
    if isinstance(exc, (FileBusyError, TargetExistsError)):
        return _fail(str(exc), 1)
    if isinstance(exc, IntegrityError):
        return _fail(str(exc), 3)
    return _fail(f"connection lost: {exc}{lost_hint}", 4)


async def _cmd_fetch(args: argparse.Namespace) -> int:
    from .endpoints import connect

    out = Path(args.output or Path(args.remote_path).name)
    peer = await connect(args.url, ice_servers=args.ice_server, config=_config(args, server=False))
    try:
        with progress_bar(sys.stderr.isatty() and (args.progress or not args.json), out.name) as update:
            result = await fetch_file(
                peer, args.remote_path, out, window=args.window, resume=not args.no_resume, progress=update
            )
    except (RemoteError, IntegrityError, ConnectionLostError, ConnectionError, FileBusyError) as exc:
        return _transfer_failed(
            exc, f"the hub refused {args.remote_path!r}", "; the partial file is kept, run again to resume"
        )
    finally:
        await peer.close()
    summary = _summary(result)
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{out}: {result.size} bytes in {result.seconds:.2f} s ({result.mb_per_s:.1f} MB/s), sha256 verified")
    return 0


async def _cmd_send(args: argparse.Namespace) -> int:
    from .endpoints import connect

    path = Path(args.file)
    if not path.is_file():
        return _fail(f"{path} is not a file", 1)
    peer = await connect(args.url, ice_servers=args.ice_server, config=_config(args, server=False))
    start = time.perf_counter()
    try:
        with progress_bar(sys.stderr.isatty() and not args.json, path.name) as update:
            receipt = await push_file(peer, path, args.name, progress=update)
    except (RemoteError, IntegrityError, ConnectionLostError, ConnectionError) as exc:
        return _transfer_failed(exc, "the hub refused the upload", "")
    finally:
        await peer.close()
    seconds = time.perf_counter() - start
    receipt.update(seconds=round(seconds, 3), mb_per_s=round(receipt["size"] / seconds / 1e6, 2))
    print(json.dumps(receipt) if args.json else f"sent {path} -> inbox/{receipt['path']} ({receipt['size']} bytes)")
    return 0


async def _cmd_serve(args: argparse.Namespace) -> int:
    from .endpoints import serve
    from .hub import Hub

    hub = Hub(args.root, inbox=args.inbox, chunk_size=args.chunk_size)
    service = await serve(
        hub.router,
        transport=args.transport,
        host=args.host,
        port=args.port,
        ice_servers=args.ice_server,
        config=_config(args, server=True),
    )
    print(service.url, flush=True)
    print(f"serving {hub.root} over {args.transport}; Ctrl-C to stop", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await service.close()
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    size = parse_size(args.size)
    with tempfile.TemporaryDirectory(prefix="rxchannel-demo-") as tmp:
        root, out = Path(tmp, "hub"), Path(tmp, "worker", "demo.bin")
        root.mkdir()
        source = root / "demo.bin"
        with open(source, "wb") as handle:
            left = size
            while left:
                block = os.urandom(min(left, 1 << 20))
                handle.write(block)
                left -= len(block)
        print(f"demo: generated {size} bytes; starting a hub process on 127.0.0.1 (WebRTC, loopback ICE)")
        hub = subprocess.Popen(
            [sys.executable, "-m", "rxchannel", "serve", str(root), "--port", "0", "--transport", args.transport],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert hub.stdout is not None
            url = hub.stdout.readline().strip()
            if not url:
                return _fail("the hub process did not start", 1)
            print(f"demo: hub at {url}; this process is the worker")
            fetch_args = build_parser().parse_args(
                [
                    "fetch",
                    url,
                    "demo.bin",
                    "-o",
                    str(out),
                    "--window",
                    str(args.window),
                    "--no-resume",
                    "--json",
                    "--progress",
                ]
            )
            with contextlib.redirect_stdout(_Capture()) as captured:
                code = asyncio.run(_cmd_fetch(fetch_args))
            if code != 0:
                return code
            summary = json.loads(captured.text)
            hub_rss = peak_rss_mb(hub.pid)
        finally:
            hub.send_signal(signal.SIGTERM)
            try:
                hub.wait(timeout=10)
            except subprocess.TimeoutExpired:
                hub.kill()
        verified = sha256_file(out) == sha256_file(source) == summary["sha256"]
        print(
            f"demo: {summary['bytes']} bytes over a WebRTC DataChannel in {summary['seconds']} s "
            f"({summary['mb_per_s']} MB/s)\n"
            f"demo: peak RSS hub {hub_rss:.0f} MB, worker {summary['peak_rss_mb']:.0f} MB\n"
            f"demo: sha256 {summary['sha256']} {'verified' if verified else 'MISMATCH'}"
        )
        return 0 if verified else 3


class _Capture:
    """Collects what the fetch command prints (its JSON summary)."""

    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass


def _cmd_bench(argv: list[str]) -> int:
    here = Path.cwd()
    if not (here / "benchmarks" / "__main__.py").exists():
        return _fail("run 'rxchannel bench' from a source checkout (it runs benchmarks/)", 1)
    sys.path.insert(0, str(here))
    bench = importlib.import_module("benchmarks.__main__")
    return int(bench.main(argv))


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
        p.add_argument("--ice-server", action="append", default=[], help="STUN/TURN URL (none by default)")
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
    serve.add_argument("--inbox", default=None, help="where pushed files go (default ROOT/inbox)")
    serve.add_argument("--chunk-size", type=int, default=64 * 1024, help="bytes per item of a file stream")
    common(serve)

    fetch = sub.add_parser("fetch", help="fetch a file from a hub")
    fetch.add_argument("url")
    fetch.add_argument("remote_path")
    fetch.add_argument("-o", "--output")
    fetch.add_argument("--window", type=_window, default=32, help="chunks in flight, or 'auto' (default 32)")
    fetch.add_argument("--no-resume", action="store_true")
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
            return _cmd_demo(args)
        command = {"serve": _cmd_serve, "fetch": _cmd_fetch, "send": _cmd_send}[args.command]
        return int(asyncio.run(command(args)))
    except (RxChannelError, OSError, ValueError) as exc:
        return _fail(str(exc), 1)
    except KeyboardInterrupt:
        return 130


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
