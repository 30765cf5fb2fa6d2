"""Broadcast on JetStream: a stream per shared file (or topic), one consumer per reader.

The hub's ``share/`` reads a file once for the workers that ask together, in one hub's
memory, and paces them by the slowest (``share_max_lag``). On JetStream the file is
published once into a stream of its own (``RXC_BCAST_<topic>``, limits retention: it
stays there), and every reader has its own consumer, so its cursor is its own: a slow
reader lags by its cursor without holding anyone back, a late one starts from the
beginning, and any hub can serve any reader (``broadcast/<topic>``). What the stream
keeps is bounded by its own limits (``max_bytes``, ``max_age``), not by its readers.
"""

from __future__ import annotations

import os

from nats.aio.client import Client
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import APIError, NotFoundError

from rxchannel.files import CHUNK_SIZE, FileSource

from ._sink import Published, Publisher
from ._source import ConsumerTarget, JetStreamSource
from ._wire import JetStreamError, check_name

__all__ = ["broadcast_file", "broadcast_names", "broadcast_source", "ensure_broadcast"]


def broadcast_names(topic: str) -> tuple[str, str]:
    """(stream, subject) of a broadcast topic (ValueError for a topic :func:`._wire.check_name` refuses)."""
    check_name(topic, "a broadcast topic")
    return f"RXC_BCAST_{topic}", f"rxchannel.broadcast.{topic}"


async def ensure_broadcast(
    nc: Client, topic: str, *, max_bytes: int = -1, max_age: float | None = None, replicas: int = 1
) -> str:
    """Make the topic's stream if it is missing; returns its name.

    Raises:
        JetStreamError: JetStream refused it (not enabled, limits).
    """
    stream, subject = broadcast_names(topic)
    js = nc.jetstream()
    try:
        await js.stream_info(stream)
        return stream
    except NotFoundError:
        pass
    config = StreamConfig(
        name=stream,
        subjects=[subject],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.NEW,  # full: the publisher waits (its readers are never cut short)
        max_bytes=max_bytes,
        max_age=max_age,
        num_replicas=replicas,
    )
    try:
        await js.add_stream(config)
    except APIError as exc:
        if exc.err_code != 10058:  # made meanwhile by another hub
            raise JetStreamError(f"broadcast {topic!r}: {exc.description}", exc.err_code or 0) from None
    return stream


async def broadcast_file(
    nc: Client,
    path: str | os.PathLike[str],
    topic: str,
    *,
    chunk_size: int = CHUNK_SIZE,
    window: int = 32,
    max_bytes: int = -1,
) -> Published:
    """Publish a file into the topic's stream (replacing what it held), as the hub serves a
    file: chunks with the size first and the SHA-256 last in their metadata, then the end.

    The file is read only as JetStream stores it (at most ``window`` chunks not stored).
    """
    stream = await ensure_broadcast(nc, topic, max_bytes=max_bytes)
    _, subject = broadcast_names(topic)
    await nc.jetstream().purge_stream(stream)
    publisher = Publisher(nc, subject, window=window, ordered=True)
    await publisher.start()
    chunks = FileSource(path, chunk_size=chunk_size).__aiter__()
    try:
        async for chunk in chunks:
            await publisher.publish(chunk)
    except BaseException as exc:
        if isinstance(exc, Exception):
            await publisher.fail(exc, end_marker=True)
        else:
            await publisher.aclose()
        raise
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
    return await publisher.finish(end_marker=True)


def broadcast_source(nc: Client, topic: str, *, window: int = 16, expires: float = 5.0) -> JetStreamSource:
    """The topic as a demand source: each subscription reads it from the start through its own
    consumer (deleted when it ends), and completes at the end marker."""
    stream, subject = broadcast_names(topic)
    return JetStreamSource(nc, ConsumerTarget(stream, None, subject), window=window, expires=expires)
