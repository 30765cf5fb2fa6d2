"""Request-stream throughput over TCP loopback: rxchannel vs rsocket-py, same run.

Two processes per measurement: a server process (the implementation under test) and
this process as the client of the *same* implementation. Runs alternate A, B, A, B...
and the table reports medians and the rxchannel / rsocket-py ratio. Each round also times a
bare TCP ping-pong with an echo process on the same loop: ``window / RTT`` is the most
items per second any request-n protocol can reach at that window.

    python -m benchmarks.tcp_throughput [--rounds 3] [--quick] [--only small|large] [--loop L] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from typing import Any

from ._loops import add_loop_option, loops_from, run_on
from ._report import add_row, cells, median, print_table

IMPLS = ("rxchannel", "rsocket-py")


class ServerProcess:
    def __init__(self, impl: str, loop: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._servers", impl, loop],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def client_rxchannel(port: int, count: int, size: int, window: int) -> tuple[int, int, float]:
    import rxchannel as rxc

    async with await rxc.connect_tcp("127.0.0.1", port) as peer:
        spec = json.dumps({"count": count, "size": size}).encode()
        start = time.perf_counter()
        items = total = 0
        async for item in peer.request_stream("bench", spec, window=window):
            items += 1
            total += len(item.data)
        return items, total, time.perf_counter() - start


async def client_rsocket_py(port: int, count: int, size: int, window: int) -> tuple[int, int, float]:
    from reactivestreams.subscriber import Subscriber
    from reactivestreams.subscription import Subscription
    from rsocket.extensions.helpers import composite, route
    from rsocket.extensions.mimetypes import WellKnownMimeTypes
    from rsocket.helpers import single_transport_provider
    from rsocket.payload import Payload
    from rsocket.rsocket_client import RSocketClient
    from rsocket.transports.tcp import TransportTCP

    done = asyncio.get_running_loop().create_future()

    class Windowed(Subscriber):  # type: ignore[misc]
        """Keeps ``window`` in flight and tops up every window/2 items, as rxchannel's Window does."""

        items = total = 0
        consumed_since = 0

        def on_subscribe(self, subscription: Subscription) -> None:
            self.subscription = subscription

        def on_next(self, value: Payload, is_complete: bool = False) -> None:
            self.items += 1
            self.total += len(value.data)
            self.consumed_since += 1
            if self.consumed_since >= max(1, window // 2):
                self.subscription.request(self.consumed_since)
                self.consumed_since = 0
            if is_complete and not done.done():
                done.set_result(None)

        def on_error(self, exception: Exception) -> None:
            if not done.done():
                done.set_exception(exception)

        def on_complete(self) -> None:
            if not done.done():
                done.set_result(None)

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    client = RSocketClient(
        single_transport_provider(TransportTCP(reader, writer)),
        metadata_encoding=WellKnownMimeTypes.MESSAGE_RSOCKET_COMPOSITE_METADATA,
    )
    async with client:
        sub = Windowed()
        spec = json.dumps({"count": count, "size": size}).encode()
        start = time.perf_counter()
        client.request_stream(Payload(spec, composite(route("bench")))).initial_request_n(window).subscribe(sub)
        await done
        return sub.items, sub.total, time.perf_counter() - start


CLIENTS = {"rxchannel": client_rxchannel, "rsocket-py": client_rsocket_py}


async def round_trip(port: int, count: int = 5000) -> float:
    """Seconds per one-byte ping-pong with the echo process: the floor under a credit round trip."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    start = time.perf_counter()
    for _ in range(count):
        writer.write(b"x")
        await reader.readexactly(1)
    seconds = (time.perf_counter() - start) / count
    writer.close()
    await writer.wait_closed()
    return seconds


ONLY: str | None = None


def configs(quick: bool) -> list[tuple[int, int, int]]:
    """(payload size, item count, window)."""
    scale = 4 if quick else 1
    large = [(65536, 2048 // scale, 8), (65536, 2048 // scale, 64)]
    small = [(1024, 40000 // scale, 8), (1024, 40000 // scale, 64)]
    return {"small": small, "large": large}.get(ONLY or "", large + small)


def run(rounds: int, quick: bool, as_json: bool, loops: list[str]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    for loop in loops:
        servers = {impl: ServerProcess(impl, loop) for impl in (*IMPLS, "echo")}
        try:
            for size, count, window in configs(quick):
                samples: dict[str, list[tuple[float, float]]] = {impl: [] for impl in IMPLS}
                rtts: list[float] = []
                for _ in range(rounds):
                    rtts.append(run_on(round_trip(servers["echo"].port), loop))
                    for impl in IMPLS:  # alternate A, B in every round
                        client = CLIENTS[impl](servers[impl].port, count, size, window)
                        items, total, seconds = run_on(client, loop)
                        if items != count or total != count * size:
                            raise RuntimeError(
                                f"{impl}: got {items} items / {total} bytes, expected {count} / {count * size}"
                            )
                        samples[impl].append((total / seconds / 1e6, items / seconds))
                row: dict[str, Any] = {
                    "bench": "tcp_stream",
                    "loop": loop,
                    "payload": size,
                    "window": window,
                    "items": count,
                }
                for impl in IMPLS:
                    row[f"{impl}_mb_s"] = median([s[0] for s in samples[impl]])
                    row[f"{impl}_items_s"] = median([s[1] for s in samples[impl]])
                # at most `window` items per round trip: no request-n implementation passes this
                row["rtt_us"] = median(rtts) * 1e6
                row["window_bound_items_s"] = window / median(rtts)
                ratios = [a[0] / b[0] for a, b in zip(samples["rxchannel"], samples["rsocket-py"], strict=True)]
                row["ratio"] = median(ratios)  # each round's pair ran back to back
                add_row(results, row, as_json)
        finally:
            for server in servers.values():
                server.stop()
    if not as_json:
        print_table(
            f"Request-stream over TCP loopback, two processes, median of {rounds} alternating rounds "
            "(ratio: median of the rounds' ratios)",
            [
                "loop",
                "payload",
                "window",
                "rxchannel MB/s",
                "rxchannel items/s",
                "rsocket-py MB/s",
                "rsocket-py items/s",
                "ratio",
                "TCP RTT µs",
                "window/RTT items/s",
            ],
            cells(
                results,
                "loop payload window rxchannel_mb_s rxchannel_items_s rsocket-py_mb_s rsocket-py_items_s ratio rtt_us "
                "window_bound_items_s",
                ratio="{:.1f}x",
            ),
        )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a quarter of the items")
    parser.add_argument("--only", choices=["small", "large"], help="only the 1 KiB (small) or 64 KiB (large) rows")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    add_loop_option(parser)
    args = parser.parse_args(argv)
    global ONLY
    ONLY = args.only
    run(args.rounds, args.quick, args.json, loops_from(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
