"""What a JetStream work queue keeps in JetStream: its stream and shared consumer, made if
missing, and its dead letters (a job with its deliveries and errors in headers).

The queue's serving side (demand, verdicts, timers) is :mod:`._queue`.
"""

from __future__ import annotations

import json

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import APIError, NotFoundError

from rxchannel.fanout import Job

from ._wire import JetStreamError, check_name

__all__ = [
    "CONSUMER",
    "consumer_done",
    "count_jobs",
    "dead_letter_headers",
    "ensure_stream_and_consumer",
    "is_sealed",
    "queue_names",
    "read_dead_letters",
]

#: the durable pull consumer every hub serving the queue shares
CONSUMER = "workers"
_STREAM_NAME_IN_USE = 10058


def queue_names(name: str) -> tuple[str, str]:
    """(stream, subject prefix) of queue ``name`` (ValueError for a name :func:`._wire.check_name` refuses)."""
    check_name(name, "a queue name")
    return f"RXC_QUEUE_{name}", f"rxchannel.queue.{name}"


async def ensure_stream_and_consumer(
    js: JetStreamContext,
    name: str,
    stream: str,
    subjects: list[str],
    jobs_subject: str,
    *,
    ack_wait: float,
    replicas: int,
    max_jobs: int | None,
) -> ConsumerInfo:
    """Make queue ``name``'s work-queue stream and shared consumer if missing; the consumer's info.

    Raises:
        JetStreamError: JetStream is not enabled, or refused the stream or the consumer.
    """
    try:
        try:
            await js.stream_info(stream)
        except NotFoundError:
            config = StreamConfig(
                name=stream,
                subjects=subjects,
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
                num_replicas=replicas,
                max_msgs=max_jobs if max_jobs is not None else -1,
            )
            try:
                await js.add_stream(config)
            except APIError as exc:
                if exc.err_code != _STREAM_NAME_IN_USE:  # another hub made it meanwhile
                    raise
        try:
            info: ConsumerInfo = await js.consumer_info(stream, CONSUMER)
            return info
        except NotFoundError:
            consumer = ConsumerConfig(
                durable_name=CONSUMER,
                filter_subject=jobs_subject,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=ack_wait,
                max_deliver=-1,  # the hubs count failures themselves and dead-letter
                max_ack_pending=-1,  # the hubs enforce every worker's window
                max_waiting=4096,  # one open pull request per worker, across the hubs
            )
            info = await js.add_consumer(stream, consumer)
            return info
    except APIError as exc:
        raise JetStreamError(f"queue {name!r}: {exc.description}", exc.err_code or 0) from None
    except Exception as exc:
        raise JetStreamError(f"queue {name!r}: JetStream did not answer ({exc!r}); is it enabled (-js)?") from None


def dead_letter_headers(stream: str, seq: int, deliveries: int, errors: list[str]) -> dict[str, str]:
    """The headers of job ``seq``'s dead letter (its data is the job's)."""
    return {
        "Rxc-Job": str(seq),
        "Rxc-Deliveries": str(deliveries),
        "Rxc-Errors": json.dumps([" ".join(e.split()) for e in errors])[:2000],
        "Nats-Msg-Id": f"dead-{stream}-{seq}",  # two hubs dead-lettering it keep one copy
    }


async def read_dead_letters(js: JetStreamContext, stream: str, subject: str) -> list[Job]:
    """Every dead letter of the queue in ``stream`` (``id``: the job's sequence; ``deliveries``: how many it had)."""
    found: list[Job] = []
    seq = 1
    while True:
        try:
            raw = await js.get_msg(stream, seq, subject=subject, next=True)
        except NotFoundError:
            return found
        headers = raw.headers or {}
        found.append(Job(int(headers.get("Rxc-Job", 0)), raw.data or b"", int(headers.get("Rxc-Deliveries", 0))))
        seq = int(raw.seq or seq) + 1


async def is_sealed(js: JetStreamContext, stream: str, subject: str) -> bool:
    """The queue's seal is in the stream: no more jobs will come."""
    try:
        await js.get_last_msg(stream, subject)
    except NotFoundError:
        return False
    return True


async def consumer_done(js: JetStreamContext, stream: str) -> bool:
    """The shared consumer has nothing left to deliver and nothing delivered unanswered.

    The consumer's view, not the stream's message count: a nats-server killed without
    flushing its store can come back with messages its consumer had already seen acked.
    """
    info = await js.consumer_info(stream, CONSUMER)
    return not (info.num_pending or info.num_ack_pending)


async def count_jobs(js: JetStreamContext, stream: str, subject: str) -> int:
    """Jobs in the stream now (not acked yet, wherever they are)."""
    info = await js.stream_info(stream, subjects_filter=subject)
    return int((info.state.subjects or {}).get(subject, 0))
