"""The hub's work queue on JetStream: the jobs live in a work-queue stream, any number of hubs serve them.

The worker's side is the in-memory queue's, unchanged (:func:`rxchannel.runtime.work`; the
protocol is in :mod:`rxchannel.fanout.queue`): a worker opens a request-channel, gets jobs
with ``{"job": id, "deliveries": n}`` and answers ``{"ack": id}`` or ``{"nack": id, "error"}``.
Here ``id`` is the job's stream sequence and ``n`` JetStream's delivery count.

What JetStream holds, per queue ``NAME`` (stream ``RXC_QUEUE_NAME``, work-queue retention):

* the jobs, on ``rxchannel.queue.NAME.jobs``, read through one durable pull consumer
  (``workers``) that every hub shares: a job is delivered to one hub at a time, and an
  ack removes it from the stream;
* the dead letters, on ``rxchannel.queue.NAME.dead`` (a job with its errors in headers);
* the seal, on ``rxchannel.queue.NAME.sealed``: once it is there and no job is left, the
  queue is finished and every hub completes its workers' channels.

Demand: each worker gets its own pull requests on the shared consumer, each for at most
``min(its credit, its window - the jobs it holds) - what is already asked`` jobs, so a
worker never holds more than its window, and the hub holds nothing that no worker asked
for. A job is acked in JetStream when its worker answers, and its window slot is free
once the server confirmed the ack (so the consumer's ``num_ack_pending`` never exceeds
the sum of the windows of the workers attached).

Failures: a nacked job is nak'ed (JetStream redelivers it at once); the jobs a worker held
when it left or was lost are nak'ed; the jobs a hub held when it died are redelivered by
JetStream after the consumer's ``ack_wait``. While a worker holds a job, its hub tells
JetStream that the job is in progress every quarter of ``ack_wait``, so long jobs are not
redelivered. JetStream counts every delivery; a job delivered more than
``max_failures + 1`` times (a nack, or a worker or hub lost with it, each count once;
so does a job handed back unstarted, which the in-memory queue does not count) goes to
the dead letters instead.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterable, Iterable
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from rxchannel.core import ApplicationError, Interaction, RxChannelError, request_metadata
from rxchannel.fanout import Job, WorkerRecord
from rxchannel.fanout.serving import AttachedWorker, QueueRequest, ResultHandler, ServedQueue
from rxchannel.runtime import Payload, RemoteSink, Router

from ._queue_store import (
    CONSUMER,
    consumer_done,
    count_jobs,
    dead_letter_headers,
    ensure_stream_and_consumer,
    is_sealed,
    queue_names,
    read_dead_letters,
)
from ._sink import Publisher
from ._wire import ACK, NAK, PROGRESS, TERM, Outbox, Puller, ack_info, unsubscribe

__all__ = ["JetStreamQueue", "queue_names"]

log = logging.getLogger("rxchannel.nats.queue")


class _Worker(AttachedWorker[Msg]):
    """``held``: the jobs delivered to it and not settled in JetStream yet, by stream sequence."""

    __slots__ = ("puller", "settling")

    def __init__(self, record: WorkerRecord, sink: RemoteSink, task: asyncio.Task[Any] | None):
        super().__init__(record, sink, task)
        #: those of them answered, whose verdict the server has not confirmed yet
        self.settling: set[int] = set()
        self.puller: Puller | None = None

    @property
    def asked(self) -> int:
        """Jobs asked of JetStream for it and not arrived."""
        return 0 if self.puller is None else self.puller.wanted + self.puller.asked


class JetStreamQueue(ServedQueue[_Worker]):
    """A work queue in JetStream, served to workers by this hub (and by any other hub on it).

    Create it, ``await queue.ensure()`` (makes the stream and the consumer if missing), then
    register :meth:`handle` as a channel handler: :meth:`serve` does both for a route.
    Producers :meth:`publish` jobs (or publish to :attr:`jobs_subject` with any NATS client)
    and :meth:`seal` the queue when no more will come.

    Args:
        nc: a connected NATS client.
        name: the queue (letters, digits, ``_``, ``-``).
        max_failures: deliveries a job may fail; one more sends it to the dead letters.
        ack_wait: seconds JetStream waits for a job's answer before redelivering it, for a
            consumer created here (an existing consumer keeps its own).
        ack_timeout: seconds a worker holding jobs may go without answering any before it is
            dropped (ERROR ``ACK_TIMEOUT``) and its jobs handed back (None: never; a lost
            connection is noticed by its keepalive).
        max_window: the most jobs one worker may hold, whatever it asks for.
        on_result: called (and awaited) with each job a worker acked and its result, before
            the job is acked in JetStream (a hub that dies between the two means the job is
            done again: at least once).
        expires: seconds a pull request waits on the server before it is renewed.
        poll: seconds between the checks of whether the queue is finished (sealed and empty).
        replicas, max_jobs: the stream's replicas and message limit, for a stream created here.
    """

    def __init__(
        self,
        nc: Client,
        name: str,
        *,
        max_failures: int = 3,
        ack_wait: float = 30.0,
        ack_timeout: float | None = None,
        max_window: int = 1024,
        on_result: ResultHandler | None = None,
        expires: float = 2.0,
        poll: float = 0.25,
        replicas: int = 1,
        max_jobs: int | None = None,
        history: int = 1024,
    ):
        super().__init__(max_failures, ack_timeout, max_window, on_result, history)
        if not ack_wait > 0:
            raise ValueError(f"ack_wait must be a positive number of seconds, got {ack_wait!r}")
        self.stream, prefix = queue_names(name)
        self.name = name
        self.jobs_subject = f"{prefix}.jobs"
        self.dead_subject = f"{prefix}.dead"
        self.sealed_subject = f"{prefix}.sealed"
        self._nc = nc
        self._outbox = Outbox(nc)
        self.ack_wait = ack_wait
        self.expires = expires
        self.poll = poll
        self.replicas = replicas
        self.max_jobs = max_jobs
        self._tokens = itertools.count(1)
        #: verdicts sent with a reply subject, waiting for the server's confirmation: token ->
        #: (worker, job, verdict, when)
        self._settling: dict[str, tuple[_Worker, int, bytes, float]] = {}
        self._joiners = 0
        self._confirm_inbox = ""
        self._confirm_sub: Subscription | None = None
        self._ready: asyncio.Task[None] | None = None
        self._timer: asyncio.Task[None] | None = None
        self._sealed = False
        self.delivered = self.acked = self.nacked = self.handed_back = self.stray_acks = self.dead_letters = 0

    # ------------------------------------------------------------ setup

    async def ensure(self) -> None:
        """Make the stream and the shared consumer if they are missing; subscribe to confirmations.

        Raises:
            JetStreamError: JetStream is not enabled, or refused the stream or the consumer.
        """
        if self._ready is None:
            self._ready = asyncio.get_running_loop().create_task(self._setup())
        await asyncio.shield(self._ready)

    async def _setup(self) -> None:
        info = await ensure_stream_and_consumer(
            self._nc.jetstream(),
            self.name,
            self.stream,
            [self.jobs_subject, self.dead_subject, self.sealed_subject],
            self.jobs_subject,
            ack_wait=self.ack_wait,
            replicas=self.replicas,
            max_jobs=self.max_jobs,
        )
        if info.config.ack_wait:
            self.ack_wait = float(info.config.ack_wait)
        self._confirm_inbox = self._nc.new_inbox()
        self._confirm_sub = await self._nc.subscribe(self._confirm_inbox + ".*", cb=self._confirmed)

    def serve(self, router: Router, route: str) -> JetStreamQueue:
        """Register this queue on ``route`` of ``router`` (a request-channel, as ``Router.queue`` does)."""
        router.add(Interaction.CHANNEL, route, self.handle, window=64)  # acknowledgements in flight
        return self

    # ------------------------------------------------------------ producers

    async def publish(self, jobs: Iterable[Any] | AsyncIterable[Any], *, window: int = 256) -> int:
        """Publish ``jobs`` (bytes, str or Payload each: the data is the job) and wait until all
        are stored; returns how many. At most ``window`` are published and not stored at once."""
        await self.ensure()
        publisher = Publisher(self._nc, self.jobs_subject, window=window)
        await publisher.start()
        if isinstance(jobs, AsyncIterable):
            async for job in jobs:
                await publisher.publish(job)
        else:
            for job in jobs:
                await publisher.publish(job)
        return (await publisher.finish()).messages

    async def seal(self) -> None:
        """No more jobs will come: once none is left, the queue is finished on every hub."""
        await self.ensure()
        await self._nc.jetstream().publish(self.sealed_subject, b"")

    # ------------------------------------------------------------ state

    async def join(self) -> None:
        """Wait until the queue is :attr:`finished` (sealed and empty, whichever hub served it)."""
        await self.ensure()
        self._joiners += 1
        try:
            self._start_timer()
            await self._finished.wait()
        finally:
            self._joiners -= 1

    async def remaining(self) -> int:
        """Jobs in the stream now (not acked yet, wherever they are; after a crash of nats-server,
        possibly some it had acked: see :meth:`_check_finished`)."""
        return await count_jobs(self._nc.jetstream(), self.stream, self.jobs_subject)

    async def dead(self) -> list[Job]:
        """The dead letters (``id``: the job's sequence in the queue; ``deliveries``: how many it had)."""
        return await read_dead_letters(self._nc.jetstream(), self.stream, self.dead_subject)

    # ------------------------------------------------------------ one worker

    async def handle(self, request: QueueRequest) -> None:
        """Serve one worker's channel: jobs from JetStream within its window, answers back to JetStream."""
        await self.ensure()
        await super().handle(request)

    def _attach(self, record: WorkerRecord, sink: RemoteSink) -> _Worker:
        worker = _Worker(record, sink, asyncio.current_task())
        worker.puller = Puller(
            self._nc,
            self.stream,
            CONSUMER,
            lambda msg: self._arrived(worker, msg),
            lambda exc: worker.sink.fail(ApplicationError(f"the queue is gone: {exc}")),
            self._outbox,
            expires=self.expires,
        )
        self._workers.append(worker)
        self._start_timer()
        return worker

    async def _started(self, worker: _Worker) -> None:
        assert worker.puller is not None
        await worker.puller.start()
        worker.sink.on_credit(lambda _n: self._refill(worker))
        self._refill(worker)

    async def _detached(self, worker: _Worker, reason: str, *, failed: bool) -> None:
        assert worker.puller is not None
        await worker.puller.close()
        self._hand_back(worker)
        log.debug("worker %s %s (failed=%s)", worker.record.name, reason, failed)

    def _refill(self, worker: _Worker) -> None:
        """Ask JetStream for what the worker has room for and nobody asked yet."""
        if worker.puller is None or worker.sink.done.done() or self.finished:
            return
        asked = worker.asked
        room = min(worker.sink.credit - asked, worker.record.window - len(worker.held) - asked)
        if room > 0:
            worker.puller.want(room)

    def _arrived(self, worker: _Worker, msg: Msg) -> None:
        seq, deliveries = ack_info(msg.reply)
        if deliveries > self.max_failures + 1:
            # its earlier deliveries were lost with their worker or hub: no more tries
            self._dead_letter(msg, seq, deliveries, ["delivered and not answered (a worker or a hub was lost)"])
            self._refill(worker)
            return
        payload = Payload(msg.data, request_metadata(None, {"job": seq, "deliveries": deliveries}))
        if worker.sink.done.done() or worker not in self._workers:
            self._outbox.send(msg.reply, NAK)  # it left meanwhile: never delivered
            self.handed_back += 1
            return
        try:
            worker.sink.try_send(payload)
        except RxChannelError:
            self._outbox.send(msg.reply, NAK)
            self.handed_back += 1
            return
        worker.hold(seq, msg)
        self.delivered += 1

    async def _acked(self, worker: _Worker, job_id: Any, result: Payload) -> None:
        msg = self._answered(worker, job_id)
        if msg is None:
            return
        worker.record.acked += 1
        if self.on_result is not None:
            seq, deliveries = ack_info(msg.reply)
            await self._report(Job(seq, msg.data, deliveries), result)
        self._settle(worker, job_id, msg, ACK)

    def _nacked(self, worker: _Worker, job_id: Any, error: str) -> None:
        msg = self._answered(worker, job_id)
        if msg is None:
            return
        worker.record.failed += 1
        seq, deliveries = ack_info(msg.reply)
        if deliveries > self.max_failures:
            self._dead_letter(msg, seq, deliveries, [error], worker=worker)
        else:
            self.nacked += 1
            self._settle(worker, seq, msg, NAK)

    def _answered(self, worker: _Worker, job: Any) -> Msg | None:
        msg = worker.held.get(job) if isinstance(job, int) and not isinstance(job, bool) else None
        if msg is None or job in worker.settling:
            self.stray_acks += 1
            return None
        worker.since = asyncio.get_running_loop().time()
        return msg

    def _settle(self, worker: _Worker, seq: int, msg: Msg, verdict: bytes) -> None:
        """Send ``verdict`` for a held job; its slot frees once the server confirms."""
        token = str(next(self._tokens))
        worker.settling.add(seq)
        self._settling[token] = (worker, seq, verdict, asyncio.get_running_loop().time())
        self._outbox.send(msg.reply, verdict, f"{self._confirm_inbox}.{token}")

    async def _confirmed(self, msg: Msg) -> None:
        found = self._settling.pop(msg.subject.rsplit(".", 1)[-1], None)
        if found is not None:
            self._release(*found[:3])

    def _release(self, worker: _Worker, seq: int, verdict: bytes) -> None:
        worker.held.pop(seq, None)
        worker.settling.discard(seq)
        if verdict is ACK:
            self.acked += 1
        self._refill(worker)

    def _dead_letter(
        self, msg: Msg, seq: int, deliveries: int, errors: list[str], *, worker: _Worker | None = None
    ) -> None:
        """Copy the job to the dead letters, then terminate it (the copy first: never lost)."""
        headers = dead_letter_headers(self.stream, seq, deliveries, errors)
        self.dead_letters += 1
        if worker is not None:
            worker.settling.add(seq)  # answered: a second answer is a stray
        log.warning(
            "job %d of queue %s was delivered %d times; dead-lettered: %s", seq, self.name, deliveries, errors[-1]
        )

        async def move() -> None:
            try:
                await self._nc.jetstream().publish(self.dead_subject, msg.data, headers=headers)
            except Exception as exc:  # not terminated: JetStream delivers it again, and it is tried here again
                log.warning("dead-lettering job %d failed (%s); it stays in the queue", seq, exc)
                if worker is not None:
                    worker.held.pop(seq, None)
                    worker.settling.discard(seq)
                    self._refill(worker)
                return
            if worker is not None:
                self._settle(worker, seq, msg, TERM)
            else:
                self._outbox.send(msg.reply, TERM)

        asyncio.get_running_loop().create_task(move())

    def _hand_back(self, worker: _Worker) -> None:
        """The worker is gone: the jobs it held and did not answer go back to JetStream."""
        for seq, msg in list(worker.held.items()):
            if seq not in worker.settling:
                self._outbox.send(msg.reply, NAK)
                worker.held.pop(seq)
                worker.record.failed += 1
                self.handed_back += 1

    # ------------------------------------------------------------ timers: in progress, timeouts, finished

    def _start_timer(self) -> None:
        if self._timer is None and not self.finished:
            self._timer = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        """While workers are attached (or someone joins): say the held jobs are in progress,
        drop silent workers, give up on confirmations that never came, see if the queue is done."""
        loop = asyncio.get_running_loop()
        progress_every = self.ack_wait / 4
        last_progress = loop.time()
        try:
            while not self.finished and (self._workers or self._joiners):
                await asyncio.sleep(min(self.poll, progress_every))
                now = loop.time()
                if now - last_progress >= progress_every:
                    last_progress = now
                    for worker in self._workers:
                        for seq, msg in worker.held.items():
                            if seq not in worker.settling:
                                self._outbox.send(msg.reply, PROGRESS)  # still being worked on
                for token, (worker, seq, verdict, since) in list(self._settling.items()):
                    if now - since > self.ack_wait:  # lost with a broken connection: JetStream redelivers
                        del self._settling[token]
                        self._release(worker, seq, verdict)
                if self.ack_timeout is not None:
                    self._check_timeouts(now)
                try:
                    await self._check_finished()
                except Exception as exc:  # JetStream away for a moment: the next tick asks again
                    log.info("queue %s: cannot ask JetStream whether it is finished: %r", self.name, exc)
        finally:
            self._timer = None

    def _check_timeouts(self, now: float) -> None:
        assert self.ack_timeout is not None
        for worker in list(self._workers):
            if worker.held and now - worker.since > self.ack_timeout:
                worker.time_out(self.ack_timeout)

    async def _check_finished(self) -> bool:
        js = self._nc.jetstream()
        if not self._sealed:
            self._sealed = await is_sealed(js, self.stream, self.sealed_subject)
        if not self._sealed or self._settling or not await consumer_done(js, self.stream):
            return False
        self._finished.set()
        for worker in self._workers:
            worker.sink.complete()  # every job is done: the workers' streams end
        return True

    async def close(self) -> None:
        """Stop serving: workers' channels end (their jobs go back to JetStream), timers stop."""
        tasks = [w.task for w in self._workers if w.task is not None and w.task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # their jobs are handed back through the outbox
        if self._timer is not None:
            self._timer.cancel()
        await self._outbox.close()
        sub, self._confirm_sub = self._confirm_sub, None
        await unsubscribe(self._nc, sub, "confirmations")

    def __repr__(self) -> str:
        return (
            f"<JetStreamQueue {self.name} delivered={self.delivered} acked={self.acked} held={self.held} "
            f"dead={self.dead_letters} workers={self.workers}{' finished' if self.finished else ''}>"
        )
