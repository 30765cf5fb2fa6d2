"""Adaptive window vs fixed windows over an emulated path (latency + bandwidth cap), same run.

In-process memory transport with one-way latency and a bandwidth cap; a request-stream
of 16 KiB items. Reports the steady-state throughput (second half of the transfer) as a
fraction of the cap, and the largest receive window in bytes against the path's
bandwidth-delay product. ``adaptive`` is never told the latency.

    python -m benchmarks.adaptive [--quick] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import rxchannel as rxc
from rxchannel.core import Role
from rxchannel.runtime import Peer
from rxchannel.transports import memory_pair

from ._report import add_row, add_run_options, cells, print_table

ITEM = 16 * 1024


async def one_run(latency: float, bandwidth: float, total: int, policy: Any) -> dict[str, float]:
    router = rxc.Router()
    blob = b"a" * ITEM

    @router.stream("data")
    async def data(request: rxc.Request) -> AsyncIterator[bytes]:
        for _ in range(total // ITEM):
            yield blob

    a, b = memory_pair(latency=latency, bandwidth=bandwidth, receive_buffer=16 << 20)
    server = Peer(b, Role.SERVER, router=router)
    client = Peer(a, Role.CLIENT)
    stream = client.request_stream("data", window=policy)
    start = time.perf_counter()
    half_at = None
    received = 0
    max_window_bytes = 0
    async for item in stream:
        received += len(item.data)
        if half_at is None and received >= total // 2:
            half_at = time.perf_counter()
        demand = client.connection.demand(stream.stream_id)
        if demand is not None:
            max_window_bytes = max(max_window_bytes, demand.in_flight * ITEM)
    end = time.perf_counter()
    await client.close()
    await server.close()
    assert half_at is not None
    return {
        "overall_mb_s": total / (end - start) / 1e6,
        "steady_mb_s": (total - total // 2) / (end - half_at) / 1e6,
        "max_window_bytes": max_window_bytes,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bandwidth", type=float, default=8e6, help="bytes/s")
    parser.add_argument("--mb", type=int, default=32, help="MB per run")
    add_run_options(parser)
    args = parser.parse_args(argv)
    total = (8 if args.quick else args.mb) * 1_000_000
    rows: list[dict[str, Any]] = []
    for latency in (0.020, 0.100):
        bdp = args.bandwidth * 2 * latency
        for name, make in (
            ("window 4", lambda: rxc.Window(4)),
            ("window 16", lambda: rxc.Window(16)),
            ("adaptive", lambda: rxc.Adaptive()),
        ):
            result = asyncio.run(one_run(latency, args.bandwidth, total, make()))
            row = {
                "bench": "adaptive",
                "one_way_ms": latency * 1000,
                "policy": name,
                "cap_mb_s": args.bandwidth / 1e6,
                "steady_mb_s": result["steady_mb_s"],
                "of_cap": result["steady_mb_s"] * 1e6 / args.bandwidth,
                "overall_mb_s": result["overall_mb_s"],
                "max_window_kb": result["max_window_bytes"] / 1024,
                "window_over_bdp": result["max_window_bytes"] / bdp,
            }
            add_row(rows, row, args.json)
    if not args.json:
        print_table(
            f"Fixed windows vs adaptive, {ITEM // 1024} KiB items, cap {args.bandwidth / 1e6:g} MB/s, memory transport",
            ["one-way ms", "policy", "steady MB/s", "% of cap", "overall MB/s", "max window KiB", "window / BDP"],
            cells(
                rows,
                "one_way_ms policy steady_mb_s of_cap overall_mb_s max_window_kb window_over_bdp",
                of_cap="{:.0%}",
                window_over_bdp="{:.2f}",
            ),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
