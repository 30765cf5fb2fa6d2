"""Acceptance (issue 28), with real processes: 10,000 jobs, two hubs (``rxchannel serve --nats``)
on one JetStream queue, four worker processes; the hub serving most workers is SIGKILLed midway.

Checked on the server: every job is acked exactly once (the consumer's ack metric, sampled at
100 %, names each acked stream sequence), none is left or dead-lettered, and the consumer's
num_ack_pending never exceeds the sum of the windows while both hubs live (after the kill, by
at most what the dead hub held, until JetStream redelivers it after ack_wait). Checked in the
workers: jobs processed twice are at most the sum of the windows, and no worker ever held more
than its window.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StreamConfig

from rxchannel.nats import JetStreamQueue, queue_names
from tests.nats.server import NatsServer

JOBS = 10_000
WINDOWS = [8, 8, 4, 4]
ACK_WAIT = 3.0
REPO = Path(__file__).resolve().parents[2]


def start_hub(root: Path, nats_url: str, log: Path) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "rxchannel", "serve", str(root), "--transport", "tcp", "--port", "0"]
    cmd += ["--nats", nats_url, "--nats-ack-wait", str(ACK_WAIT), "--log-level", "warning"]
    with open(log, "w") as err:
        hub = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, cwd=REPO)
    assert hub.stdout is not None
    url = hub.stdout.readline().strip()
    if not url.startswith("tcp://"):
        hub.kill()
        raise AssertionError(f"the hub did not start: {url!r}\n{log.read_text()}")
    return hub, url


def serving(logs: list[Path]) -> Counter[str]:
    """How many workers each hub serves now (each worker's last connection)."""
    last: Counter[str] = Counter()
    for log in logs:
        connects = [line.split()[1] for line in log.read_text().splitlines() if line.startswith("C ")]
        if connects:
            last[connects[-1]] += 1
    return last


@pytest.mark.timeout(240)
async def test_nats_fleet_of_two_hubs_loses_no_job_when_the_serving_hub_is_killed(
    nats_server: NatsServer, nc: Client, tmp_path: Path
) -> None:
    stream, prefix = queue_names("jobs")
    js = nc.jetstream()
    await js.add_stream(
        StreamConfig(
            name=stream,
            subjects=[f"{prefix}.jobs", f"{prefix}.dead", f"{prefix}.sealed"],
            retention=RetentionPolicy.WORK_QUEUE,
        )
    )
    # the queue's consumer as a hub makes it, plus an ack metric for every ack (what the test counts)
    await js.add_consumer(
        stream,
        ConsumerConfig(
            durable_name="workers",
            filter_subject=f"{prefix}.jobs",
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ACK_WAIT,
            max_deliver=-1,
            max_ack_pending=-1,
            max_waiting=4096,
            sample_freq="100%",
        ),
    )
    acked: list[int] = []

    async def ack_metric(msg: Msg) -> None:
        acked.append(json.loads(msg.data)["stream_seq"])

    await nc.subscribe(f"$JS.EVENT.METRIC.CONSUMER.ACK.{stream}.workers", cb=ack_metric)
    queue = JetStreamQueue(nc, "jobs")
    assert await queue.publish(f"job-{n}".encode() for n in range(JOBS)) == JOBS
    await queue.seal()

    root = tmp_path / "root"
    root.mkdir()
    hubs = [start_hub(root, nats_server.url, tmp_path / f"hub{i}.log") for i in range(2)]
    urls = [url for _, url in hubs]
    logs = [tmp_path / f"worker{i}.log" for i in range(len(WINDOWS))]
    workers = []
    for i, window in enumerate(WINDOWS):
        order = urls if i < 3 else urls[::-1]  # three start on the first hub, one on the second
        cmd = [sys.executable, "-m", "tests.nats._fleet_worker", str(logs[i]), str(window), *order]
        workers.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO))

    samples: list[tuple[float, int]] = []

    async def sample() -> None:
        while True:
            info = await js.consumer_info(stream, "workers")
            samples.append((time.monotonic(), info.num_ack_pending))
            await asyncio.sleep(0.005)

    sampler = asyncio.ensure_future(sample())
    killed_at = 0.0
    try:
        while await queue.remaining() > JOBS // 2:  # midway
            assert all(w.poll() is None for w in workers), "a worker ended before the kill"
            await asyncio.sleep(0.02)
        most, count = serving(logs).most_common(1)[0]
        victim = urls.index(most)
        assert count >= 3, serving(logs)  # the first hub serves three of the four
        held_by_victim = sum(w for w, log in zip(WINDOWS, logs, strict=True) if serving([log])[most])
        hubs[victim][0].send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        results = []
        for worker in workers:
            out, _ = await asyncio.to_thread(worker.communicate, timeout=180)
            assert worker.returncode == 0, out
            results.append(json.loads(out.strip().splitlines()[-1]))
        await asyncio.sleep(0.3)  # the last ack metrics
    finally:
        sampler.cancel()
        for proc in [*workers, *(hub for hub, _ in hubs)]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in [*workers, *(hub for hub, _ in hubs)]:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()

    # every job acked exactly once in JetStream; none left, none dead
    counts = Counter(acked)
    assert set(counts) == set(range(1, JOBS + 1)), f"{JOBS - len(set(counts) & set(range(1, JOBS + 1)))} never acked"
    assert max(counts.values()) == 1
    assert await queue.remaining() == 0 and await queue.dead() == []
    info = await js.consumer_info(stream, "workers")
    assert info.num_ack_pending == 0 and info.num_pending == 0
    # processed: every job at least once, twice at most the sum of the windows
    processed = Counter(
        int(line.split()[1]) for log in logs for line in log.read_text().splitlines() if line.startswith("J ")
    )
    assert set(processed) == set(range(1, JOBS + 1))
    twice = sum(n - 1 for n in processed.values())
    assert twice <= sum(WINDOWS), twice
    # no worker over its window: by its own count, and on the server
    assert all(r["peak_held"] <= w for r, w in zip(results, WINDOWS, strict=True)), results
    assert sum(r["switches"] for r in results) >= 3  # the victim's workers went on with the other hub
    before = [n for t, n in samples if t < killed_at]
    after = [n for t, n in samples if t >= killed_at]
    assert len(before) > 20 and len(after) > 20
    assert max(before) <= sum(WINDOWS), max(before)
    assert max(after) <= sum(WINDOWS) + held_by_victim, max(after)
    print(
        f"\nfleet: {JOBS} jobs, processed twice {twice}, peak num_ack_pending {max(before)} before the kill "
        f"and {max(after)} after (windows {sum(WINDOWS)}), {len(samples)} samples, results {results}"
    )
