"""Facade overhead, same run, alternating: what demand costs per item.

* Rx: items/s through ``windowed(64)`` over an in-process demand source vs a plain
  reactivex ``map`` pipeline over the same items.
* async iteration: items/s of ``async for`` over a request-stream on a memory transport
  (the whole protocol: frames, credit, two peers) vs a plain async generator.

    python -m benchmarks.pipelines [--items N] [--rounds R] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import reactivex
from reactivex import operators as ops

import rxchannel as rx
from rxchannel import reactive as rxc
from rxchannel.core import Role
from rxchannel.operators import windowed
from rxchannel.runtime import Peer
from rxchannel.transports import memory_pair

from ._report import emit_json, median, print_table


async def _rx_rate(source: Any, n: int) -> float:
    """Items/s through ``source | map(+1)`` into a counting observer."""
    done = asyncio.get_running_loop().create_future()
    count = 0

    def on_next(_x: Any) -> None:
        nonlocal count
        count += 1

    start = time.perf_counter()
    source.pipe(ops.map(lambda x: x + 1)).subscribe(on_next=on_next, on_completed=lambda: done.set_result(None))
    await done
    assert count == n
    return n / (time.perf_counter() - start)


async def rx_plain(n: int) -> float:
    return await _rx_rate(reactivex.from_iterable(range(n)), n)


async def rx_windowed(n: int) -> float:
    return await _rx_rate(rxc.from_iterable(range(n)).pipe(windowed(64)), n)


async def aio_plain(n: int) -> float:
    async def gen() -> AsyncIterator[bytes]:
        item = b"x" * 64
        for _ in range(n):
            yield item

    start = time.perf_counter()
    count = 0
    async for _ in gen():
        count += 1
    return count / (time.perf_counter() - start)


async def aio_remote(n: int) -> float:
    router = rx.Router()

    @router.stream("items")
    async def items(request: rx.Request) -> AsyncIterator[bytes]:
        item = b"x" * 64
        for _ in range(n):
            yield item

    a, b = memory_pair()
    server = Peer(b, Role.SERVER, router=router)
    client = Peer(a, Role.CLIENT)
    start = time.perf_counter()
    count = 0
    async for _ in client.request_stream("items", window=64):
        count += 1
    rate = count / (time.perf_counter() - start)
    await client.close()
    await server.close()
    assert count == n
    return rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    n = args.items // (4 if args.quick else 1)
    pairs = [
        ("rx: windowed(64) vs plain map", rx_windowed, rx_plain),
        ("async for: remote stream (memory) vs plain generator", aio_remote, aio_plain),
    ]
    rows = []
    for name, ours, baseline in pairs:
        a: list[float] = []
        b: list[float] = []
        for _ in range(args.rounds):
            a.append(asyncio.run(ours(n)))
            b.append(asyncio.run(baseline(n)))
        row = {
            "bench": "pipelines",
            "case": name,
            "items": n,
            "ours_items_s": median(a),
            "baseline_items_s": median(b),
            "cost": median(b) / median(a),
        }
        rows.append(row)
        if args.json:
            emit_json(row)
    if not args.json:
        print_table(
            f"Facade overhead, {n} items, median of {args.rounds} alternating rounds",
            ["case", "rxchannel items/s", "baseline items/s", "cost (x slower)"],
            [[r["case"], r["ours_items_s"], r["baseline_items_s"], f"{r['cost']:.1f}x"] for r in rows],
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
