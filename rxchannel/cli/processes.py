"""``rxchannel serve --processes N``: one hub, N processes on one port.

The parent binds the port (``SO_REUSEPORT``, so that a port of 0 is chosen once) and starts
N ``rxchannel serve`` children on it; the kernel hands each new connection (an offer, a
WebSocket, a TCP peer) to one of them, and the child that answers an offer owns that peer
connection. Limits stay hub-wide: each child gets its share of ``--max-connections``,
``--max-open-files`` and ``--max-pending-offers``. Each child logs with its place
(``[2/4]``), so the hub's log shows which process served whom. The parent registers at a
rendezvous (relaying to the shared port, with a relay token the children know), forwards
Ctrl-C and SIGTERM, and ends the hub if a child dies.

What is per process: shared reads (``share/``: workers that ask together are joined only
within the process that took them) and the in-memory work queue.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import sys

from .errors import UsageError, cannot_listen
from .rendezvous import register_link

__all__ = ["child_argv", "processes_for", "serve_processes"]


def processes_for(args: argparse.Namespace) -> int:
    """How many processes ``serve`` runs: ``--processes``, or for ``auto`` one per core when
    the hub speaks WebRTC (aiortc's DTLS and SCTP run in Python: one process is one core),
    else one."""
    if args.processes != "auto":
        return int(args.processes)
    return max(1, os.cpu_count() or 1) if args.transport == "webrtc" else 1


def child_argv(argv: list[str], index: int, count: int, port: int, args: argparse.Namespace) -> list[str]:
    """The command line of child ``index`` (0-based): the parent's, with its share of the limits."""
    share = [
        "--max-connections", str(max(1, args.max_connections // count)),
        "--max-open-files", str(max(1, args.max_open_files // count)),
        "--max-unfinished", str(max(1 << 20, args.max_unfinished // count)),
    ]  # fmt: skip
    if args.transport == "webrtc":
        share += ["--max-pending-offers", str(max(1, args.max_pending_offers // count))]
    return [
        sys.executable, "-m", "rxchannel", *argv,
        "--port", str(port), "--processes", "1", "--process-of", f"{index + 1}/{count}", *share,
    ]  # fmt: skip


def _reserve(host: str, port: int) -> socket.socket:
    """A socket bound (not listening) to ``host:port`` with SO_REUSEPORT: fixes the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise cannot_listen(host, port, exc) from None
    return sock


async def serve_processes(args: argparse.Namespace, count: int) -> int:
    """Run the hub as ``count`` child processes on one port until interrupted; 0 on a clean stop."""
    reserved = _reserve(args.host, args.port)
    port = reserved.getsockname()[1]
    env = {**os.environ, "RXCHANNEL_RELAY_TOKEN": secrets.token_urlsafe(24)}
    privates: dict[str, str] = {}
    argv = list(args.argv)  # its --processes is overridden by the "--processes 1" added last
    children = []
    try:
        for index in range(count):
            children.append(
                await asyncio.create_subprocess_exec(
                    *child_argv(argv, index, count, port, args),
                    stdin=asyncio.subprocess.PIPE,  # the siblings' addresses, then held open: a child ends with us
                    stdout=asyncio.subprocess.PIPE,
                    env={**env, "RXCHANNEL_PROCESS": str(index + 1)},
                )
            )
        urls: list[str] = []
        for index, child in enumerate(children):
            assert child.stdout is not None
            lines = []
            while line := (await child.stdout.readline()).decode().strip():
                if line.startswith("#private"):
                    if line.split(" ", 1)[1:] != [""]:
                        privates[str(index + 1)] = line.split(" ", 1)[1]
                else:
                    lines.append(line)
            if not lines:
                code = await child.wait()
                raise UsageError(f"process {index + 1}/{count} of the hub did not start (exit {code})")
            urls = urls or lines
        for child in children:  # each learns where its siblings are (a resumed session may land on any)
            assert child.stdin is not None
            child.stdin.write(json.dumps(privates).encode() + b"\n")
            await child.stdin.drain()
        stop = asyncio.Event()  # before the URLs are printed: whoever read them may stop the hub at once
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        link = await register_link(args, urls[0], env["RXCHANNEL_RELAY_TOKEN"]) if args.rendezvous else None
        if link is not None:
            print(link.public_url, flush=True)
        for url in urls:
            print(url, flush=True)
        if args.log_level in ("debug", "info"):  # a line for people: --log-level warning keeps stderr for trouble
            line = f"serving {args.root} with {count} processes on one port; Ctrl-C to stop"
            print(line, file=sys.stderr, flush=True)
        ended = [asyncio.ensure_future(child.wait()) for child in children]
        waiting = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait([waiting, *ended], return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if link is not None:
            await link.close()
        died = [i for i, e in enumerate(ended) if e in done]
        if died:
            print(f"rxchannel: process {died[0] + 1}/{count} of the hub ended; stopping the others", file=sys.stderr)
        return 0 if not died else 1
    finally:
        for child in children:
            if child.returncode is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                async with asyncio.timeout(15):
                    await child.wait()
            except TimeoutError:
                child.kill()
                await child.wait()
        reserved.close()
