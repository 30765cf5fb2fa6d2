"""Work balanced by demand: jobs go to whichever worker has room, at least once.

Hub side, ``queue = WorkQueue(source).serve(router, "jobs")``; worker side,
``await work(peer, "jobs", handler, window=8)`` (:mod:`.worker`).

A worker opens a request-channel on the route. Hub to worker: jobs, each one PAYLOAD whose
metadata's JSON entry is ``{"job": id, "deliveries": n}`` (``n`` is 1 on the first
delivery). Worker to hub: one PAYLOAD per job it is done with, ``{"ack": id}`` (its data
is the result) or ``{"nack": id, "error": "..."}``.

Demand: a worker holds at most its window of unacknowledged jobs. The window is the
initial demand of its request (its ``REQUEST_CHANNEL`` n, capped at ``max_window``); the
hub sends a job only when the worker has credit *and* fewer than its window
unacknowledged, so a worker that grants more credit than it acknowledges still gets no
more. The source is pulled only when a worker has room for the job, never ahead.

Failures: the jobs of a worker that disconnects, fails its stream, or holds jobs and
answers none for ``ack_timeout`` seconds (its stream is then ended with ERROR
:data:`ACK_TIMEOUT`) go back to the front of the queue for the others, as do nacked jobs.
Every such failed delivery is counted; a job that fails more than ``max_failures`` times
goes to :attr:`WorkQueue.dead_letters` instead. A worker that leaves cleanly (completes
its half) hands its unstarted jobs back without counting them as failures. A job can
thus be *processed* twice (a worker killed after doing it, before its ack arrived) but
is *acknowledged* once: :attr:`WorkQueue.acked` and ``on_result`` see each job once.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from rxchannel.core import ACK_TIMEOUT, ApplicationError, Interaction, RxChannelError, request_metadata
from rxchannel.runtime.router import Router
from rxchannel.runtime.sink import RemoteSink
from rxchannel.runtime.values import Payload, as_payload

from .serving import (
    AttachedWorker,
    Job,
    ResultHandler,
    ServedQueue,
    WorkerRecord,
    is_count,
)

__all__ = ["ACK_TIMEOUT", "DeadLetter", "Job", "WorkQueue", "WorkerRecord"]

log = logging.getLogger("rxchannel.queue")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A job that failed more than ``max_failures`` times, with why each time."""

    job: Job
    errors: tuple[str, ...]


@dataclass(slots=True)
class _Entry:
    id: int
    data: bytes
    deliveries: int = 0
    errors: list[str] = field(default_factory=list)


class _Worker(AttachedWorker[_Entry]):
    __slots__ = ()

    @property
    def room(self) -> int:
        if self.sink.done.done():
            return 0
        return min(self.sink.credit, self.record.window - len(self.held))


Source = Iterable[Any] | AsyncIterable[Any]


class WorkQueue(ServedQueue[_Worker]):
    """Jobs from ``source`` for the workers that open a channel on its route (see the module docstring).

    Create with :meth:`rxchannel.Router.queue`. ``await queue.join()`` returns once every
    job was acknowledged or dead-lettered.

    Args:
        source: an iterable or async iterable of jobs (``bytes``, ``str`` or ``Payload``:
            the data is the job; the metadata is the queue's), pulled only when a worker
            has room.
        max_failures: failed deliveries a job may have; one more sends it to ``dead_letters``.
        ack_timeout: seconds a worker holding jobs may go without answering any (None: no
            limit; a worker that disappears is noticed by its connection's keepalive). It
            measures the worker, not one job: a job waiting behind others in its window
            does not time out while the worker answers them.
        max_window: the most jobs one worker may hold, whatever it asks for.
        on_result: called (and awaited, if it returns an awaitable) with each acknowledged
            job and its result, once per job; a slow one slows the acknowledgements of the
            worker that sent it, and so the jobs it gets.
        history: how many :class:`WorkerRecord` s to keep in ``records``.

    Attributes:
        pulled, delivered, acked, redelivered: jobs read from the source, deliveries made,
            jobs acknowledged, deliveries handed back (failed or returned).
        stray_acks: acknowledgements of jobs the sender did not hold (ignored).
        dead_letters: jobs given up on.
        records: the most recent workers' :class:`WorkerRecord` s, attached ones included.
    """

    def __init__(
        self,
        source: Source,
        *,
        max_failures: int = 3,
        ack_timeout: float | None = None,
        max_window: int = 1024,
        on_result: ResultHandler | None = None,
        history: int = 1024,
    ):
        super().__init__(max_failures, ack_timeout, max_window, on_result, history)
        self._source = source
        self._items: Iterator[Any] | AsyncIterator[Any] | None = None
        self._ids = itertools.count()
        self._retry: deque[_Entry] = deque()
        self._source_done = False
        self._pulling = False
        self._error: BaseException | None = None
        self._changed = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.pulled = self.delivered = self.acked = self.redelivered = self.stray_acks = 0
        self.dead_letters: list[DeadLetter] = []

    # ------------------------------------------------------------ state

    @property
    def pending(self) -> int:
        """Jobs waiting to be redelivered."""
        return len(self._retry)

    async def join(self) -> None:
        """Wait until :attr:`finished`.

        Raises:
            Exception: the source's error, if it failed.
        """
        await self._finished.wait()
        if self._error is not None:
            raise self._error

    # ------------------------------------------------------------ one worker (the channel handler)

    def serve(self, router: Router, route: str) -> WorkQueue:
        """Hand this queue's jobs to the workers that open a channel on ``route`` of ``router``
        (workers use :func:`~rxchannel.fanout.work`). Returns the queue itself."""
        router.add(Interaction.CHANNEL, route, self.handle, window=64)  # acknowledgements in flight
        return self

    def _attach(self, record: WorkerRecord, sink: RemoteSink) -> _Worker:
        worker = _Worker(record, sink, asyncio.current_task())
        sink.on_credit(lambda _n: self._kick())
        self._workers.append(worker)
        self._kick()
        return worker

    async def _detached(self, worker: _Worker, reason: str, *, failed: bool) -> None:
        self._hand_back(worker, reason, failed=failed)
        self._check_done()
        self._kick()

    async def _acked(self, worker: _Worker, job_id: Any, result: Payload) -> None:
        entry = self._take(worker, job_id)
        if entry is None:
            return
        worker.since = asyncio.get_running_loop().time()
        self.acked += 1
        worker.record.acked += 1
        self._kick()
        await self._report(Job(entry.id, entry.data, entry.deliveries), result)
        self._check_done()

    def _nacked(self, worker: _Worker, job_id: Any, error: str) -> None:
        entry = self._take(worker, job_id)
        if entry is None:
            return
        worker.since = asyncio.get_running_loop().time()
        worker.record.failed += 1
        self._failed(entry, error)
        self._check_done()
        self._kick()

    def _take(self, worker: _Worker, job_id: Any) -> _Entry | None:
        entry = worker.held.pop(job_id, None) if is_count(job_id) else None
        if entry is None:
            self.stray_acks += 1
        return entry

    def _hand_back(self, worker: _Worker, reason: str, *, failed: bool) -> None:
        """The worker is gone: its unacknowledged jobs go back to the front of the queue."""
        entries = list(worker.held.values())
        worker.held.clear()
        self.redelivered += len(entries)
        if failed:
            worker.record.failed += len(entries)
        for entry in reversed(entries):
            if failed:
                self._failed(entry, f"{worker.record.name}: {reason}")
            else:
                self._retry.appendleft(entry)  # never started: not a failure

    def _failed(self, entry: _Entry, why: str) -> None:
        """``entry`` failed: to the front of the queue again, or past ``max_failures`` to the dead letters."""
        entry.errors.append(why)
        if len(entry.errors) > self.max_failures:
            letter = DeadLetter(Job(entry.id, entry.data, entry.deliveries), tuple(entry.errors))
            self.dead_letters.append(letter)
            log.warning("job %d failed %d times; dead-lettered: %s", entry.id, len(entry.errors), why)
        else:
            self._retry.appendleft(entry)

    # ------------------------------------------------------------ dispatching

    def _kick(self) -> None:
        self._changed.set()
        if self._dispatcher is None and not self.finished:
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch())

    def _roomiest(self) -> _Worker | None:
        best, room = None, 0
        for worker in self._workers:
            r = worker.room
            if r > room:
                best, room = worker, r
        return best

    async def _dispatch(self) -> None:
        try:
            while not self.finished:
                self._changed.clear()
                worker = self._roomiest()
                if worker is None:
                    if not self._workers:
                        return  # nobody to hand jobs to: the next worker starts a dispatcher again
                    await self._changed.wait()
                    continue
                if self._retry:
                    entry = self._retry.popleft()
                elif self._source_done:
                    self._check_done()
                    await self._changed.wait()
                    continue
                else:
                    pulled = await self._pull()
                    if pulled is None:
                        self._check_done()
                        continue
                    entry = pulled
                    if worker not in self._workers or worker.room <= 0:
                        self._retry.appendleft(entry)  # it left while we read: never delivered
                        continue
                self._deliver(worker, entry)
        except Exception as exc:  # the source failed: nothing more can be handed out
            self._error = exc
            log.warning("the work queue's source failed", exc_info=exc)
            for worker in list(self._workers):
                worker.sink.fail(ApplicationError(f"the queue's source failed ({type(exc).__name__})"))
            self._finished.set()
        finally:
            self._dispatcher = None

    async def _pull(self) -> _Entry | None:
        """The next job from the source (None at its end)."""
        if self._items is None:
            source = self._source
            self._items = source.__aiter__() if isinstance(source, AsyncIterable) else iter(source)
        self._pulling = True
        try:
            if isinstance(self._items, AsyncIterator):
                item = await self._items.__anext__()
            else:
                item = next(self._items)
        except (StopIteration, StopAsyncIteration):
            self._source_done = True
            return None
        finally:
            self._pulling = False
        self.pulled += 1
        return _Entry(next(self._ids), as_payload(item).data)

    def _deliver(self, worker: _Worker, entry: _Entry) -> None:
        entry.deliveries += 1
        payload = Payload(entry.data, request_metadata(None, {"job": entry.id, "deliveries": entry.deliveries}))
        try:
            worker.sink.try_send(payload)
        except RxChannelError:  # its stream ended meanwhile: never delivered
            entry.deliveries -= 1
            self._retry.appendleft(entry)
            return
        worker.hold(entry.id, entry)
        self.delivered += 1
        if self.ack_timeout is not None and self._timer is None:
            self._timer = asyncio.get_running_loop().call_at(worker.since + self.ack_timeout, self._check_timeouts)

    def _check_timeouts(self) -> None:
        """Workers that held jobs and answered none for ``ack_timeout`` are dropped; their jobs go to others."""
        assert self.ack_timeout is not None
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        earliest = None
        for worker in list(self._workers):
            if not worker.held:
                continue
            deadline = worker.since + self.ack_timeout
            if deadline <= now:
                worker.time_out(self.ack_timeout)
            elif earliest is None or deadline < earliest:
                earliest = deadline
        if earliest is not None:
            self._timer = loop.call_at(earliest, self._check_timeouts)

    def _check_done(self) -> None:
        if self.finished or not self._source_done or self._retry or self._pulling:
            return
        if any(worker.held for worker in self._workers):
            return
        self._finished.set()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for worker in self._workers:
            worker.sink.complete()  # every job is done: the workers' streams end
        self._changed.set()

    def __repr__(self) -> str:
        return (
            f"<WorkQueue pulled={self.pulled} acked={self.acked} held={self.held} pending={self.pending} "
            f"dead={len(self.dead_letters)} workers={self.workers}{' finished' if self.finished else ''}>"
        )
