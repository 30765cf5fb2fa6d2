"""``-`` as the standard streams: ``fetch URL PATH -o -`` writes standard output, ``send URL -
--name NAME`` reads standard input (issue 31).

The pipe's own backpressure is the demand (:mod:`rxchannel.pipes`): a slow reader of
``fetch -o -`` slows the hub's reads of the file, and ``send -`` reads standard input only
as the hub grants credit. Nothing is written to disk, so nothing resumes: the digest is
checked at the end, after the bytes went out (a mismatch exits 3 with a message on
stderr: discard what was read). Standard output is the data, so everything else goes to
stderr: the progress bar (on a terminal), the summary line (on a terminal), and the
``--json`` line (always, the summary or ``{"error", "exit"}``). A reader that goes away
(EPIPE: ``| head -c 100``) cancels the stream on the hub and ends the command quietly
with exit status 141, as ``cat`` ends under ``head`` (128 + SIGPIPE, what a shell reports
for it). Any other command goes to :mod:`.commands` unchanged; a file named ``-`` is
written or sent as ``./-``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys

from rxchannel.pipes import PipeClosedError, fetch_to, push_from, stdin_source, stdout_writer

from .commands import _connect, _follow_link, route_of
from .commands import cmd_fetch as fetch_to_file
from .commands import cmd_send as send_file
from .endpoints import is_endpoint
from .errors import UsageError, printable
from .fetch_endpoint import fetch_endpoint
from .progress import progress_bar
from .sources import fetch_from_sources
from .units import peak_rss_mb

__all__ = ["EXIT_PIPE", "STDIO", "cmd_fetch", "cmd_send", "stdout_is_data"]

#: the reader of standard output went away: what a shell reports for ``cat`` under ``head``
EXIT_PIPE = 128 + signal.SIGPIPE

#: the name that means a standard stream
STDIO = "-"


def stdout_is_data(args: argparse.Namespace) -> bool:
    """Whether standard output carries the fetched bytes (then nothing else may go there)."""
    return getattr(args, "command", None) == "fetch" and getattr(args, "output", None) == STDIO


async def cmd_fetch(args: argparse.Namespace) -> int:
    """``fetch``: to standard output with ``-o -``, else :func:`.commands.cmd_fetch`; an
    endpoint's response (``endpoints/NAME/PATH``) with :func:`.fetch_endpoint.fetch_endpoint`;
    from several sources (or each chunk verified) with :func:`.sources.fetch_from_sources`."""
    if is_endpoint(args.remote_path):
        return await fetch_endpoint(args)
    if args.sources or args.verify == "chunks":
        if stdout_is_data(args):
            raise UsageError("--source and --verify chunks write a file (chunks arrive out of order): not -o -")
        return await fetch_from_sources(args)
    if not stdout_is_data(args):
        return await fetch_to_file(args)
    if args.remote_path.endswith("/"):
        raise UsageError(
            f"{args.remote_path} is a directory, and -o - writes one file to standard output: "
            "fetch it into a directory instead (-o DIR/)"
        )
    if args.shared:
        raise UsageError("--shared cannot write to standard output (-o -): fetch into a file to join a shared read")
    name = args.remote_path.rsplit("/", 1)[-1]
    peer = await _connect(args)
    try:
        with progress_bar(sys.stderr.isatty() and (args.progress or not args.json), name) as update:
            _follow_link(peer, update)
            async with stdout_writer() as writer:
                result = await fetch_to(
                    peer, args.remote_path, writer, window=args.window, progress=update, max_size=args.max_size
                )
    except PipeClosedError:
        return EXIT_PIPE  # the reader has had enough (| head): the hub's stream was cancelled; nothing to say
    finally:
        await peer.close()
    summary = {
        "output": STDIO,
        "type": "file",
        "bytes": result.size,
        "received": result.size,
        "resumed_from": 0,
        "seconds": round(result.seconds, 3),
        "mb_per_s": round(result.mb_per_s, 2),
        "sha256": result.sha256,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "reconnects": peer.reconnects,
    } | route_of(peer)
    if args.json:
        print(json.dumps(summary), file=sys.stderr, flush=True)
    elif sys.stderr.isatty():
        print(
            f"{printable(name)} -> standard output: {result.size} bytes in {result.seconds:.2f} s "
            f"({result.mb_per_s:.1f} MB/s), sha256 verified",
            file=sys.stderr,
            flush=True,
        )
    return 0


async def cmd_send(args: argparse.Namespace) -> int:
    """``send``: standard input with ``-``, else :func:`.commands.cmd_send`."""
    if args.file != STDIO:
        return await send_file(args)
    if not args.name:
        raise UsageError("send - reads standard input, which has no name: give its name in the inbox with --name NAME")
    peer = await _connect(args)
    try:
        with progress_bar(sys.stderr.isatty() and not args.json, args.name) as update:
            _follow_link(peer, update)
            async with stdin_source() as source:
                receipt, result = await push_from(peer, source, args.name, progress=update)
    finally:
        await peer.close()
    stored = receipt.pop("path")  # the name in the hub's inbox; "path" is the network path, as for fetch
    receipt.update(
        stored=stored,
        seconds=round(result.seconds, 3),
        mb_per_s=round(result.mb_per_s, 2),
        reconnects=peer.reconnects,
        **route_of(peer),
    )
    if args.json:
        print(json.dumps(receipt), flush=True)
    else:
        print(f"sent standard input -> inbox/{printable(stored)} ({receipt['size']} bytes), sha256 verified")
    return 0
