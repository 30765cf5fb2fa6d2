"""ReactiveX facade: remote streams as Observables whose demand is set by operators.

reactivex has no backpressure, so demand is explicit here. A :class:`DemandObservable`
is a cold Observable that emits only what its demand allows; the operators in
:mod:`rxchannel.operators` (``windowed``, ``request_n``, ``limit_rate``, ``adaptive``,
``stop_and_wait``) set that demand, and for a remote stream it crosses the wire as
RSocket credit. With no operator the demand is a bounded default window.

When is an item consumed (freeing its credit)?

* by default, when the downstream ``on_next`` returns: with synchronous operators (map,
  filter, scan, buffer_with_count, ...) that is when the whole chain has processed it, so
  a ``filter`` that drops an item does not leak its credit;
* with ``acks=`` (an Observable of counts), when the sink says so: an asynchronous sink
  (a file writer) emits how many upstream items it has finished with. The sink's acks
  must count *upstream* items (1 per item through a ``map``).

Hot Observables have no demand to honour: :func:`~rxchannel.operators.on_backpressure_buffer`,
``..._drop`` and ``..._latest`` turn them into demand sources with an explicit, bounded
overflow policy. A :class:`DemandObservable` is also an async iterable, so it can be the
source of a remote stream or channel, pulled only as the peer grants credit.

The operating system's streams (:mod:`.pipes`): ``through(argv)``, a subprocess as a
transform stage; ``from_reader``, an ``asyncio.StreamReader`` as a demand source;
``RxWriterSink``, an ``asyncio.StreamWriter`` whose demand follows ``drain()``.

Everything runs on the asyncio event loop (use reactivex's ``AsyncIOScheduler`` for
time-based operators); nothing blocks the loop.
"""

from __future__ import annotations

from .files import RxFileSink, file_source
from .local import BufferOverflowError, from_async_iterable, from_hot, from_iterable
from .observable import Demand, DemandObservable, to_async_iterable
from .pipes import RxWriterSink, from_reader, through
from .remote import fire_and_forget, request_channel, request_response, request_stream
from .shared import balance, share_demand
from .sinks import RxChannel, RxRemoteSink, channel, inbound, outbound, remote_sink

__all__ = [
    "BufferOverflowError",
    "Demand",
    "DemandObservable",
    "RxChannel",
    "RxFileSink",
    "RxRemoteSink",
    "RxWriterSink",
    "balance",
    "channel",
    "file_source",
    "fire_and_forget",
    "from_async_iterable",
    "from_hot",
    "from_iterable",
    "from_reader",
    "inbound",
    "outbound",
    "remote_sink",
    "request_channel",
    "request_response",
    "request_stream",
    "share_demand",
    "through",
    "to_async_iterable",
]
