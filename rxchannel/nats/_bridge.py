"""Bridges between RSocket streams and JetStream that keep demand end to end.

* :func:`stream_to_jetstream` — a remote stream into a JetStream subject: the stream's
  window is the publisher's, and an item frees its credit once JetStream stored it, so a
  stream that stores slowly (or is full, with ``discard: new``) slows the remote source.
* :func:`jetstream_handler` — a stream route served from a JetStream consumer: the
  requester's REQUEST_N becomes a pull request for exactly that many, so a slow requester
  slows nothing but its own consumer.

Chained (a file stream → JetStream → a requester), the first source reads at most what
the last consumer consumed plus the windows on the way: the requester's, the stream's
capacity (``max_msgs``/``max_bytes`` with ``discard: new``), the publisher's, and the
source stream's (``tests/nats/test_jetstream_bridge.py`` measures it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nats.aio.client import Client
from nats.js.api import ConsumerConfig

from rxchannel.core import ApplicationError, Window
from rxchannel.operators import request_n
from rxchannel.reactive import outbound
from rxchannel.runtime import Request, Requester

from ._sink import Published, Publisher
from ._source import ConsumerTarget, JetStreamSource
from ._wire import JetStreamError

__all__ = ["jetstream_handler", "stream_to_jetstream"]


async def stream_to_jetstream(
    peer: Requester,
    route: str,
    nc: Client,
    subject: str,
    data: bytes = b"",
    *,
    info: dict[str, Any] | None = None,
    window: int = 16,
    ordered: bool = True,
    end_marker: bool = True,
    timeout: float = 5.0,
) -> Published:
    """Request ``route`` from ``peer`` and publish its items to ``subject``, keeping demand.

    At most ``window`` items are in flight from the peer or not yet stored by JetStream: an
    item's credit goes back to the peer once JetStream stored it. Items keep their metadata
    (the ``Rxc-Metadata`` header). With ``end_marker`` the end of the stream (or its error,
    with its code and message) is published too, so a reader of the subject ends there.

    Returns:
        what was stored.

    Raises:
        RemoteError / ConnectionLostError: the remote stream failed (after the error marker
            was published).
        JetStreamError: JetStream refused the messages (the remote stream is cancelled).
    """
    publisher = Publisher(nc, subject, window=window, ordered=ordered, timeout=timeout)
    await publisher.start()
    stream = peer.request_stream(route, data, info=info, window=Window(window), auto_ack=False)
    open_ = [True]

    def stored(n: int) -> None:
        if open_[0]:
            stream.ack(n)  # JetStream has it: the peer may send one more

    publisher.on_stored(stored)
    try:
        async for item in stream:
            await publisher.publish(item)
        await publisher.flush()
    except BaseException as exc:
        open_[0] = False
        await stream.aclose()
        if isinstance(exc, Exception) and not publisher.done.done():
            await publisher.fail(exc, end_marker=end_marker)
        else:
            await publisher.aclose()
        raise
    open_[0] = False
    return await publisher.finish(end_marker=end_marker)


def jetstream_handler(
    nc: Client,
    stream: str | Callable[[Request], str],
    *,
    consumer: str | None = None,
    subject: str | Callable[[Request], str | None] | None = None,
    config: ConsumerConfig | None = None,
    create: bool = True,
    expires: float = 5.0,
    max_bytes: int | None = None,
) -> Callable[[Request], None]:
    """A request-stream handler that serves a JetStream consumer with the requester's demand.

    Each REQUEST_N of the requester is one pull request for that many messages; a message
    is acked in JetStream once it was handed to the requester's connection (its ``on_next``
    returned). The stream completes at an ``Rxc-End`` marker (a bridged stream's end) and
    fails with the error such a marker carries; a requester's CANCEL hands back the
    messages not sent. Messages keep their RSocket metadata.

    ``stream`` and ``subject`` may be functions of the request (a route prefix serving one
    stream per name). With ``consumer=None`` each request reads through its own ephemeral
    consumer (its own cursor: a broadcast); with a durable name the requests share it (a
    work queue without per-job answers).
    """

    def handle(request: Request) -> None:
        name = stream(request) if callable(stream) else stream
        filter_subject = subject(request) if callable(subject) else subject
        # a consumer made here has no max_ack_pending of its own: the requester's credit bounds it
        # (a requester's window may grow past its initial n: "auto")
        made = config if config is not None else ConsumerConfig(max_ack_pending=-1)
        target = ConsumerTarget(name, consumer, filter_subject, made, create)
        sink = outbound(request)
        source = JetStreamSource(nc, target, expires=expires, max_bytes=max_bytes)
        source.pipe(request_n(sink.demand)).subscribe(
            on_next=sink.on_next, on_error=lambda error: sink.on_error(_refusal(error)), on_completed=sink.on_completed
        )

    return handle


def _refusal(error: Exception) -> Exception:
    """What the requester sees: JetStream's refusals (no such stream...) say why; others stay generic."""
    if isinstance(error, JetStreamError):
        return ApplicationError(str(error))
    return error
