"""A hub hands out 10,000 jobs to four worker processes; one worker is killed midway.

    python examples/work_queue.py

The hub (this process) serves ``WorkQueue(...).serve(router, "jobs")``; each worker process runs
``work(peer, "jobs", handler, window=16)``: it holds at most 16 unacknowledged jobs, and
whoever has room gets the next one. When 3,000 results are in, the busiest worker is
killed with SIGKILL: the jobs it held go to the others (at least once, with their
delivery count), and every job is acknowledged exactly once.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections import Counter

import rxchannel as rxc
from rxchannel.fanout import Job, WorkQueue, work

JOBS, WINDOW, KILL_AFTER = 10_000, 16, 3_000


def is_prime(n: int) -> bool:
    return n > 1 and all(n % d for d in range(2, int(n**0.5) + 1))


async def worker(url: str, name: str) -> None:
    def handle(job: Job) -> bytes:
        time.sleep(0.0005)  # the work takes a while: the workers, not the hub, set the pace
        return b"1" if is_prime(int(job.data)) else b"0"

    peer = await rxc.connect(url)
    stats = await work(peer, "jobs", handle, window=WINDOW, name=name)
    await peer.close()
    print(f"{name}: {stats.acked} jobs done, at most {stats.peak_held} held at once", flush=True)


async def hub() -> None:
    results: Counter[int] = Counter()
    primes = 0
    procs: dict[str, asyncio.subprocess.Process] = {}
    ready = asyncio.Event()
    state: dict[str, WorkQueue] = {}

    def on_result(job: Job, result: rxc.Payload) -> None:
        nonlocal primes
        results[job.id] += 1
        primes += result.data == b"1"
        if len(results) == KILL_AFTER:
            busiest = max((r for r in state["queue"].records if r.ended is None), key=lambda r: r.acked)
            print(f"hub: {KILL_AFTER} results in; killing {busiest.name} (it holds up to {busiest.window} jobs)")
            procs[busiest.name].send_signal(signal.SIGKILL)

    async def numbers():  # type: ignore[no-untyped-def]
        await ready.wait()  # every worker is connected
        for n in range(JOBS):
            yield str(n)

    router = rxc.Router()
    queue = state["queue"] = WorkQueue(numbers(), on_result=on_result).serve(router, "jobs")
    server = await rxc.serve_tcp(router)
    url = f"tcp://127.0.0.1:{server.port}"
    for i in range(4):
        procs[f"worker{i}"] = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "worker", url, f"worker{i}", stdout=asyncio.subprocess.PIPE
        )
    while queue.workers < 4:
        await asyncio.sleep(0.05)
    ready.set()
    await queue.join()
    for proc in procs.values():
        out, _ = await proc.communicate()
        print(out.decode().strip() or f"(killed: exit {proc.returncode})")
    await server.close()
    assert sorted(results) == list(range(JOBS)) and set(results.values()) == {1}
    print(
        f"hub: {queue.acked} jobs acknowledged exactly once ({primes} primes below {JOBS}); "
        f"{queue.redelivered} redelivered after the kill; dead letters: {len(queue.dead_letters)}"
    )
    for record in queue.records:
        print(
            f"hub: {record.name}: {record.delivered} delivered, {record.acked} acked, "
            f"at most {record.peak_held} held, ended: {record.ended}"
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        asyncio.run(worker(sys.argv[2], sys.argv[3]))
    else:
        asyncio.run(hub())
