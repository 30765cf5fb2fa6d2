"""A three-server JetStream cluster under the hub's queue (issue 28): the server leading the
queue's stream is SIGKILLed mid-queue; the queue (three replicas) goes on, nothing is lost."""

from __future__ import annotations

import asyncio
import signal

import pytest

import rxchannel as rx
from rxchannel.fanout import Job, work
from rxchannel.nats import JetStreamError, JetStreamQueue, connect_jetstream
from tests.nats.server import NatsCluster, nats_server_missing

JOBS = 2000
WINDOWS = [4, 4, 4, 4]


@pytest.mark.timeout(120)
async def test_nats_cluster_queue_survives_its_stream_leader_killed() -> None:
    missing = nats_server_missing()
    if missing:
        pytest.skip(missing)
    with NatsCluster() as cluster:
        ncs = [await connect_jetstream(url) for url in cluster.urls[:2]]  # one hub on each of two servers
        try:
            queues = [JetStreamQueue(nc, "jobs", replicas=3, ack_wait=2.0, expires=1.0) for nc in ncs]
            for _ in range(100):  # the cluster elects its JetStream leader first
                try:
                    await queues[0].ensure()
                    break
                except JetStreamError:
                    queues[0] = JetStreamQueue(ncs[0], "jobs", replicas=3, ack_wait=2.0, expires=1.0)
                    await asyncio.sleep(0.1)
            await queues[1].ensure()
            await queues[0].publish(str(n).encode() for n in range(JOBS))
            await queues[0].seal()
            servers = []
            for queue in queues:
                router = rx.Router()
                queue.serve(router, "jobs")
                servers.append(await rx.serve_tcp(router))
            done: list[int] = []

            async def handle(job: Job) -> None:
                await asyncio.sleep(0.001)
                done.append(int(job.data))

            async def worker(i: int) -> None:
                async with await rx.connect_tcp("127.0.0.1", servers[i % 2].port) as peer:
                    await work(peer, "jobs", handle, window=WINDOWS[i])

            workers = asyncio.gather(*(worker(i) for i in range(len(WINDOWS))))
            while len(done) < JOBS // 3:
                await asyncio.sleep(0.01)
            info = await ncs[0].jetstream().stream_info(queues[0].stream)
            assert info.cluster is not None and info.cluster.leader is not None
            leader = cluster.by_name(info.cluster.leader)
            assert leader.process is not None
            leader.process.send_signal(signal.SIGKILL)
            await asyncio.wait_for(workers, 90)
            await asyncio.wait_for(asyncio.gather(*(q.join() for q in queues)), 10)
            for server in servers:
                await server.close()
            for queue in queues:
                await queue.close()
        finally:
            for nc in ncs:
                await nc.close()
    assert set(done) == set(range(JOBS))  # none lost
    twice = len(done) - JOBS
    print(f"\ncluster: {JOBS} jobs, leader {info.cluster.leader} killed, done twice {twice}")
    assert twice <= sum(WINDOWS), twice  # at most what the workers held
