"""A worker process of the fleet test: ``python -m tests.nats._fleet_worker LOG WINDOW URL [URL ...]``.

Runs :func:`rxchannel.runtime.work` (unchanged) on ``queue/jobs`` of the first hub; when that
hub goes away it goes on with the next one, until a hub says the queue is done. Writes to
LOG, one line each, flushed: ``C <url>`` when it connects, ``J <job id> <deliveries>`` for
every job it has processed (before its answer goes out). Prints its stats as one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import sys
from itertools import cycle

import rxchannel as rx
from rxchannel.fanout import Job, WorkerStats, work


async def main(log_path: str, window: int, urls: list[str]) -> None:
    stats = WorkerStats()
    peak = 0
    switches = 0
    with open(log_path, "a", buffering=1) as log:

        async def handle(job: Job) -> bytes:
            await asyncio.sleep(0.0005)  # a little work
            log.write(f"J {job.id} {job.deliveries}\n")
            return job.data

        for url in cycle(urls):
            try:
                peer = await rx.connect(url)
            except (OSError, rx.RxChannelError):
                await asyncio.sleep(0.1)
                continue
            log.write(f"C {url}\n")
            try:
                await work(peer, "queue/jobs", handle, window=window, stats=stats)
                peak = max(peak, stats.peak_held)
                break  # the queue is done
            except (rx.RxChannelError, OSError):
                peak = max(peak, stats.peak_held)
                stats.peak_held = 0
                switches += 1  # the hub went away: on to the next one
            finally:
                await peer.close()
    print(json.dumps({"acked": stats.acked, "nacked": stats.nacked, "peak_held": peak, "switches": switches}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3:]))
