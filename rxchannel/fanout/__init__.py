"""One source, many peers: patterns above single streams that keep demand end to end.

* :mod:`.broadcast` — :class:`Broadcast`: one source read once for many subscribers, paced
  by the slowest attached one within ``max_lag`` (a laggard is detached, never waited for);
* :mod:`.queue` — :class:`WorkQueue`: jobs to whichever worker has room, at least once
  (``WorkQueue(source).serve(router, route)``); :mod:`.worker` — :func:`work`, the worker side;
  :mod:`.serving` — the hub side of the worker protocol, shared with the JetStream queue;
* :mod:`.relay` — :func:`relay`, :func:`forward`: a stream pulled from another peer served
  on, credit chaining across the hops.

Each uses the runtime's stream objects only (``rxchannel.runtime``); nothing here knows a
transport.
"""

from __future__ import annotations

from .broadcast import JOINED_LATE, LAGGED, Broadcast, JoinedLateError, LaggedError, Subscription
from .queue import ACK_TIMEOUT, DeadLetter, Job, WorkerRecord, WorkQueue
from .relay import Relay, forward, relay
from .worker import WorkerStats, work

__all__ = [
    "ACK_TIMEOUT",
    "JOINED_LATE",
    "LAGGED",
    "Broadcast",
    "DeadLetter",
    "Job",
    "JoinedLateError",
    "LaggedError",
    "Relay",
    "Subscription",
    "WorkQueue",
    "WorkerRecord",
    "WorkerStats",
    "forward",
    "relay",
    "work",
]
