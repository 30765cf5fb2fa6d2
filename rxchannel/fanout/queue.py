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
import inspect
import itertools
import logging
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from rxchannel.core import (
    ACK_TIMEOUT,
    ApplicationError,
    ErrorCode,
    Interaction,
    MetadataError,
    RemoteProtocolError,
    RxChannelError,
    parse_request_metadata,
    request_metadata,
)
from rxchannel.runtime.router import Router
from rxchannel.runtime.sink import RemoteSink
from rxchannel.runtime.stream import RemoteStream
from rxchannel.runtime.values import Payload, as_payload

__all__ = ["ACK_TIMEOUT", "DeadLetter", "Job", "WorkQueue", "WorkerRecord"]

log = logging.getLogger("rxchannel.queue")


@dataclass(frozen=True, slots=True)
class Job:
    """One job as a worker receives it."""

    id: int
    data: bytes
    deliveries: int  # 1 on the first delivery; more means it was redelivered

    @classmethod
    def from_payload(cls, payload: Payload) -> Job:
        """Parse a job the hub sent.

        Raises:
            MetadataError: the item has no ``{"job", "deliveries"}`` entry (not a job queue's item).
        """
        _, info = parse_request_metadata(payload.metadata)
        job, deliveries = info.get("job"), info.get("deliveries")
        if not _is_count(job) or not _is_count(deliveries):
            raise MetadataError('a job needs {"job": id, "deliveries": n} in its metadata: is this a queue route?')
        return cls(int(job), payload.data, int(deliveries))  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A job that failed more than ``max_failures`` times, with why each time."""

    job: Job
    errors: tuple[str, ...]


@dataclass(slots=True)
class WorkerRecord:
    """What the hub saw of one worker (``peak_held`` never exceeds ``window``)."""

    name: str
    window: int
    delivered: int = 0
    acked: int = 0
    failed: int = 0
    peak_held: int = 0
    ended: str | None = None


@dataclass(slots=True)
class _Entry:
    id: int
    data: bytes
    deliveries: int = 0
    errors: list[str] = field(default_factory=list)


class _Worker:
    __slots__ = ("record", "since", "sink", "task", "unacked")

    def __init__(self, record: WorkerRecord, sink: RemoteSink, task: asyncio.Task[Any] | None):
        self.record = record
        self.sink = sink
        self.task = task
        self.unacked: dict[int, _Entry] = {}
        #: when it last made progress (an answer, or a job given to it while it held none)
        self.since = 0.0

    @property
    def room(self) -> int:
        if self.sink.done.done():
            return 0
        return min(self.sink.credit, self.record.window - len(self.unacked))


class QueueRequest(Protocol):
    """What the queue uses of a :class:`~rxchannel.Request` (a request-channel)."""

    info: dict[str, Any]
    initial_n: int
    inbound: RemoteStream | None

    @property
    def outbound(self) -> RemoteSink: ...


ResultHandler = Callable[[Job, Payload], Awaitable[object] | object]
Source = Iterable[Any] | AsyncIterable[Any]


class WorkQueue:
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
        if isinstance(max_failures, bool) or not isinstance(max_failures, int) or max_failures < 0:
            raise ValueError(f"max_failures must be a non-negative integer, got {max_failures!r}")
        if ack_timeout is not None and not ack_timeout > 0:
            raise ValueError(f"ack_timeout must be a positive number of seconds or None, got {ack_timeout!r}")
        if isinstance(max_window, bool) or not isinstance(max_window, int) or max_window < 1:
            raise ValueError(f"max_window must be a positive integer, got {max_window!r}")
        self._source = source
        self._items: Iterator[Any] | AsyncIterator[Any] | None = None
        self.max_failures = max_failures
        self.ack_timeout = ack_timeout
        self.max_window = max_window
        self.on_result = on_result
        self._ids = itertools.count()
        self._retry: deque[_Entry] = deque()
        self._workers: list[_Worker] = []
        self._source_done = False
        self._pulling = False
        self._error: BaseException | None = None
        self._changed = asyncio.Event()
        self._finished = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._names = itertools.count(1)
        self.pulled = self.delivered = self.acked = self.redelivered = self.stray_acks = 0
        self.dead_letters: list[DeadLetter] = []
        self.records: deque[WorkerRecord] = deque(maxlen=history)

    # ------------------------------------------------------------ state

    @property
    def finished(self) -> bool:
        """Every job was acknowledged or dead-lettered (or the source failed)."""
        return self._finished.is_set()

    @property
    def workers(self) -> int:
        """Workers attached now."""
        return len(self._workers)

    @property
    def held(self) -> int:
        """Jobs delivered and not yet acknowledged, across the workers."""
        return sum(len(w.unacked) for w in self._workers)

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

    async def handle(self, request: QueueRequest) -> None:
        """Serve one worker's channel: jobs out within its window, acknowledgements in."""
        sink = request.outbound
        inbound = request.inbound
        name = str(request.info.get("name") or f"worker-{next(self._names)}")[:64]
        window = max(1, min(request.initial_n, self.max_window))
        record = WorkerRecord(name, window)
        self.records.append(record)
        if inbound is None or self.finished:
            record.ended = "the queue was already done"
            sink.complete()
            if inbound is not None:
                async for _ in inbound:  # a worker completes its half once it sees ours end
                    pass
            return
        worker = _Worker(record, sink, asyncio.current_task())
        sink.on_credit(lambda _n: self._kick())
        self._workers.append(worker)
        self._kick()
        failed, reason = True, "its stream ended"
        try:
            async for item in inbound:
                await self._receipt(worker, item)
            failed, reason = False, "left"
        except asyncio.CancelledError:  # an ack timeout, or the connection closing (which cancels its tasks)
            lost = sink.done.exception() if sink.done.done() else None
            reason = record.ended or (f"lost ({lost})" if lost is not None else "cancelled")
            raise
        except ApplicationError as exc:
            reason = exc.message
            worker.sink.fail(exc)
        except RxChannelError as exc:
            reason = f"lost ({exc})"
        finally:
            self._workers.remove(worker)
            record.ended = reason
            self._hand_back(worker, reason, failed=failed)
            if not sink.done.done():
                sink.complete()  # no more jobs for it
            self._check_done()
            self._kick()

    async def _receipt(self, worker: _Worker, item: Payload) -> None:
        try:
            _, info = parse_request_metadata(item.metadata)
        except RemoteProtocolError:
            info = {}
        if "ack" in info:
            entry = self._take(worker, info["ack"])
            if entry is None:
                return
            worker.since = asyncio.get_running_loop().time()
            self.acked += 1
            worker.record.acked += 1
            self._kick()
            if self.on_result is not None:
                result = self.on_result(Job(entry.id, entry.data, entry.deliveries), item)
                if inspect.isawaitable(result):
                    await result
            self._check_done()
        elif "nack" in info:
            entry = self._take(worker, info["nack"])
            if entry is None:
                return
            worker.since = asyncio.get_running_loop().time()
            worker.record.failed += 1
            self._failed(entry, f"{worker.record.name}: {str(info.get('error', 'failed'))[:300]}")
            self._check_done()
            self._kick()
        else:
            raise ApplicationError(
                'a worker answers each job with {"ack": id} (data: the result) or {"nack": id, "error": "..."} '
                "in its metadata's JSON entry",
                ErrorCode.INVALID,
            )

    def _take(self, worker: _Worker, job_id: Any) -> _Entry | None:
        entry = worker.unacked.pop(job_id, None) if _is_count(job_id) else None
        if entry is None:
            self.stray_acks += 1
        return entry

    def _hand_back(self, worker: _Worker, reason: str, *, failed: bool) -> None:
        """The worker is gone: its unacknowledged jobs go back to the front of the queue."""
        entries = list(worker.unacked.values())
        worker.unacked.clear()
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
        if not worker.unacked:
            worker.since = asyncio.get_running_loop().time()
        if self.ack_timeout is not None and self._timer is None:
            self._timer = asyncio.get_running_loop().call_at(worker.since + self.ack_timeout, self._check_timeouts)
        worker.unacked[entry.id] = entry
        self.delivered += 1
        record = worker.record
        record.delivered += 1
        record.peak_held = max(record.peak_held, len(worker.unacked))

    def _check_timeouts(self) -> None:
        """Workers that held jobs and answered none for ``ack_timeout`` are dropped; their jobs go to others."""
        assert self.ack_timeout is not None
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        earliest = None
        for worker in list(self._workers):
            if not worker.unacked:
                continue
            deadline = worker.since + self.ack_timeout
            if deadline <= now:
                reason = f"no acknowledgement within {self.ack_timeout:g} s while holding {len(worker.unacked)} job(s)"
                worker.record.ended = reason
                worker.sink.fail(ApplicationError(f"{reason}: your jobs went to other workers", ACK_TIMEOUT))
                if worker.task is not None:
                    worker.task.cancel()  # its handler hands the jobs back
            elif earliest is None or deadline < earliest:
                earliest = deadline
        if earliest is not None:
            self._timer = loop.call_at(earliest, self._check_timeouts)

    def _check_done(self) -> None:
        if self.finished or not self._source_done or self._retry or self._pulling:
            return
        if any(worker.unacked for worker in self._workers):
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


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
