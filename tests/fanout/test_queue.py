"""Work balanced by demand (issue 18 #2): ``Router.queue`` and ``work``, over real TCP.

Each worker holds at most its window of unacknowledged jobs (even one that grants more
credit than it acknowledges); the source is read only when a worker has room; jobs of a
worker that disconnects, times out or nacks are redelivered with their delivery count;
a job failing more than ``max_failures`` times is dead-lettered; every job is
acknowledged exactly once.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import rxchannel as rx
from rxchannel.core import ErrorCode, Role, request_metadata
from rxchannel.fanout import ACK_TIMEOUT, Job, WorkerStats, WorkQueue, work
from rxchannel.runtime import Peer, RemoteSink, RemoteStream
from rxchannel.transports import memory_pair
from tests.support import eventually, run_in_virtual_time


@pytest.fixture
async def hub() -> AsyncIterator[Any]:
    """``start(source, **options)`` -> (queue, dial) for a router served over TCP."""
    servers: list[rx.Server] = []
    peers: list[Peer] = []

    async def start(source: Any, **options: Any) -> tuple[WorkQueue, Any]:
        router = rx.Router()
        queue = WorkQueue(source, **options).serve(router, "jobs")
        server = await rx.serve_tcp(router)
        servers.append(server)

        async def dial() -> Peer:
            peer = await rx.connect_tcp("127.0.0.1", server.port)
            peers.append(peer)
            return peer

        return queue, dial

    yield start
    await asyncio.gather(*(p.close() for p in peers), return_exceptions=True)
    for server in servers:
        await server.close()


def ack(job_id: int, data: bytes = b"ok") -> rx.Payload:
    return rx.Payload(data, request_metadata(None, {"ack": job_id}))


class Results:
    def __init__(self) -> None:
        self.acked: Counter[int] = Counter()
        self.values: dict[int, bytes] = {}

    def __call__(self, job: Job, result: rx.Payload) -> None:
        self.acked[job.id] += 1
        self.values[job.id] = result.data


async def taking(dial: Any, window: int) -> tuple[Peer, RemoteSink, RemoteStream]:
    """A worker that asks for ``window`` jobs and grants no more by itself: its peer, its sink
    (for receipts) and the jobs it is sent."""
    peer = await dial()
    sink = peer.remote_sink("jobs", window=rx.Manual(window))
    assert sink.replies is not None
    return peer, sink, sink.replies


async def ending_error(jobs: RemoteStream) -> rx.RemoteError:
    """The error that ends ``jobs`` (within 5 s), whatever is still in it before."""
    with pytest.raises(rx.RemoteError) as ended:
        async with asyncio.timeout(5):
            while True:
                await jobs.next()
    return ended.value


async def test_workers_hold_at_most_their_window_and_every_job_is_acknowledged_once(hub: Any) -> None:
    results = Results()
    windows = [1, 4, 16]
    state: dict[str, WorkQueue] = {}
    overreads: list[tuple[int, int]] = []

    def jobs() -> Iterator[bytes]:
        for i in range(600):
            queue = state["queue"]
            # pulled only when some worker has room: never more than the windows ahead of the acks
            if queue.pulled - queue.acked > sum(windows):
                overreads.append((queue.pulled, queue.acked))
            yield str(i).encode()

    queue, dial = await hub(jobs(), on_result=results)
    state["queue"] = queue

    async def double(job: Job) -> bytes:
        await asyncio.sleep(0)
        return str(2 * int(job.data)).encode()

    stats = [WorkerStats() for _ in windows]
    peers = [await dial() for _ in windows]
    await asyncio.wait_for(
        asyncio.gather(
            queue.join(),
            *(
                work(p, "jobs", double, window=w, name=f"w{w}", stats=s)
                for p, w, s in zip(peers, windows, stats, strict=True)
            ),
        ),
        30,
    )
    assert set(results.acked) == set(range(600)) and set(results.acked.values()) == {1}
    assert all(results.values[i] == str(2 * i).encode() for i in range(600))
    assert queue.acked == queue.pulled == queue.delivered == 600 and not queue.dead_letters and queue.stray_acks == 0
    assert overreads == []
    records = {r.name: r for r in queue.records}
    for w, s in zip(windows, stats, strict=True):
        assert records[f"w{w}"].window == w and 1 <= records[f"w{w}"].peak_held <= w, records[f"w{w}"]
        assert 1 <= s.peak_held <= w and s.nacked == 0
    assert sum(s.acked for s in stats) == 600
    assert records["w16"].acked > records["w1"].acked, "more room, more work"


async def test_a_greedy_worker_granting_credit_without_acking_gets_no_more_than_its_window(hub: Any) -> None:
    queue, dial = await hub(str(i).encode() for i in range(100))
    peer = await dial()
    sink = peer.remote_sink("jobs", window=rx.Manual(3))  # the window is the request's initial n: 3
    replies = sink.replies
    assert replies is not None
    replies.request(500)  # credit for far more
    await eventually(lambda: replies.buffered == 3)
    for _ in range(20):
        await asyncio.sleep(0)
    assert replies.buffered == 3 and queue.held == 3 and queue.pulled == 3, "nothing past the window"
    first = Job.from_payload(await replies.next())
    assert (first.id, first.deliveries) == (0, 1)
    await sink.send(ack(first.id))
    await eventually(lambda: replies.buffered == 3)  # one acknowledged, one more sent
    assert queue.pulled == 4 and queue.acked == 1
    await sink.aclose()


async def test_the_jobs_of_a_worker_that_disconnects_go_to_another_with_their_delivery_count(hub: Any) -> None:
    results = Results()
    queue, dial = await hub((str(i).encode() for i in range(50)), on_result=results)
    quitter, sink, jobs = await taking(dial, 4)
    held = [Job.from_payload(await jobs.next()) for _ in range(4)]
    await quitter.close()  # gone, with four jobs unacknowledged

    seen: dict[int, int] = {}

    def record(job: Job) -> bytes:
        seen[job.id] = job.deliveries
        return b"done"

    worker = await dial()
    await asyncio.wait_for(asyncio.gather(queue.join(), work(worker, "jobs", record, window=2)), 20)
    assert sorted(seen) == list(range(50)) and set(results.acked.values()) == {1}
    assert {seen[job.id] for job in held} == {2}, "redelivered, and the worker can tell"
    assert all(seen[i] == 1 for i in seen if i not in {job.id for job in held})
    assert queue.redelivered == 4 and not queue.dead_letters
    assert next(r for r in queue.records if r.window == 4).failed == 4


async def test_a_worker_that_does_not_acknowledge_in_time_is_dropped_and_its_jobs_redelivered(hub: Any) -> None:
    results = Results()
    queue, dial = await hub((str(i).encode() for i in range(20)), ack_timeout=0.3, on_result=results)
    _, _, jobs = await taking(dial, 2)  # a stuck worker
    await jobs.next()  # takes a job and never answers
    worker = await dial()
    await asyncio.wait_for(asyncio.gather(queue.join(), work(worker, "jobs", lambda job: b"ok", window=4)), 20)
    assert sorted(results.acked) == list(range(20)) and set(results.acked.values()) == {1}
    dropped = await ending_error(jobs)
    assert dropped.code == ACK_TIMEOUT and "no acknowledgement within 0.3 s" in dropped.message
    assert queue.redelivered == 2


async def test_a_job_that_fails_more_than_k_times_goes_to_the_dead_letters(hub: Any) -> None:
    results = Results()
    jobs = [b"1", b"2", b"poison", b"3"]
    queue, dial = await hub(jobs, max_failures=2, on_result=results)

    def handle(job: Job) -> bytes:
        if job.data == b"poison":
            raise ValueError(f"cannot digest it (delivery {job.deliveries})")
        return job.data

    peers = [await dial(), await dial()]
    stats = await asyncio.wait_for(
        asyncio.gather(queue.join(), *(work(p, "jobs", handle, window=2) for p in peers)), 20
    )
    assert sorted(results.acked) == [0, 1, 3]
    (letter,) = queue.dead_letters
    assert letter.job.id == 2 and letter.job.data == b"poison" and letter.job.deliveries == 3
    assert len(letter.errors) == 3 and all("ValueError: cannot digest it" in e for e in letter.errors)
    assert sum(s.nacked for s in stats[1:]) == 3


async def test_a_worker_answering_nonsense_is_refused_and_its_jobs_redelivered(hub: Any) -> None:
    results = Results()
    queue, dial = await hub((str(i).encode() for i in range(10)), on_result=results)
    _, sink, jobs = await taking(dial, 2)  # a rogue worker
    await jobs.next()
    await sink.send(ack(9999))  # a job it never had: ignored
    await sink.send(b"not a receipt")
    refused = await ending_error(jobs)
    assert refused.code == ErrorCode.INVALID and '{"ack": id}' in refused.message
    worker = await dial()
    await asyncio.wait_for(asyncio.gather(queue.join(), work(worker, "jobs", lambda job: b"ok")), 20)
    assert sorted(results.acked) == list(range(10)) and queue.stray_acks == 1


async def test_a_failing_source_ends_the_queue_and_a_late_worker_is_told_it_is_over(hub: Any) -> None:
    def jobs() -> Iterator[bytes]:
        yield b"a"
        yield b"b"
        raise OSError("the job list is unreadable")

    queue, dial = await hub(jobs())
    worker = await dial()
    with pytest.raises(rx.RemoteError, match="the queue's source failed"):
        await asyncio.wait_for(work(worker, "jobs", lambda job: b"ok", window=1), 10)
    with pytest.raises(OSError, match="unreadable"):
        await queue.join()

    done_queue, dial_done = await hub([b"x"])
    w1 = await dial_done()
    assert (await asyncio.wait_for(work(w1, "jobs", lambda job: b"ok"), 10)).acked == 1
    late = await dial_done()
    assert (await asyncio.wait_for(work(late, "jobs", lambda job: b"ok"), 10)).acked == 0
    assert done_queue.finished


def test_the_queue_and_work_check_their_arguments() -> None:
    router = rx.Router()
    for bad in ({"max_failures": -1}, {"ack_timeout": 0}, {"max_window": 0}):
        with pytest.raises(ValueError):
            WorkQueue([], **bad).serve(router, "jobs")
    with pytest.raises(ValueError, match="window"):
        asyncio.run(work(None, "jobs", lambda job: None, window=0))  # type: ignore[arg-type]


REPO = Path(__file__).resolve().parents[2]


async def test_four_worker_processes_ten_thousand_jobs_one_killed_midway(tmp_path: Path) -> None:
    """Every job acknowledged exactly once, none lost; what was done twice is counted and
    bounded by the killed worker's window; no worker ever held more than its window."""
    count, window, kill_after = 10_000, 16, 3_000
    results: Counter[int] = Counter()
    wrong: list[int] = []
    procs: dict[str, asyncio.subprocess.Process] = {}
    killed: list[str] = []
    state: dict[str, WorkQueue] = {}
    everyone = asyncio.Event()

    def on_result(job: Job, result: rx.Payload) -> None:
        results[job.id] += 1
        if result.data != hashlib.sha256(job.data).hexdigest().encode():
            wrong.append(job.id)
        if sum(results.values()) == kill_after:  # midway: the busiest worker dies, holding jobs
            live = [r for r in state["queue"].records if r.ended is None]
            victim = max(live, key=lambda r: r.acked)
            procs[victim.name].send_signal(signal.SIGKILL)
            killed.append(victim.name)

    async def jobs() -> AsyncIterator[bytes]:
        await everyone.wait()  # the four are connected: they all take part
        for i in range(count):
            yield b"job %d" % i

    router = rx.Router()
    queue = state["queue"] = WorkQueue(jobs(), on_result=on_result).serve(router, "jobs")
    server = await rx.serve_tcp(router)
    url = f"tcp://127.0.0.1:{server.port}"
    try:
        for i in range(4):
            procs[f"w{i}"] = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.nodes", "worker", url, "--name", f"w{i}", "--window", str(window),
                "--log", str(tmp_path / f"w{i}.log"), cwd=REPO, stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
        await eventually(lambda: queue.workers == 4, timeout=60, what="four workers connected")
        everyone.set()
        await asyncio.wait_for(queue.join(), 120)
        outputs = {name: await asyncio.wait_for(proc.communicate(), 30) for name, proc in procs.items()}
    finally:
        for proc in procs.values():
            if proc.returncode is None:
                proc.kill()
        await server.close()

    (victim,) = killed
    assert procs[victim].returncode == -signal.SIGKILL
    # every job acknowledged exactly once, none lost, each with its right result
    assert set(results) == set(range(count)) and set(results.values()) == {1} and wrong == []
    assert queue.acked == count and not queue.dead_letters
    # work done twice: jobs the victim processed whose ack never reached the hub
    processed: Counter[int] = Counter()
    by_worker = {name: [int(line) for line in (tmp_path / f"{name}.log").read_text().split()] for name in procs}
    for ids in by_worker.values():
        processed.update(ids)
    duplicates = sum(n - 1 for n in processed.values())
    assert set(processed) == set(range(count))
    assert 1 <= queue.redelivered <= window, "the victim held jobs when it died; they were redelivered"
    assert duplicates <= queue.redelivered, (duplicates, queue.redelivered)
    print(f"victim {victim}: redelivered {queue.redelivered}, processed twice {duplicates}")
    assert all(i in by_worker[victim] for i, n in processed.items() if n > 1), "only the victim's jobs were redone"
    # each worker held at most its window: as the hub saw it, and as the survivors saw it
    records = {r.name: r for r in queue.records}
    assert {r.window for r in records.values()} == {window}
    assert all(1 <= r.peak_held <= window for r in records.values())
    assert records[victim].failed == queue.redelivered and records[victim].ended is not None
    assert "lost" in records[victim].ended
    for name, (out, _err) in outputs.items():
        if name != victim:
            assert procs[name].returncode == 0
            stats = json.loads(out)
            assert 1 <= stats["peak_held"] <= window and stats["acked"] == records[name].acked > 0


async def test_a_dead_letter_in_a_lost_workers_hands_does_not_end_the_queue_early(hub: Any) -> None:
    results = Results()
    queue, dial = await hub([b"x", b"y"], max_failures=1, on_result=results)
    first, sink, jobs = await taking(dial, 3)
    x, y = Job.from_payload(await jobs.next()), Job.from_payload(await jobs.next())
    await sink.send(rx.Payload(b"", request_metadata(None, {"nack": y.id, "error": "no"})))
    again = Job.from_payload(await jobs.next())
    assert (again.id, again.deliveries) == (y.id, 2)  # y failed once: back, to the one with room
    await first.close()  # lost holding x (1st delivery) and y (2nd): y is now dead, x goes back
    await eventually(lambda: queue.dead_letters != [])
    assert not queue.finished, "x is still to be done"
    second = await dial()
    await asyncio.wait_for(asyncio.gather(queue.join(), work(second, "jobs", lambda job: b"ok")), 10)
    assert list(results.acked) == [x.id] and [d.job.id for d in queue.dead_letters] == [y.id]


def test_ack_timeout_measures_the_worker_not_a_job_waiting_in_its_window() -> None:
    """Virtual time, memory transport: a worker answering one job every 0.1 s with 4 in its
    window is never dropped by a 0.25 s ack timeout (its 4th job waits 0.4 s); one that stops
    answering is dropped 0.25 s after its last answer."""

    async def main() -> None:
        router = rx.Router()
        queue = WorkQueue((b"%d" % i for i in range(12)), ack_timeout=0.25).serve(router, "jobs")
        a, b = memory_pair()
        server, client = Peer(b, Role.SERVER, router=router), Peer(a, Role.CLIENT)

        async def slowly(job: Job) -> bytes:
            await asyncio.sleep(0.1)
            return b"ok"

        stats = await asyncio.wait_for(work(client, "jobs", slowly, window=4), 60)
        await asyncio.wait_for(queue.join(), 1)
        assert stats.acked == 12 and queue.redelivered == 0 and stats.peak_held == 4

        stuck_router = rx.Router()
        WorkQueue([b"1", b"2"], ack_timeout=0.25).serve(stuck_router, "jobs")
        c, d = memory_pair()
        stuck_server, stuck = Peer(d, Role.SERVER, router=stuck_router), Peer(c, Role.CLIENT)
        sink = stuck.remote_sink("jobs", window=rx.Manual(2))
        assert sink.replies is not None
        loop = asyncio.get_running_loop()
        job = Job.from_payload(await sink.replies.next())
        await asyncio.sleep(0.2)
        await sink.send(ack(job.id))  # progress at 0.2 s: the clock starts again
        answered = loop.time()
        dropped = await ending_error(sink.replies)
        assert dropped.code == ACK_TIMEOUT
        assert 0.25 <= loop.time() - answered <= 0.3
        for peer in (client, server, stuck, stuck_server):
            await peer.close()

    run_in_virtual_time(main)
