"""The commands that talk to peers: ``serve``, ``fetch``, ``send``, ``ls``.

Each returns 0 or raises; :func:`rxchannel.cli.main` turns what they raise into a message
and an exit code (:mod:`.errors`). What they print of the hub's text passes
:func:`~.errors.printable`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rxchannel.core import Budget, ConnectionConfig, with_secret
from rxchannel.files import (
    DirectoryResult,
    TargetExistsError,
    TransferResult,
    fetch_directory,
    fetch_file,
    list_remote,
    push_file,
)
from rxchannel.hub import Hub, HubLimits
from rxchannel.runtime import Peer, Server, connect, serve
from rxchannel.transports import ListenLimits
from rxchannel.transports.http import HttpListener
from rxchannel.web import WorkerPage
from rxchannel.webrtc.rendezvous import RendezvousLink

from .endpoints import endpoint_limits
from .errors import NothingToFetchError, UsageError, cannot_listen, printable
from .ice import agree_on_path, options_from
from .jetstream import attach_jetstream
from .logs import configure_logging
from .outputs import (
    check_inbox,
    check_parents,
    directory_target,
    file_target,
    free_space,
    is_directory_fetch,
)
from .parser import WHOLE_SHARE
from .processes import processes_for, serve_processes
from .progress import Bar, progress_bar
from .rendezvous import register_link
from .units import format_size, peak_rss_mb

__all__ = ["cmd_fetch", "cmd_ls", "cmd_send", "cmd_serve"]


def _note(text: str) -> None:
    print(f"rxchannel: {printable(text)}", file=sys.stderr, flush=True)


def _summary(result: TransferResult) -> dict[str, Any]:
    return {
        "output": str(result.path),
        "type": "file",  # the hub's first metadata says so (a FileSink refuses any other type)
        "bytes": result.size,
        "received": result.received,
        "resumed_from": result.resumed_from,
        "seconds": round(result.seconds, 3),
        "mb_per_s": round(result.mb_per_s, 2),
        "sha256": result.sha256,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def _config(args: argparse.Namespace, *, server: bool) -> ConnectionConfig | None:
    # a hub's connections share one budget for unfinished fragmented items (on top of each one's own)
    shared = Budget(256 << 20, "the hub's budget for fragmented items") if server else None
    config = ConnectionConfig(
        keepalive_interval=args.keepalive,
        max_lifetime=args.max_lifetime,
        max_streams=args.max_streams,
        shared_reassembly=shared,
        resumable=server and not args.no_session_resume,
        resume_session_timeout=args.resume_timeout,
    )
    return with_secret(config, args.secret, server=server)


async def _connect(args: argparse.Namespace, url: str | None = None) -> Peer:
    """Dial the hub (``url``, else ``args.url``); the session is resumable unless
    --no-session-resume (a hub that does not resume sessions gets a plain connection, with
    one warning). Over WebRTC the path reported is the wider of ours and the hub's view."""
    resume = None if args.no_session_resume else args.resume_timeout
    peer = await connect(
        url or args.url, config=_config(args, server=False), options=options_from(args), resume_timeout=resume
    )
    try:
        await agree_on_path(peer)
    except BaseException:
        await peer.close()
        raise
    return peer


def route_of(peer: Peer) -> dict[str, str | None]:
    """The path the peer's bytes take and the WebRTC stack under it: ``{"path", "stack"}``."""
    return {"path": peer.transport.path, "stack": peer.transport.stack}


def _shown(peer: Peer) -> str:
    route = route_of(peer)
    return f"via {route['path']}" + (f" ({route['stack']})" if route["stack"] else "")


def _follow_link(peer: Peer, bar: Bar | None) -> None:
    """Show the path taken, and say when the connection breaks and when the session is
    resumed (perhaps on another path): on the bar, or a line on stderr."""
    if bar is not None:
        bar.path(_shown(peer))
    if peer.resumption is None:
        return

    def changed(state: str) -> None:
        if bar is not None:
            bar.note("reconnecting…" if state == "reconnecting" else None)
            bar.path(_shown(peer))
        else:
            _note("the connection broke; reconnecting…" if state == "reconnecting" else f"reconnected {_shown(peer)}")

    peer.resumption.on_change = changed


@contextlib.contextmanager
def _fetch_progress(args: argparse.Namespace, peer: Peer, label: str) -> Iterator[Bar | None]:
    """A fetch's progress bar (on a terminal, unless --json without --progress), following ``peer``'s link."""
    with progress_bar(sys.stderr.isatty() and (args.progress or not args.json), label) as bar:
        _follow_link(peer, bar)
        yield bar


def _fetch_options(args: argparse.Namespace, bar: Bar | None, room: Path) -> dict[str, Any]:
    """The keywords every fetch takes from the command line (``room``: where the free disk space is)."""
    return {
        "resume": not args.no_resume,
        "overwrite": args.force,
        "progress": bar,
        "max_size": args.max_size if args.max_size is not None else free_space(room),
    }


def _show(args: argparse.Namespace, summary: dict[str, Any], line: str) -> None:
    """A command's result: ``summary`` as one JSON line with --json, else ``line``."""
    print(json.dumps(summary) if args.json else line, flush=True)


async def cmd_fetch(args: argparse.Namespace) -> int:
    if is_directory_fetch(args):
        return await _fetch_directory(args)
    out = file_target(args)
    if out.exists() and not args.force:  # before dialing: nothing to undo
        raise TargetExistsError(f"{out} already exists; it was not replaced")
    named = bool(args.output and args.output.endswith("/"))  # -o DIR/: DIR itself may be created
    check_parents(out.parent if str(out.parent) else Path("."), args, named=named)
    part = out.with_name(out.name + ".part")
    if part.exists() and not args.no_resume and part.stat().st_size:
        _note(f"resuming {out.name} from {format_size(part.stat().st_size)} (its partial copy {part.name})")
    peer = await _connect(args)
    try:
        with _fetch_progress(args, peer, out.name) as update:
            options = _fetch_options(args, update, out)
            result = await fetch_file(peer, args.remote_path, out, window=args.window, shared=args.shared, **options)
    finally:
        await peer.close()
    if result.restarted:
        _note(f"started {out.name} over from the beginning: {result.restarted}")
    summary = _summary(result) | {"reconnects": peer.reconnects} | route_of(peer)
    if args.shared:
        summary["shared_bytes"] = result.shared  # what came from the hub's shared read (the rest: files/)
    resumed = f", resumed from {format_size(result.resumed_from)}" if result.resumed_from else ""
    _show(
        args,
        summary,
        f"{printable(out)}: {result.size} bytes in {result.seconds:.2f} s ({result.mb_per_s:.1f} MB/s{resumed}), "
        "sha256 verified",
    )
    return 0


async def _fetch_directory(args: argparse.Namespace) -> int:
    whole = args.remote_path in WHOLE_SHARE
    remote = "" if whole else args.remote_path
    name = "the whole share" if whole else args.remote_path.rstrip("/").rsplit("/", 1)[-1]
    out = directory_target(args)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file: a directory fetch needs a directory for -o")
    check_parents(out, args, named=True)
    peer = await _connect(args)
    start = time.perf_counter()
    try:
        with _fetch_progress(args, peer, name) as update:
            options = _fetch_options(args, update, out / "x")
            result: DirectoryResult = await fetch_directory(peer, remote, out, window=args.window, **options)
    finally:
        await peer.close()
    for reason, count in result.skipped.items():
        _note(f"the hub left out {count} name(s) it cannot serve ({reason})")
    if not result.fetched and not result.unchanged:
        if not args.allow_empty:
            under = "in its share" if whole else f"under {args.remote_path!r}"
            raise NothingToFetchError(
                f"the hub has no files {under}, so nothing was fetched (check the name with 'rxchannel ls URL'; "
                "add --allow-empty if an empty directory is a success)"
            )
        out.mkdir(parents=args.parents, exist_ok=True)  # what was asked for: the directory, empty
    seconds = time.perf_counter() - start
    summary = {
        "output": str(out),
        "files": len(result.fetched),
        "unchanged": len(result.unchanged),
        "bytes": result.size,
        "seconds": round(seconds, 3),
        "skipped": result.skipped,
        "reconnects": peer.reconnects,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    } | route_of(peer)
    same = f", {len(result.unchanged)} already here and unchanged" if result.unchanged else ""
    _show(
        args,
        summary,
        f"{printable(out)}/: {len(result.fetched)} file(s), {result.size} bytes in {seconds:.2f} s{same}; "
        "each sha256 verified",
    )
    return 0


async def cmd_ls(args: argparse.Namespace) -> int:
    peer = await _connect(args)
    count = total = 0
    listing = list_remote(peer, args.prefix)
    try:
        async for entry in listing:
            count += 1
            total += entry.size
            if args.json:
                print(json.dumps({"path": entry.path, "size": entry.size}))
            else:
                print(f"{entry.size:>14}  {printable(entry.path)}")
    finally:
        await peer.close()
    for reason, skipped in listing.skipped.items():
        _note(f"the hub left out {skipped} name(s) it cannot serve ({reason})")
    if not args.json:
        print(f"{count} file(s), {format_size(total)}", file=sys.stderr)
    return 0


async def cmd_send(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if path.is_dir():
        raise UsageError(
            f"{path} is a directory, and send takes one file: pack it first, "
            f"e.g. tar c {path} | rxchannel send URL - --name {path.name or 'dir'}.tar"
        )
    if not path.exists():
        raise UsageError(f"no such file: {path}")
    if not path.is_file():
        raise UsageError(f"{path} is not a regular file: send takes one file (or '-' for standard input)")
    if args.name is None:
        try:
            path.name.encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError(
                f"'{printable(path.name)}' is not valid UTF-8, and names on a hub are: give it one with --name NAME"
            ) from None
    peer = await _connect(args)
    start = time.perf_counter()
    try:
        with progress_bar(sys.stderr.isatty() and not args.json, path.name) as update:
            _follow_link(peer, update)
            receipt = await push_file(peer, path, args.name, progress=update)
    finally:
        await peer.close()
    seconds = time.perf_counter() - start
    stored = receipt.pop("path")  # the name in the hub's inbox; "path" is the network path, as for fetch
    receipt.update(
        stored=stored,
        seconds=round(seconds, 3),
        mb_per_s=round(receipt["size"] / seconds / 1e6, 2),
        reconnects=peer.reconnects,
        **route_of(peer),
    )
    if args.json:
        print(json.dumps(receipt), flush=True)
    else:
        where = printable(stored)
        print(f"sent {printable(path)} -> inbox/{where} ({receipt['size']} bytes), sha256 verified")
    return 0


def _hand_back_big_frees() -> None:
    """A hub's big buffers (reads of 64-256 KiB, messages being assembled) go back to the
    system when freed. glibc raises its mmap threshold each time it frees a big mapped block,
    after which such buffers come from the heap and a flood's peak stays resident after it is
    shed: 40 half-sent 6 MiB WebSocket messages under a 16 MiB budget left the hub 60-70 MB
    larger (tests/hostile/test_pressure.py); a fixed threshold at glibc's own starting value
    keeps it within the budget, at no cost measured on a 256 MiB fetch (farm-bench, cpu
    ratio 0.98). Elsewhere than glibc, nothing to do."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 128 << 10)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


async def cmd_serve(args: argparse.Namespace) -> int:
    _hand_back_big_frees()
    check_inbox(args)
    count = processes_for(args)
    if count > 1 and not args.process_of:
        options_from(args)  # every option checked here, where its message is seen, before any child starts
        Hub(args.root, inbox=args.inbox).close()
        return await serve_processes(args, count)
    configure_logging(args.log_level, as_json=args.log_json, process=args.process_of or "")
    page = WorkerPage()
    options = options_from(  # every option checked before anything starts
        args,
        http_setup=page.setup,
        listen_limits=ListenLimits(
            max_connections=args.max_connections,
            max_per_address=max(1, args.max_connections // 8),
            max_unfinished=args.max_unfinished,
        ),
        reuse_port=bool(args.process_of),  # one of a hub's processes: the port is shared
    )
    hub = Hub(
        args.root,
        inbox=args.inbox,
        limits=HubLimits(
            chunk_size=args.chunk_size,
            max_upload=args.max_upload,
            max_upload_per_address=None if args.secret else args.max_upload_per_address,
            max_open_files=args.max_open_files,
        ),
        endpoints=args.endpoint,
        endpoint_limits=endpoint_limits(args),
    )
    if not args.secret:  # the page is served to anyone: its first paint lists files only when anyone may list them
        page.listing = hub.first_files
    try:
        detach = await attach_jetstream(args, hub.router)  # --nats: queue/ and broadcast/ on JetStream
    except BaseException:
        hub.close()
        raise
    try:
        service = await serve(
            hub.router,
            transport=args.transport,
            host=args.host,
            port=args.port,
            config=_config(args, server=True),
            options=options,
        )
    except ConnectionError as exc:  # e.g. the TURN server refused the hub's credentials
        hub.close()
        if detach is not None:
            await detach()
        raise UsageError(f"cannot start the hub: {exc}") from None
    except OSError as exc:
        hub.close()
        if detach is not None:
            await detach()
        raise cannot_listen(args.host, args.port, exc) from None
    # before the URL is printed: whoever read it may stop the hub at once, and it then stops in order
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if args.process_of:  # one of a hub's processes: its parent prints the URLs and registers
        link = None
        for url in service.urls:
            print(url, flush=True)
        # where siblings pass requests on (an HTTP hub's; a TCP hub has none: its sessions stay per process)
        print(f"#private {getattr(service.listener, 'private_url', '')}", flush=True)
        print(flush=True)  # the end of the URLs, for the parent
    else:
        try:
            link = await _register(args, service) if args.rendezvous else None
        except BaseException:
            if detach is not None:
                await detach()
            raise
        if link is not None:
            print(link.public_url, flush=True)  # what workers and pages dial: the hub itself has no open port
        for url in service.urls:  # the first line is a usable URL; a wildcard bind prints one per address
            print(url, flush=True)
        if args.log_level in ("debug", "info"):  # a line for people: --log-level warning keeps stderr for trouble
            print(f"serving {hub.root} over {args.transport}; Ctrl-C to stop", file=sys.stderr, flush=True)
        if detach is not None:
            _note(f"queue/NAME and broadcast/TOPIC are served from JetStream at {args.nats}")
        for endpoint in args.endpoint:
            _note(f"endpoints/{endpoint.name}/PATH goes to {endpoint.url}/PATH")
    if args.turn_url and not args.secret:
        _note(
            "--turn-url without --secret: anyone who reaches this hub can get TURN credentials "
            "(GET /ice-servers); give the hub a --secret on untrusted networks"
        )
    if args.process_of:
        _end_with_parent(loop, stop, service.listener)
    try:
        await stop.wait()
    finally:
        if link is not None:
            await link.close()
        await service.close()
        if detach is not None:
            await detach()
        hub.close()
    return 0


def _end_with_parent(loop: asyncio.AbstractEventLoop, stop: asyncio.Event, listener: object) -> None:
    """One of a hub's processes: its parent writes the siblings' private URLs on our standard
    input (one JSON line), then holds it open; its end is our signal that the parent went,
    however it went. A parent that stops the hub sends SIGTERM first (an orderly stop); one
    that vanished took the hub with it, so we vanish too, as one process would have."""

    def watch() -> None:
        # the raw descriptor, not sys.stdin.buffer: a daemon thread blocked inside the buffered
        # reader holds its lock, and the interpreter's exit then dies with "Fatal Python error:
        # _enter_buffered_busy" on stderr
        fd = sys.stdin.fileno()
        with contextlib.suppress(OSError, ValueError):
            received = b""
            while b"\n" not in received and (chunk := os.read(fd, 4096)):
                received += chunk
            first = received.partition(b"\n")[0]
            if first and isinstance(listener, HttpListener):
                siblings = json.loads(first)
                loop.call_soon_threadsafe(listener.siblings.update, {str(k): str(v) for k, v in siblings.items()})
            if b"\n" in received:
                while os.read(fd, 4096):
                    pass
        if not stop.is_set():
            os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


async def _register(args: argparse.Namespace, service: Server) -> RendezvousLink:
    """Register the hub at ``--rendezvous`` (workers' signaling comes through it from then on)."""
    listener = service.listener
    assert isinstance(listener, HttpListener)
    try:
        return await register_link(args, listener.url, listener.relay_token)
    except UsageError:
        await service.close()
        raise
