"""A slow worker paces the hub's disk: the hub's read offset against what the worker has
consumed, over time.

A hub (``Hub`` over TCP, in this process) serves a file; a worker takes its chunks with a
window of ``--window`` items and consumes them at ``--rate`` MB/s (an ``async for`` that
sleeps per chunk, as a slow disk or a slow network would). Every 50 ms the run records how
far the hub's file source has read and how many bytes the worker has consumed. With demand
end to end, the hub's reads follow the worker's consumption, never more than the window (and
the chunk the producer holds) ahead, whatever the file's size.

    python -m benchmarks.slow_worker [--size 16MiB] [--rate 4] [--window 8] [--json] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ._report import emit_json, print_table

CHUNK = 64 * 1024


async def run(size: int, rate: float, window: int, every: float = 0.05) -> dict[str, Any]:
    import rxchannel as rxc
    from rxchannel.hub import Hub, HubLimits

    with tempfile.TemporaryDirectory(prefix="rxbench-slow-") as tmp:
        path = Path(tmp, "big.bin")
        with open(path, "wb") as handle:
            handle.truncate(size)  # sparse: the page cache, not the device, is what is read
        hub = Hub(tmp, limits=HubLimits(chunk_size=CHUNK))
        server = await rxc.serve_tcp(hub.router)
        consumed = most_ahead = 0
        samples: list[list[float]] = []
        start = time.perf_counter()

        seen: set[Any] = set()

        def hub_read() -> int:
            """How far the hub has read the file (a source leaves ``hub.sources`` once closed: kept here)."""
            seen.update(hub.sources)
            return sum(source.read_offset for source in seen)

        async def sample() -> None:
            while True:
                samples.append([round(time.perf_counter() - start, 3), hub_read(), consumed])
                await asyncio.sleep(every)

        sampler = asyncio.create_task(sample())
        try:
            async with await rxc.connect_tcp("127.0.0.1", server.port) as peer:
                async for chunk in peer.request_stream("files/big.bin", window=window):
                    await asyncio.sleep(len(chunk.data) / (rate * 1e6))  # a slow consumer
                    consumed += len(chunk.data)
                    most_ahead = max(most_ahead, hub_read() - consumed)
        finally:
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)
            await server.close()
            hub.close()
        samples.append([round(time.perf_counter() - start, 3), size, consumed])
    return {
        "size": size,
        "rate_mb_s": rate,
        "window": window,
        "chunk": CHUNK,
        "max_lead_bytes": most_ahead,
        "bound_bytes": (window + 1) * CHUNK,
        "seconds": round(time.perf_counter() - start, 2),
        "samples": samples,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="16MiB", help="file size (default 16MiB)")
    parser.add_argument("--rate", type=float, default=4.0, help="the worker's pace in MB/s (default 4)")
    parser.add_argument("--window", type=int, default=8, help="chunks in flight (default 8)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true", help="4 MiB at 4 MB/s")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="asyncio", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from rxchannel.cli.units import parse_size

    size = parse_size("4MiB") if args.quick else parse_size(args.size)
    result = asyncio.run(run(size, args.rate, args.window))
    if args.json:
        emit_json({"benchmark": "slow_worker", **result})
        return 0
    print_table(
        f"a worker consuming {args.rate:g} MB/s with a window of {args.window} x 64 KiB: how far the hub read ahead",
        ["file", "seconds", "hub ahead at most", "window + 1 chunk"],
        [[f"{size >> 20} MiB", result["seconds"], f"{result['max_lead_bytes']:,} B", f"{result['bound_bytes']:,} B"]],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
