"""Processes for the tests that need real ones: ``python -m tests.nodes ROLE ...`` (from the repo root).

* ``hub ROOT [--chunk-size N]`` — a file hub over TCP, plus a ``stats`` route
  (``{"bytes_read", "files_opened"}``); prints its URL.
* ``relay URL [--window W]`` — serves ``files/`` by relaying every request to the hub at
  URL (``rxchannel.fanout.relay``), plus ``stats`` (``{"rss_kb", "in_flight",
  "buffered"}`` of its relayed streams); prints its URL.
* ``worker URL --name N --log FILE [--window W] [--work SECONDS]`` — a work-queue worker on route ``jobs``:
  each job's result is the SHA-256 of its data; the job's id is appended to FILE once it
  is processed (before its ack is sent); prints its ``WorkerStats`` as JSON at the end.

Servers run until their stdin closes (so they never outlive the test that started them).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import time
from typing import Any

import rxchannel as rx
from rxchannel.fanout import Job, Relay, relay, work
from rxchannel.hub import Hub, HubLimits


async def _until_stdin_closes() -> None:
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


def _rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def run_hub(args: argparse.Namespace) -> None:
    hub = Hub(args.root, limits=HubLimits(chunk_size=args.chunk_size))

    @hub.router.response("stats")
    def stats(request: rx.Request) -> bytes:
        return json.dumps({"bytes_read": hub.bytes_read, "files_opened": hub.files_opened}).encode()

    server = await rx.serve_tcp(hub.router)
    print(f"tcp://127.0.0.1:{server.port}", flush=True)
    await _until_stdin_closes()
    await server.close()
    hub.close()


async def run_relay(args: argparse.Namespace) -> None:
    upstream = await rx.connect(args.url)
    relays: list[Relay] = []
    router = rx.Router()

    @router.stream("files/")
    def files(request: rx.Request) -> Relay:
        relays.append(relay(upstream, request.route, request.data, info=request.info or None, window=args.window))
        return relays[-1]

    @router.response("stats")
    def stats(request: rx.Request) -> bytes:
        streams = [r.stream for r in relays]
        return json.dumps(
            {
                "rss_kb": _rss_kb(),
                "in_flight": sum(s.in_flight for s in streams),
                "buffered": sum(s.buffered for s in streams),
            }
        ).encode()

    server = await rx.serve_tcp(router)
    print(f"tcp://127.0.0.1:{server.port}", flush=True)
    await _until_stdin_closes()
    await server.close()
    await upstream.close()


async def run_worker(args: argparse.Namespace) -> None:
    log = os.open(args.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def handle(job: Job) -> bytes:
        time.sleep(args.work)  # the work takes a while: the workers set the pace and hold full windows
        result = hashlib.sha256(job.data).hexdigest().encode()
        os.write(log, b"%d\n" % job.id)  # processed: a kill after this and before the ack makes a duplicate
        return result

    peer = await rx.connect(args.url)
    try:
        stats = await work(peer, "jobs", handle, window=args.window, name=args.name)
    finally:
        await peer.close()
        os.close(log)
    print(json.dumps({"acked": stats.acked, "nacked": stats.nacked, "peak_held": stats.peak_held}), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.nodes")
    roles = parser.add_subparsers(dest="role", required=True)
    hub = roles.add_parser("hub")
    hub.add_argument("root")
    hub.add_argument("--chunk-size", type=int, default=64 * 1024)
    relay_ = roles.add_parser("relay")
    relay_.add_argument("url")
    relay_.add_argument("--window", type=int, default=8)
    worker = roles.add_parser("worker")
    worker.add_argument("url")
    worker.add_argument("--name", required=True)
    worker.add_argument("--log", required=True)
    worker.add_argument("--window", type=int, default=16)
    worker.add_argument("--work", type=float, default=0.0002, help="seconds each job takes")
    args = parser.parse_args(argv)
    runners: dict[str, Any] = {"hub": run_hub, "relay": run_relay, "worker": run_worker}
    asyncio.run(runners[args.role](args))


if __name__ == "__main__":
    main()
