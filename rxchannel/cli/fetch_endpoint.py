"""``fetch URL endpoints/NAME/PATH``: an endpoint's response body into a file or standard output (issue 27).

The body is written to OUT through ``OUT.part``, moved into place once it is complete
(nothing resumes: an HTTP response has no digest to resume against), or to standard
output with ``-o -``. It arrives with the same demand as a file: the hub reads the
upstream only as this command writes. A status of 400 or more exits 2 with the status
and the first line of the body, and writes nothing; an upstream that cannot be reached,
times out or breaks off exits 4 (run it again).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from rxchannel.files import TargetExistsError, TooLargeError
from rxchannel.hub.endpoint_client import EndpointResponse, request_endpoint
from rxchannel.pipes import PipeClosedError, stdout_writer, to_writer

from .commands import _connect, _follow_link, route_of
from .endpoints import ENDPOINTS
from .errors import UsageError, printable
from .progress import progress_bar
from .units import peak_rss_mb

__all__ = ["fetch_endpoint"]


def _split(remote_path: str) -> tuple[str, str]:
    name, _, rest = remote_path[len(ENDPOINTS) :].partition("/")
    if not name:
        raise UsageError(f"{remote_path!r}: name the endpoint, as in endpoints/NAME/PATH")
    return name, rest


def _target(args: argparse.Namespace, name: str, rest: str) -> Path:
    last = rest.partition("?")[0].rstrip("/").rsplit("/", 1)[-1] or name
    if args.output is None:
        return Path(last)
    out = Path(args.output)
    return out / last if args.output.endswith("/") or out.is_dir() else out


async def fetch_endpoint(args: argparse.Namespace) -> int:
    """``fetch URL endpoints/NAME/PATH``: the response body into OUT (or standard output)."""
    if args.shared:
        raise UsageError("--shared reads a file once for many workers; an endpoint's response is not a file")
    name, rest = _split(args.remote_path)
    to_stdout = args.output == "-"
    out = None if to_stdout else _target(args, name, rest)
    if out is not None and out.exists() and not args.force:
        raise TargetExistsError(f"{out} already exists; it was not replaced")
    shown = out.name if out is not None else args.remote_path
    peer = await _connect(args)
    start = time.perf_counter()
    try:
        with progress_bar(sys.stderr.isatty() and (args.progress or not args.json), shown) as update:
            _follow_link(peer, update)
            response = await request_endpoint(peer, name, rest, window=args.window)
            if not response.ok:
                await response.raise_for_status()  # EndpointStatusError: exit 2, with the body's first line
            if out is None:
                try:
                    async with stdout_writer() as writer:
                        written, digest = await _to_stdout(response, writer, args.max_size, update)
                except PipeClosedError:
                    return 128 + 13  # the reader went away (| head): quietly, as cat does
            else:
                written, digest = await _to_file(response, out, args.force, args.max_size, update)
    finally:
        await peer.close()
    seconds = time.perf_counter() - start
    summary: dict[str, Any] = {
        "output": str(out) if out is not None else "-",
        "type": "endpoint",
        "status": response.status,
        "content_type": response.headers.get("content-type"),
        "bytes": written,
        "seconds": round(seconds, 3),
        "mb_per_s": round(written / seconds / 1e6, 2) if seconds > 0 else 0.0,
        "sha256": digest,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "reconnects": peer.reconnects,
    } | route_of(peer)
    line_to = sys.stderr if to_stdout else sys.stdout
    if args.json:
        print(json.dumps(summary), file=line_to, flush=True)
    elif not to_stdout or sys.stderr.isatty():
        kind = response.headers.get("content-type", "no content type")
        print(
            f"{printable(summary['output'])}: endpoint {printable(name)}, HTTP {response.status} "
            f"({printable(kind)}), {written} bytes in {seconds:.2f} s",
            file=line_to,
            flush=True,
        )
    return 0


def _check_size(written: int, max_size: int | None) -> None:
    if max_size is not None and written > max_size:
        raise TooLargeError(f"the endpoint's response is larger than {max_size} bytes (--max-size)")


async def _to_file(
    response: EndpointResponse, out: Path, force: bool, max_size: int | None, update: Any
) -> tuple[int, str]:
    part = out.with_name(out.name + ".part")
    digest = hashlib.sha256()
    written = 0
    handle = await asyncio.to_thread(open, part, "wb")
    try:
        try:
            async for chunk in response:  # the next chunk is pulled (and its credit freed) once this one is written
                written += len(chunk)
                _check_size(written, max_size)
                digest.update(chunk)
                await asyncio.to_thread(handle.write, chunk)
                if update is not None:
                    update(written, response.size, response.stream.in_flight)
            await asyncio.to_thread(handle.flush)
        finally:
            await asyncio.to_thread(handle.close)
        if out.exists() and not force:
            raise TargetExistsError(f"{out} appeared while the response came; it was not replaced")
        part.replace(out)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return written, digest.hexdigest()


async def _to_stdout(response: EndpointResponse, writer: Any, max_size: int | None, update: Any) -> tuple[int, str]:
    digest = hashlib.sha256()
    written = 0

    def counted(item: Any) -> None:
        nonlocal written
        written += len(item.data)
        _check_size(written, max_size)
        digest.update(item.data)
        if update is not None:
            update(written, response.size, response.stream.in_flight)

    await to_writer(response, writer, on_written=counted)
    return written, digest.hexdigest()
