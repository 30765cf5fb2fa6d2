"""The hub side of the work-queue protocol, whichever store holds the jobs.

A worker opens a request-channel and answers each job it gets with ``{"ack": id}`` or
``{"nack": id, "error": "..."}`` (the protocol is in :mod:`.queue`). What a queue does
with the jobs (the in-memory :class:`~rxchannel.fanout.WorkQueue`, or the one on
JetStream in :mod:`rxchannel.nats`) is its own; what is the same on both is here: one
channel per worker, its :class:`WorkerRecord`, the jobs it holds, how its answers are
read, and how its ending is named.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from rxchannel.core import (
    ACK_TIMEOUT,
    ApplicationError,
    ErrorCode,
    MetadataError,
    RemoteProtocolError,
    RxChannelError,
    parse_request_metadata,
)
from rxchannel.runtime.sink import RemoteSink
from rxchannel.runtime.stream import RemoteStream
from rxchannel.runtime.values import Payload

__all__ = [
    "AttachedWorker",
    "Job",
    "QueueRequest",
    "ResultHandler",
    "ServedQueue",
    "WorkerRecord",
    "check_queue_settings",
    "is_count",
]


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
        if not is_count(job) or not is_count(deliveries):
            raise MetadataError('a job needs {"job": id, "deliveries": n} in its metadata: is this a queue route?')
        return cls(int(job), payload.data, int(deliveries))  # type: ignore[arg-type]


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


def is_count(value: Any) -> bool:
    """A job id or a delivery count: an int (not a bool), 0 or more."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


ResultHandler = Callable[[Job, Payload], Awaitable[object] | object]
#: what a queue keeps of a job a worker holds
Held = TypeVar("Held")


class QueueRequest(Protocol):
    """What the queue uses of a :class:`~rxchannel.Request` (a request-channel)."""

    info: dict[str, Any]
    initial_n: int
    inbound: RemoteStream | None

    @property
    def outbound(self) -> RemoteSink: ...


def check_queue_settings(max_failures: int, ack_timeout: float | None, max_window: int) -> None:
    """Raises ValueError for a setting no queue can take."""
    if isinstance(max_failures, bool) or not isinstance(max_failures, int) or max_failures < 0:
        raise ValueError(f"max_failures must be a non-negative integer, got {max_failures!r}")
    if ack_timeout is not None and not ack_timeout > 0:
        raise ValueError(f"ack_timeout must be a positive number of seconds or None, got {ack_timeout!r}")
    if isinstance(max_window, bool) or not isinstance(max_window, int) or max_window < 1:
        raise ValueError(f"max_window must be a positive integer, got {max_window!r}")


class AttachedWorker(Generic[Held]):
    """One worker's channel: its record, its sink, the task serving it, the jobs it holds
    (delivered and not settled yet, by job id) and when it last made progress (an answer,
    or a job given to it while it held none)."""

    __slots__ = ("held", "record", "since", "sink", "task")

    def __init__(self, record: WorkerRecord, sink: RemoteSink, task: asyncio.Task[Any] | None):
        self.record = record
        self.sink = sink
        self.task = task
        self.held: dict[int, Held] = {}
        self.since = 0.0

    def hold(self, job_id: int, job: Held) -> None:
        """``job`` was delivered to it."""
        if not self.held:
            self.since = asyncio.get_running_loop().time()
        self.held[job_id] = job
        self.record.delivered += 1
        self.record.peak_held = max(self.record.peak_held, len(self.held))

    def time_out(self, ack_timeout: float) -> None:
        """It held jobs and answered none for ``ack_timeout``: its stream fails with ERROR
        ``ACK_TIMEOUT`` and its handler, cancelled, hands the jobs back."""
        reason = f"no acknowledgement within {ack_timeout:g} s while holding {len(self.held)} job(s)"
        self.record.ended = reason
        self.sink.fail(ApplicationError(f"{reason}: your jobs went to other workers", ACK_TIMEOUT))
        if self.task is not None:
            self.task.cancel()


Worker = TypeVar("Worker", bound=AttachedWorker[Any])


class ServedQueue(Generic[Worker]):
    """A queue's workers, each served by :meth:`handle` on its channel.

    A subclass says what a worker is (:meth:`_attach`), what starts it and what its
    leaving does (:meth:`_started`, :meth:`_detached`), and what an answer does
    (:meth:`_acked`, :meth:`_nacked`).
    """

    def __init__(
        self,
        max_failures: int,
        ack_timeout: float | None,
        max_window: int,
        on_result: ResultHandler | None,
        history: int,
    ):
        """The settings both queues take, with the meanings their docstrings give."""
        check_queue_settings(max_failures, ack_timeout, max_window)
        self.max_failures = max_failures
        self.ack_timeout = ack_timeout
        self.max_window = max_window
        self.on_result = on_result
        self._workers: list[Worker] = []
        self._names = itertools.count(1)
        self._finished = asyncio.Event()
        self.records: deque[WorkerRecord] = deque(maxlen=history)

    @property
    def finished(self) -> bool:
        """No job is left: each was acknowledged or dead-lettered (or, in memory, the source failed;
        on JetStream, only once the queue is sealed)."""
        return self._finished.is_set()

    @property
    def workers(self) -> int:
        """Workers attached (to this hub) now."""
        return len(self._workers)

    @property
    def held(self) -> int:
        """Jobs the attached workers hold: delivered, and not yet settled."""
        return sum(len(w.held) for w in self._workers)

    async def handle(self, request: QueueRequest) -> None:
        """Serve one worker's channel: jobs out within its window, its answers in."""
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
        worker = self._attach(record, sink)
        failed, reason = True, "its stream ended"
        try:
            await self._started(worker)
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
            await self._detached(worker, reason, failed=failed)
            if not sink.done.done():
                sink.complete()  # no more jobs for it

    def _attach(self, record: WorkerRecord, sink: RemoteSink) -> Worker:
        """The new worker, in ``_workers``."""
        raise NotImplementedError

    async def _started(self, worker: Worker) -> None:
        """Anything that must run before its answers are read."""

    async def _detached(self, worker: Worker, reason: str, *, failed: bool) -> None:
        """It is gone (``failed``: not by leaving cleanly): its jobs go back."""
        raise NotImplementedError

    async def _receipt(self, worker: Worker, item: Payload) -> None:
        try:
            _, info = parse_request_metadata(item.metadata)
        except RemoteProtocolError:
            info = {}
        if "ack" in info:
            await self._acked(worker, info["ack"], item)
        elif "nack" in info:
            self._nacked(worker, info["nack"], f"{worker.record.name}: {str(info.get('error', 'failed'))[:300]}")
        else:
            raise ApplicationError(
                'a worker answers each job with {"ack": id} (data: the result) or {"nack": id, "error": "..."} '
                "in its metadata's JSON entry",
                ErrorCode.INVALID,
            )

    async def _acked(self, worker: Worker, job_id: Any, result: Payload) -> None:
        raise NotImplementedError

    def _nacked(self, worker: Worker, job_id: Any, error: str) -> None:
        raise NotImplementedError

    async def _report(self, job: Job, result: Payload) -> None:
        """``on_result``, awaited if it returns an awaitable."""
        if self.on_result is not None:
            outcome = self.on_result(job, result)
            if inspect.isawaitable(outcome):
                await outcome
