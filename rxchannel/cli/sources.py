"""``fetch URL PATH --source URL2 …``: one file from several hubs at once, each chunk verified.

The first URL is the authority for the file's manifest; the others are dialed together,
and one that cannot be dialed, or whose manifest differs, is listed as dropped and not
used. ``--json`` adds ``"sources": [{"url", "bytes", "chunks", "dropped"}]``; the progress
bar says how many sources are feeding it. Each source's window is ``auto`` unless
``--window`` is given (a fixed one holds as much in flight on a slow link as on a fast one).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from rxchannel.files import TargetExistsError, fetch_file
from rxchannel.runtime import Peer

from .commands import _connect, _fetch_options, _fetch_progress, _note, _show, _summary, route_of
from .errors import UsageError, printable
from .outputs import check_parents, file_target, is_directory_fetch
from .units import format_size

__all__ = ["fetch_from_sources"]


async def fetch_from_sources(args: argparse.Namespace) -> int:
    """Fetch ``args.remote_path`` from ``args.url`` and every ``--source``, each chunk verified."""
    if is_directory_fetch(args):
        raise UsageError("--source and --verify chunks fetch one file; a directory comes from one hub")
    out = file_target(args)
    if out.exists() and not args.force:  # before dialing: nothing to undo
        raise TargetExistsError(f"{out} already exists; it was not replaced")
    named = bool(args.output and args.output.endswith("/"))  # -o DIR/: DIR itself may be created
    check_parents(out.parent if str(out.parent) else Path("."), args, named=named)
    if args.shared:
        raise UsageError("--shared reads from one hub; it cannot be combined with --source")
    urls = [args.url, *(args.sources or [])]
    if len(set(urls)) != len(urls):
        raise UsageError("each --source must be a different URL (and not the first URL again)")
    part = out.with_name(out.name + ".part")
    if part.exists() and not args.no_resume and part.stat().st_size:
        _note(f"resuming {out.name}: its partial copy {part.name} is checked chunk by chunk first")
    # a fixed window keeps as much in flight on the slowest link as on the fastest, and what is in
    # flight cannot go to another source: unless told otherwise, each source's window adapts to it
    window = args.window if "--window" in getattr(args, "argv", ()) else "auto"
    dialed = await asyncio.gather(*(_connect(args, url) for url in urls), return_exceptions=True)
    first = dialed[0]
    peers = [p for p in dialed if isinstance(p, Peer)]
    try:
        if isinstance(first, BaseException):
            raise first
        unreachable = {
            url: str(p) or type(p).__name__ for url, p in zip(urls, dialed, strict=True) if not isinstance(p, Peer)
        }
        with _fetch_progress(args, first, out.name) as bar:
            result = await fetch_file(
                first,
                args.remote_path,
                out,
                window=window,
                peers=[(url, p) for url, p in zip(urls[1:], dialed[1:], strict=True) if isinstance(p, Peer)],
                verify="chunks",
                stall_timeout=args.stall_timeout,
                feeding=bar.feeding if bar is not None else None,
                **_fetch_options(args, bar, out),
            )
    finally:
        await asyncio.gather(*(p.close() for p in peers), return_exceptions=True)
    # reports come in the order of the peers given: the authority, then each source dialed
    reports = iter(result.sources)
    sources: list[dict[str, Any]] = []
    for url, peer in zip(urls, dialed, strict=True):
        if isinstance(peer, Peer):
            sources.append(next(reports).to_json() | {"url": url})
        else:
            sources.append({"url": url, "bytes": 0, "chunks": 0, "dropped": f"unreachable: {unreachable[url]}"})
    summary = _summary(result) | {"reconnects": first.reconnects, "sources": sources} | route_of(first)
    if not args.json:
        for entry in sources:
            if entry["dropped"]:
                _note(f"{entry['url']} was dropped: {entry['dropped']}")
    resumed = f", {format_size(result.resumed_from)} kept from {part.name}" if result.resumed_from else ""
    used = sum(1 for e in sources if e["chunks"])
    _show(
        args,
        summary,
        f"{printable(out)}: {result.size} bytes in {result.seconds:.2f} s ({result.mb_per_s:.1f} MB/s "
        f"from {used} source(s){resumed}), each chunk and the sha256 verified",
    )
    return 0
