"""The commands that talk to peers: ``serve``, ``fetch``, ``send``."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from rxchannel.core import Budget, ConnectionConfig, ConnectionLostError, RemoteError, with_secret
from rxchannel.files import (
    FILE_CHANGED,
    FileBusyError,
    Hub,
    IntegrityError,
    TargetExistsError,
    TooLargeError,
    TransferResult,
    fetch_file,
    push_file,
)
from rxchannel.runtime import connect, serve
from rxchannel.transports import ListenLimits
from rxchannel.web import WorkerPage

from .ice import options_from
from .progress import progress_bar
from .units import peak_rss_mb

__all__ = ["cmd_fetch", "cmd_send", "cmd_serve", "fail"]


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


def fail(message: str, code: int) -> int:
    print(f"rxchannel: {message}", file=sys.stderr)
    return code


def _config(args: argparse.Namespace, *, server: bool) -> ConnectionConfig | None:
    # a hub's connections share one budget for unfinished fragmented items (on top of each one's own)
    shared = Budget(256 << 20, "the hub's budget for fragmented items") if server else None
    config = ConnectionConfig(
        keepalive_interval=args.keepalive,
        max_lifetime=args.max_lifetime,
        max_streams=args.max_streams,
        shared_reassembly=shared,
    )
    return with_secret(config, args.secret, server=server)


def _free_space(out: Path) -> int:
    """What a fetch may write by default: the free space where ``out`` goes, minus a reserve."""
    directory = out.parent if str(out.parent) else Path(".")
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    return max(0, shutil.disk_usage(directory).free - (64 << 20))


def _transfer_failed(exc: BaseException, refused: str, lost_hint: str) -> int:
    """Print why a transfer failed and return its exit code (see the module docstring)."""
    if isinstance(exc, RemoteError) and exc.code == FILE_CHANGED:
        return fail(f"{exc.message} (run the same command again)", 4)
    if isinstance(exc, RemoteError):
        return fail(f"{refused}: {exc.message or exc}", 2)
    if isinstance(exc, (FileBusyError, TargetExistsError)):
        return fail(str(exc), 1)
    if isinstance(exc, TooLargeError):
        return fail(f"{exc}: raise --max-size (or free disk space) to accept it; the partial file is kept", 1)
    if isinstance(exc, IntegrityError):
        return fail(str(exc), 3)
    return fail(f"connection lost: {exc}{lost_hint}", 4)


async def cmd_fetch(args: argparse.Namespace) -> int:
    out = Path(args.output or Path(args.remote_path).name)
    peer = await connect(args.url, config=_config(args, server=False), options=options_from(args))
    try:
        with progress_bar(sys.stderr.isatty() and (args.progress or not args.json), out.name) as update:
            result = await fetch_file(
                peer,
                args.remote_path,
                out,
                window=args.window,
                resume=not args.no_resume,
                progress=update,
                max_size=args.max_size if args.max_size is not None else _free_space(out),
                shared=args.shared,
            )
    except (RemoteError, IntegrityError, ConnectionLostError, ConnectionError, FileBusyError, TooLargeError) as exc:
        return _transfer_failed(
            exc, f"the hub refused {args.remote_path!r}", "; the partial file is kept, run again to resume"
        )
    finally:
        await peer.close()
    summary = _summary(result)
    if args.shared:
        summary["shared_bytes"] = result.shared  # what came from the hub's shared read (the rest: files/)
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{out}: {result.size} bytes in {result.seconds:.2f} s ({result.mb_per_s:.1f} MB/s), sha256 verified")
    return 0


async def cmd_send(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        return fail(f"{path} is not a file", 1)
    peer = await connect(args.url, config=_config(args, server=False), options=options_from(args))
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


async def cmd_serve(args: argparse.Namespace) -> int:
    hub = Hub(
        args.root,
        inbox=args.inbox,
        chunk_size=args.chunk_size,
        max_upload=args.max_upload,
        max_open_files=args.max_open_files,
    )
    page = WorkerPage()
    listen = ListenLimits(max_connections=args.max_connections, max_per_address=max(1, args.max_connections // 8))
    try:
        service = await serve(
            hub.router,
            transport=args.transport,
            host=args.host,
            port=args.port,
            config=_config(args, server=True),
            options=options_from(args, http_setup=page.setup, listen_limits=listen),
        )
    except ConnectionError as exc:  # e.g. the TURN server refused the hub's credentials
        hub.close()
        return fail(f"cannot start the hub: {exc}", 1)
    for url in service.urls:  # the first line is a usable URL; a wildcard bind prints one per address
        print(url, flush=True)
    print(f"serving {hub.root} over {args.transport}; Ctrl-C to stop", file=sys.stderr, flush=True)
    if args.turn_url and not args.secret:
        print(
            "note: --turn-url without --secret: anyone who reaches this hub can get TURN credentials "
            "(GET /ice-servers); give the hub a --secret on untrusted networks",
            file=sys.stderr,
            flush=True,
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await service.close()
    hub.close()
    return 0
