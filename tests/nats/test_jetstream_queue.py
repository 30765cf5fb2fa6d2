"""The hub's work queue on JetStream (issue 28): the worker's side is rxchannel.runtime.work,
unchanged; the jobs, their deliveries, dead letters and acks live in JetStream."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from nats.aio.client import Client

import rxchannel as rx
from rxchannel.core import Manual, request_metadata
from rxchannel.fanout import Job, WorkerStats, work
from rxchannel.nats import JetStreamQueue
from rxchannel.runtime import Payload
from tests.nats.helpers import Sampler


async def serve_queue(nc: Client, name: str = "jobs", **options: Any) -> tuple[JetStreamQueue, rx.Server]:
    router = rx.Router()
    queue = JetStreamQueue(nc, name, **options)
    await queue.ensure()
    queue.serve(router, name)
    return queue, await rx.serve_tcp(router)


async def test_jetstream_queue_serves_the_unchanged_worker_protocol(nc: Client) -> None:
    results: dict[int, bytes] = {}

    def on_result(job: Job, result: Payload) -> None:
        assert job.id not in results  # each job's result once
        results[job.id] = result.data

    queue, server = await serve_queue(nc, on_result=on_result)
    assert await queue.publish(str(n).encode() for n in range(300)) == 300
    await queue.seal()

    def square(job: Job) -> bytes:
        return str(int(job.data) ** 2).encode()

    async def worker(window: int) -> WorkerStats:
        async with await rx.connect_tcp("127.0.0.1", server.port) as peer:
            return await work(peer, "jobs", square, window=window, name=f"w{window}")

    stats = await asyncio.wait_for(asyncio.gather(worker(8), worker(4), worker(2)), 60)
    await asyncio.wait_for(queue.join(), 10)
    await server.close()
    await queue.close()
    assert sorted(int(r) for r in results.values()) == [n * n for n in range(300)]
    assert sum(s.acked for s in stats) == 300 and queue.acked == 300 and queue.stray_acks == 0
    assert all(s.peak_held <= w for s, w in zip(stats, (8, 4, 2), strict=True))
    assert all(r.peak_held <= r.window for r in queue.records)
    assert await queue.remaining() == 0


async def test_jetstream_queue_holds_a_worker_to_its_window_whatever_credit_it_grants(nc: Client) -> None:
    """The window is the request's initial n: a worker that grants 50 more credit still holds 3
    (checked on the server: the shared consumer's num_ack_pending)."""
    queue, server = await serve_queue(nc)
    await queue.publish(b"x" for _ in range(40))
    await queue.seal()
    async with await rx.connect_tcp("127.0.0.1", server.port) as peer:
        sink = peer.remote_sink("jobs", window=Manual(3))
        jobs = sink.replies
        assert jobs is not None
        jobs.request(50)  # greedy: credit far past the window
        done = 0
        with Sampler(nc, queue.stream, "workers", every=0.005) as sampler:
            async for payload in jobs:
                job = Job.from_payload(payload)
                await asyncio.sleep(0.01)
                await sink.send(Payload(b"", request_metadata(None, {"ack": job.id})))
                done += 1
                if done % 10 == 0:
                    jobs.request(10)
        sink.complete()
    await server.close()
    await queue.close()
    assert done == 40
    assert 2 <= sampler.peak <= 3, sampler.samples


async def test_jetstream_queue_redelivers_nacked_jobs_and_dead_letters_after_max_failures(nc: Client) -> None:
    queue, server = await serve_queue(nc, max_failures=2)
    await queue.publish([b"ok-1", b"bad", b"ok-2"])
    await queue.seal()
    tries: dict[bytes, list[int]] = {}

    def handler(job: Job) -> bytes:
        tries.setdefault(job.data, []).append(job.deliveries)
        if job.data == b"bad":
            raise ValueError("cannot do this one")
        return b"done"

    async with await rx.connect_tcp("127.0.0.1", server.port) as peer:
        stats = await asyncio.wait_for(work(peer, "jobs", handler, window=2), 30)
    await asyncio.wait_for(queue.join(), 10)
    dead = await queue.dead()
    await server.close()
    await queue.close()
    assert tries[b"bad"] == [1, 2, 3] and tries[b"ok-1"] == [1] and tries[b"ok-2"] == [1]
    assert stats.nacked == 3 and stats.acked == 2 and queue.dead_letters == 1
    assert [(j.data, j.deliveries) for j in dead] == [(b"bad", 3)]


async def test_jetstream_queue_hands_a_lost_workers_jobs_to_another(nc: Client) -> None:
    queue, server = await serve_queue(nc)
    await queue.publish(str(n).encode() for n in range(30))
    await queue.seal()
    got_some = asyncio.Event()
    taken: list[int] = []

    lost = await rx.connect_tcp("127.0.0.1", server.port)

    async def quitter() -> None:  # takes 4 jobs, answers none, and its connection drops
        sink = lost.remote_sink("jobs", window=Manual(4))
        assert sink.replies is not None
        async for payload in sink.replies:
            taken.append(Job.from_payload(payload).id)
            if len(taken) == 4:
                got_some.set()
                await asyncio.sleep(3600)

    task = asyncio.ensure_future(quitter())
    await asyncio.wait_for(got_some.wait(), 10)
    task.cancel()
    await lost.close()
    done: list[bytes] = []
    async with await rx.connect_tcp("127.0.0.1", server.port) as peer:
        await asyncio.wait_for(work(peer, "jobs", lambda job: done.append(job.data), window=4), 30)
    await server.close()
    await queue.close()
    assert sorted(int(d) for d in done) == list(range(30))  # the lost worker's 4 came back
    assert queue.handed_back >= 4 and json.dumps(queue.records[0].ended)


@pytest.mark.parametrize("crash", [False, True], ids=["restarted", "killed"])
async def test_jetstream_queue_goes_on_when_nats_server_restarts(tmp_path: Any, crash: bool) -> None:
    """nats-server stopped mid-queue (SIGTERM, or SIGKILL: a crash) and started again on its store:
    the hub's connection comes back, pull requests lost with the old connection are asked again,
    every job is done. After a crash the store may be behind (JetStream 2.9 writes to disk
    asynchronously), so jobs acked just before it can be delivered again: only a clean restart
    keeps the jobs done twice within what the worker held."""
    from rxchannel.nats import connect_jetstream
    from tests.nats.server import NatsServer

    with NatsServer(tmp_path / "store") as server:
        nc = await connect_jetstream(server.url)
        try:
            queue, hub = await serve_queue(nc, "restart", ack_wait=2.0, expires=1.0)
            await queue.publish(str(n).encode() for n in range(400))
            await queue.seal()
            done: list[int] = []

            async def slow(job: Job) -> None:
                await asyncio.sleep(0.002)
                done.append(int(job.data))

            async with await rx.connect_tcp("127.0.0.1", hub.port) as peer:
                worker = asyncio.ensure_future(work(peer, "restart", slow, window=4))
                while len(done) < 100:
                    await asyncio.sleep(0.01)
                await asyncio.to_thread(server.restart, kill=crash)
                await asyncio.wait_for(worker, 30)
            await asyncio.wait_for(queue.join(), 10)
            await hub.close()
            await queue.close()
        finally:
            await nc.close()
    assert set(done) == set(range(400))  # none lost
    if not crash:
        assert len(done) - 400 <= 4, len(done) - 400  # at most what the worker held
