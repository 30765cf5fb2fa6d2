"""Facade overhead, same run, alternating: what demand costs per item.

* Rx: items/s through ``windowed(64)`` over an in-process demand source vs a plain
  reactivex ``map`` pipeline over the same items.
* async iteration: items/s of ``async for`` over a request-stream on a memory transport
  (the whole protocol: frames, credit, two peers) vs a plain async generator.

Every case runs in this one process, so besides wall-clock items/s each reports items per
CPU-second of the process (``time.process_time``): what the item path costs, unaffected by
other work on the machine. The cost columns are medians of the per-round ratios.

    python -m benchmarks.pipelines [--items N] [--rounds R] [--loop uvloop|asyncio|both] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import reactivex as rx
from reactivex import operators as ops

import rxchannel as rxc
from rxchannel import reactive
from rxchannel.core import Role
from rxchannel.operators import windowed
from rxchannel.runtime import Peer
from rxchannel.transports import memory_pair

from ._loops import add_loop_option, loops_from, run_on
from ._report import add_row, add_run_options, cells, median, print_table

Rates = tuple[float, float]  # items per wall-clock second, items per CPU-second


class _Clock:
    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def rates(self, n: int) -> Rates:
        return n / (time.perf_counter() - self.wall), n / (time.process_time() - self.cpu)


async def _rx_rate(source: Any, n: int) -> Rates:
    """Items/s through ``source | map(+1)`` into a counting observer."""
    done = asyncio.get_running_loop().create_future()
    count = 0

    def on_next(_x: Any) -> None:
        nonlocal count
        count += 1

    clock = _Clock()
    source.pipe(ops.map(lambda x: x + 1)).subscribe(on_next=on_next, on_completed=lambda: done.set_result(None))
    await done
    assert count == n
    return clock.rates(n)


async def rx_plain(n: int) -> Rates:
    return await _rx_rate(rx.from_iterable(range(n)), n)


async def rx_windowed(n: int) -> Rates:
    return await _rx_rate(reactive.from_iterable(range(n)).pipe(windowed(64)), n)


async def aio_plain(n: int) -> Rates:
    async def gen() -> AsyncIterator[bytes]:
        item = b"x" * 64
        for _ in range(n):
            yield item

    clock = _Clock()
    count = 0
    async for _ in gen():
        count += 1
    assert count == n
    return clock.rates(n)


async def aio_remote(n: int) -> Rates:
    router = rxc.Router()

    @router.stream("items")
    async def items(request: rxc.Request) -> AsyncIterator[bytes]:
        item = b"x" * 64
        for _ in range(n):
            yield item

    a, b = memory_pair()
    server = Peer(b, Role.SERVER, router=router)
    client = Peer(a, Role.CLIENT)
    clock = _Clock()
    count = 0
    async for _ in client.request_stream("items", window=64):
        count += 1
    rates = clock.rates(n)
    await client.close()
    await server.close()
    assert count == n
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    add_run_options(parser)
    add_loop_option(parser)
    args = parser.parse_args(argv)
    n = args.items // (4 if args.quick else 1)
    pairs = [
        ("rx: windowed(64) vs plain map", rx_windowed, rx_plain),
        ("async for: remote stream (memory) vs plain generator", aio_remote, aio_plain),
    ]
    rows: list[dict[str, Any]] = []
    for loop in loops_from(args):
        for name, ours, baseline in pairs:
            a: list[Rates] = []
            b: list[Rates] = []
            for _ in range(args.rounds):
                a.append(run_on(ours(n), loop))
                b.append(run_on(baseline(n), loop))
            row = {
                "bench": "pipelines",
                "case": name,
                "loop": loop,
                "items": n,
                "ours_items_s": median([r[0] for r in a]),
                "baseline_items_s": median([r[0] for r in b]),
                "cost": median([y[0] / x[0] for x, y in zip(a, b, strict=True)]),
                "ours_items_cpu_s": median([r[1] for r in a]),
                "baseline_items_cpu_s": median([r[1] for r in b]),
                "cpu_cost": median([y[1] / x[1] for x, y in zip(a, b, strict=True)]),
            }
            add_row(rows, row, args.json)
    if not args.json:
        print_table(
            f"Facade overhead, {n} items, {args.rounds} alternating rounds (medians; cost = median of round ratios)",
            ["case", "loop", "ours items/s", "baseline items/s", "cost", "ours /CPU-s", "baseline /CPU-s", "CPU cost"],
            cells(
                rows,
                "case loop ours_items_s baseline_items_s cost ours_items_cpu_s baseline_items_cpu_s cpu_cost",
                cost="{:.2f}x",
                cpu_cost="{:.2f}x",
            ),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
