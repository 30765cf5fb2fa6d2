"""JetStream under rxchannel's demand, same run, alternating (issue 28):

* **source**: the same messages read from one stream through a fresh durable consumer each
  round, acking each: raw nats-py (``fetch(64)`` then ``ack()`` per message) vs rxchannel's
  JetStream source as an async iterable (``window=64``) and as an Rx pipeline
  (``windowed(64)``). MB/s and messages/s; the ratio is rxchannel / raw.
* **queue**: the hub's work queue on JetStream (``JetStreamQueue``) vs in memory
  (``Router.queue``): one hub over TCP, four workers (``work``, window 16), small jobs;
  jobs/s from the workers' start to the last ack.

A real nats-server (JetStream on, store in a temporary directory) is started for the run.
Besides wall-clock rates, the source rows report messages per CPU-second of this process
(the client's cost: nats-server runs in its own process).

    python -m benchmarks.jetstream [--messages N] [--size 64KiB] [--jobs N] [--rounds R] [--json] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ._loops import add_loop_option, loops_from, run_on
from ._report import add_row, add_run_options, cells, median, print_table

MIB = 1 << 20


async def _fill(nc: Any, count: int, size: int) -> None:
    from nats.js.api import RetentionPolicy, StorageType, StreamConfig

    from rxchannel.nats import Publisher

    js = nc.jetstream()
    await js.add_stream(
        StreamConfig(name="BENCH", subjects=["bench.>"], retention=RetentionPolicy.LIMITS, storage=StorageType.FILE)
    )
    publisher = Publisher(nc, "bench.m", window=256)
    await publisher.start()
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    for _ in range(count):
        await publisher.publish(payload)
    await publisher.finish()


async def _consumer(nc: Any, name: str) -> None:
    from nats.js.api import AckPolicy, ConsumerConfig

    await nc.jetstream().add_consumer(
        "BENCH", ConsumerConfig(durable_name=name, ack_policy=AckPolicy.EXPLICIT, max_ack_pending=1024)
    )


async def raw_fetch(nc: Any, name: str, count: int) -> int:
    """nats-py's own pull loop: fetch(64), ack each."""
    sub = await nc.jetstream().pull_subscribe_bind(name, stream="BENCH")
    got = size = 0
    while got < count:
        for msg in await sub.fetch(min(64, count - got), timeout=5):
            size += len(msg.data)
            got += 1
            await msg.ack()
    await sub.unsubscribe()
    return size


async def rx_async(nc: Any, name: str, count: int) -> int:
    """rxchannel's JetStream source as an async iterable, window 64."""
    from rxchannel.nats import jetstream_source

    got = size = 0
    async with jetstream_source(nc, "BENCH", consumer=name).pull(64) as messages:
        async for message in messages:
            size += len(message.data)
            got += 1
            if got == count:
                messages.ack(1)  # the last one is consumed too (leaving would hand it back)
                break
    return size


async def rx_observable(nc: Any, name: str, count: int) -> int:
    """rxchannel's JetStream source as an Rx pipeline, windowed(64)."""
    from rxchannel.nats import jetstream_source
    from rxchannel.operators import windowed

    done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    state = {"got": 0, "size": 0}

    def on_next(message: Any) -> None:
        state["got"] += 1
        state["size"] += len(message.data)
        if state["got"] == count and not done.done():
            done.set_result(state["size"])

    subscription = jetstream_source(nc, "BENCH", consumer=name).pipe(windowed(64)).subscribe(on_next)
    size = await done
    await asyncio.sleep(0)  # the pump acks the last item on its next step
    subscription.dispose()
    return size


SOURCES: dict[str, Callable[[Any, str, int], Awaitable[int]]] = {
    "nats-py fetch+ack": raw_fetch,
    "rxchannel async for": rx_async,
    "rxchannel Rx windowed": rx_observable,
}


async def source_round(url: str, count: int, size: int, round_: int) -> dict[str, tuple[float, float, float]]:
    import nats

    nc = await nats.connect(url)
    try:
        if round_ == 0:
            await _fill(nc, count, size)
        rates: dict[str, tuple[float, float, float]] = {}
        order = list(SOURCES) if round_ % 2 == 0 else list(reversed(SOURCES))  # alternate who goes first
        for label in order:
            name = f"c{round_}_{list(SOURCES).index(label)}"
            await _consumer(nc, name)
            wall, cpu = time.perf_counter(), time.process_time()
            got = await SOURCES[label](nc, name, count)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            assert got == count * size, (label, got)
            rates[label] = (got / wall / 1e6, count / wall, count / max(cpu, 1e-9))
        return rates
    finally:
        await nc.close()


async def queue_round(url: str, jobs: int, backend: str, round_: int) -> float:
    """jobs/s of one hub and four workers, in memory or on JetStream."""
    import nats

    import rxchannel as rxc
    from rxchannel.fanout import WorkQueue, work
    from rxchannel.nats import JetStreamQueue

    router = rxc.Router()
    nc = await nats.connect(url)
    queue: Any
    try:
        if backend == "memory":
            queue = WorkQueue(b"%d" % n for n in range(jobs)).serve(router, "jobs")
        else:
            queue = JetStreamQueue(nc, f"bench{round_}")
            await queue.publish(b"%d" % n for n in range(jobs))
            await queue.seal()
            queue.serve(router, "jobs")
        server = await rxc.serve_tcp(router)
        peers = [await rxc.connect_tcp("127.0.0.1", server.port) for _ in range(4)]
        try:
            start = time.perf_counter()
            workers = asyncio.gather(*(work(p, "jobs", lambda job: job.data, window=16) for p in peers))
            while queue.acked < jobs and not workers.done():
                await asyncio.sleep(0.001)
            seconds = time.perf_counter() - start  # to the last ack (not the end of the queue, which is polled)
            stats = await workers
        finally:
            for peer in peers:
                await peer.close()
            await server.close()
            if backend == "jetstream":
                await queue.close()
        assert sum(s.acked for s in stats) >= jobs
        return jobs / seconds
    finally:
        await nc.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--size", default="64KiB")
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    add_run_options(parser)
    add_loop_option(parser)
    args = parser.parse_args(argv)
    try:
        import nats  # noqa: F401
    except ImportError:
        print("jetstream: skipped (nats-py is not installed: pip install 'rxchannel[nats]')", file=sys.stderr)
        return 0
    from rxchannel.cli.units import parse_size
    from tests.nats.server import NatsServer, nats_server_missing

    missing = nats_server_missing()
    if missing:
        print(f"jetstream: skipped ({missing})", file=sys.stderr)
        return 0
    size = parse_size(args.size)
    count = max(50, args.messages // (5 if args.quick else 1))
    jobs = max(200, args.jobs // (5 if args.quick else 1))
    rounds = 1 if args.quick else args.rounds
    source_rows: list[dict[str, Any]] = []
    queue_rows: list[dict[str, Any]] = []
    for loop in loops_from(args):
        with NatsServer() as server:
            samples: dict[str, list[tuple[float, float, float]]] = {label: [] for label in SOURCES}
            ratios: dict[str, list[float]] = {label: [] for label in SOURCES}
            queues: dict[str, list[float]] = {"memory": [], "jetstream": []}
            for r in range(rounds):
                rates = run_on(source_round(server.url, count, size, r), loop)
                for label, rate in rates.items():
                    samples[label].append(rate)
                    ratios[label].append(rate[0] / rates["nats-py fetch+ack"][0])
                for backend in ("memory", "jetstream") if r % 2 == 0 else ("jetstream", "memory"):
                    queues[backend].append(run_on(queue_round(server.url, jobs, backend, r), loop))
        for label, runs in samples.items():
            row = {
                "bench": "jetstream_source",
                "loop": loop,
                "reader": label,
                "messages": count,
                "size": size,
                "mb_s": median([r[0] for r in runs]),
                "msgs_s": median([r[1] for r in runs]),
                "msgs_per_cpu_s": median([r[2] for r in runs]),
                "ratio": median(ratios[label]),
                "rounds": len(runs),
            }
            add_row(source_rows, row, args.json)
        for backend, runs in queues.items():
            row = {
                "bench": "jetstream_queue",
                "loop": loop,
                "queue": backend,
                "jobs": jobs,
                "workers": 4,
                "window": 16,
                "jobs_s": median(runs),
                "ratio": median(runs) / median(queues["memory"]),
                "rounds": len(runs),
            }
            add_row(queue_rows, row, args.json)
    if not args.json:
        print_table(
            f"JetStream source: {count} messages of {size // 1024} KiB, read and acked, "
            f"median of {rounds} alternating rounds (ratio: / nats-py, per round)",
            ["loop", "reader", "MB/s", "msgs/s", "msgs/CPU-s", "ratio"],
            cells(source_rows, "loop reader mb_s msgs_s msgs_per_cpu_s ratio", ratio="{:.2f}x"),
        )
        print_table(
            f"Hub work queue: {jobs} jobs, 4 workers (window 16), one hub over TCP, "
            f"median of {rounds} alternating rounds",
            ["loop", "queue", "jobs/s", "ratio"],
            cells(queue_rows, "loop queue jobs_s ratio", ratio="{:.2f}x"),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
