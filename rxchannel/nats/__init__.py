"""NATS JetStream under rxchannel's demand: sources, sinks, bridges, the hub's queue and broadcast.

Optional: ``pip install 'rxchannel[nats]'`` (nats-py); nothing else in rxchannel imports it.
Demand maps onto JetStream one to one:

* **a source** (:func:`jetstream_source`) is a demand Observable and an async iterable of
  :class:`Message` s: each grant of its demand is a pull request for exactly that many
  (never more delivered than granted), a message is acked when consumed (or by ``acks=``,
  which also takes :class:`Nak`, :class:`Term` and :class:`InProgress` verdicts), and a
  consumer made here has the window as its ``max_ack_pending``;
* **a sink** (:func:`jetstream_sink`) is an Observer with ``demand``: at most ``window``
  publishes not yet stored by the server, so a slow or full stream slows its source;
* **bridges** (:func:`stream_to_jetstream`, :func:`jetstream_handler`): a remote stream into
  JetStream and JetStream out to a requester, demand kept end to end;
* **the hub's work queue** (:class:`JetStreamQueue`, and :class:`JetStreamRoutes` behind
  ``rxchannel serve --nats``): jobs in a work-queue stream, served by any number of hubs to
  workers running the unchanged :func:`rxchannel.runtime.work`;
* **broadcast** (:func:`broadcast_file`, :func:`broadcast_source`, ``broadcast/<topic>``):
  a stream per shared file or topic, a consumer per reader.
"""

from __future__ import annotations

from ._bridge import jetstream_handler, stream_to_jetstream
from ._broadcast import broadcast_file, broadcast_names, broadcast_source, ensure_broadcast
from ._hub import JetStreamRoutes, connect_jetstream
from ._message import InProgress, Message, Nak, Term
from ._queue import JetStreamQueue, queue_names
from ._sink import JetStreamSink, Published, Publisher, jetstream_sink
from ._source import ConsumerTarget, JetStreamPull, JetStreamSource, jetstream_source
from ._wire import JetStreamError

__all__ = [
    "ConsumerTarget",
    "InProgress",
    "JetStreamError",
    "JetStreamPull",
    "JetStreamQueue",
    "JetStreamRoutes",
    "JetStreamSink",
    "JetStreamSource",
    "Message",
    "Nak",
    "Published",
    "Publisher",
    "Term",
    "broadcast_file",
    "broadcast_names",
    "broadcast_source",
    "connect_jetstream",
    "ensure_broadcast",
    "jetstream_handler",
    "jetstream_sink",
    "jetstream_source",
    "queue_names",
    "stream_to_jetstream",
]
