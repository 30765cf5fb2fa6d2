"""A hub process for the multi-source tests: ``python -m tests.sourcehub ROOT [options]`` (from the repo root).

A real :class:`~rxchannel.hub.Hub` over TCP (``--host``, ``--port``), printing its URL, plus
a ``stats`` route: ``{"bytes_read", "ranges", "manifests"}`` (the ``files/`` requests it
got, as ``[offset, end]``, and how many manifests it computed). Faults, for tests:

* ``--manifest-from GOOD`` — announce the manifests of the files under GOOD (the true file)
  while serving the bytes under ROOT (one byte flipped): a hub that lies;
* ``--delay S`` — wait S seconds before each chunk it reads (a slow disk or link);
* ``--stall-after N`` — after N bytes of a stream, send nothing more, ever (a stalled source).

Runs until its stdin closes (never outlives the test that started it) or it is killed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import rxchannel as rx
from rxchannel.files import FileSource, Manifest, ManifestCache
from rxchannel.hub import Hub, HubLimits


class _Twin(ManifestCache):
    """Manifests of the same names under another root (the liar's cover story)."""

    def __init__(self, root: Path, good: Path):
        super().__init__()
        self.root, self.good = root, good

    async def get(self, path: Path) -> Manifest:
        return await super().get(self.good / path.relative_to(self.root))


class _Slow:
    """A FileSource that waits before each chunk, or stops for good after ``stall_after`` bytes."""

    marks_last = True

    def __init__(self, source: FileSource, delay: float, stall_after: int | None):
        self.source, self.delay, self.stall_after = source, delay, stall_after

    def __aiter__(self) -> AsyncIterator[rx.Payload]:
        return self._items()

    async def _items(self) -> AsyncIterator[rx.Payload]:
        sent = 0
        async for item in self.source:
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.stall_after is not None and sent >= self.stall_after:
                await asyncio.Event().wait()  # a source that stopped sending and never says so
            sent += len(item.data)
            yield item


async def main(args: argparse.Namespace) -> None:
    root = Path(args.root).resolve()
    hub = Hub(root, limits=HubLimits(chunk_size=args.chunk_size))
    if args.manifest_from:
        hub.manifests = _Twin(root, Path(args.manifest_from).resolve())
    ranges: list[list[int]] = []
    plain = hub.stream_file

    async def stream_file(request: rx.Request) -> Any:
        spec = json.loads(request.data) if request.data else {}
        source = await plain(request)
        ranges.append([spec.get("offset", 0), spec.get("end", source.size)])
        if args.delay or args.stall_after is not None:
            return _Slow(source, args.delay, args.stall_after)
        return source

    hub.router.stream("files/")(stream_file)

    @hub.router.response("stats")
    def stats(request: rx.Request) -> bytes:
        computed = hub.manifests.computed
        return json.dumps({"bytes_read": hub.bytes_read, "ranges": ranges, "manifests": computed}).encode()

    server = await rx.serve(hub.router, transport="tcp", host=args.host, port=args.port)
    print(f"tcp://{args.host}:{server.port}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.close()
    hub.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m tests.sourcehub")
    parser.add_argument("root")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--chunk-size", type=int, default=64 * 1024)
    parser.add_argument("--manifest-from")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--stall-after", type=int, default=None)
    asyncio.run(main(parser.parse_args()))
