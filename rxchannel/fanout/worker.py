"""The worker's side of a work queue (:meth:`rxchannel.Router.queue`): take jobs, answer each."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from rxchannel.core import Window, request_metadata
from rxchannel.runtime.sink import RemoteSink
from rxchannel.runtime.values import Payload, as_payload

from .queue import Job

__all__ = ["WorkerStats", "work"]


@dataclass(slots=True)
class WorkerStats:
    """What :func:`work` did: jobs acknowledged and nacked, and the most it held at once."""

    acked: int = 0
    nacked: int = 0
    peak_held: int = 0


class _Requester(Protocol):
    def remote_sink(
        self, route: str | None, data: bytes = b"", *, info: dict[str, Any] | None = None, window: Any = None
    ) -> RemoteSink: ...


async def work(
    peer: _Requester,
    route: str,
    handler: Callable[[Job], Any],
    *,
    window: int = 8,
    name: str | None = None,
    stats: WorkerStats | None = None,
) -> WorkerStats:
    """Take jobs from a queue route until the hub says it is done; answer each one.

    ``handler(job)`` (sync or async) returns the result (``bytes``, ``str``,
    ``Payload`` or None), sent back as the job's ack; an exception it raises is sent as a
    nack (the hub redelivers the job, up to its ``max_failures``). Jobs are handled one
    at a time; at most ``window`` are held (received and not yet answered), and the hub
    enforces that too. Leaving early (an exception, cancellation) ends the channel so the
    hub hands the held jobs to others.

    Returns:
        the counts (also kept in ``stats`` as they change, if given).

    Raises:
        RemoteError / ConnectionLostError: the hub failed the channel or went away.
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a positive number of jobs, got {window!r}")
    stats = stats if stats is not None else WorkerStats()
    info = {"name": name} if name else None
    sink = peer.remote_sink(route, info=info, window=Window(window))
    jobs = sink.replies
    assert jobs is not None
    try:
        async for payload in jobs:  # pulling the next job frees the credit of the one answered
            stats.peak_held = max(stats.peak_held, jobs.buffered + 1)
            job = Job.from_payload(payload)
            try:
                result = handler(job)
                if inspect.isawaitable(result):
                    result = await result
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"[:500]
                reply = Payload(b"", request_metadata(None, {"nack": job.id, "error": error}))
                stats.nacked += 1
            else:
                data = as_payload(result).data if result is not None else b""
                reply = Payload(data, request_metadata(None, {"ack": job.id}))
                stats.acked += 1
            await sink.send(reply)
    except BaseException:
        await sink.aclose()
        raise
    sink.complete()
    return stats
