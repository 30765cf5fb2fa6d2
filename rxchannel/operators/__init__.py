"""Backpressure operators: demand for remote streams and hot sources, reactivex style.

Each returns a function ``Observable -> Observable`` for ``.pipe(...)`` and checks its
arguments when built. The demand operators (``windowed``, ``stop_and_wait``,
``limit_rate``, ``adaptive``, ``request_n``) go right after a demand source: a remote
stream from :mod:`rxchannel.reactive`, or an ``on_backpressure_*`` operator on a hot Observable.
Their policies are the core's (:mod:`rxchannel.core`), so they behave exactly like the
``window=`` of the async-iteration API.

Marble diagrams show items (letters), REQUEST_N sent upstream (``r(n)``) and the moment
an item is consumed (``^``).

The fan-out operators (``share_demand``, ``balance``) also go after a demand source and
return one, shared by their subscribers: each subscriber's own demand is then set by the
operator after them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from reactivex import Observable, abc

from ._adaptive import adaptive_
from ._balance import balance_
from ._limit_rate import limit_rate_
from ._observe_on import observe_on_
from ._on_backpressure import on_backpressure_buffer_, on_backpressure_drop_, on_backpressure_latest_
from ._request_n import request_n_
from ._share_demand import share_demand_
from ._windowed import windowed_

__all__ = [
    "adaptive",
    "balance",
    "limit_rate",
    "observe_on",
    "on_backpressure_buffer",
    "on_backpressure_drop",
    "on_backpressure_latest",
    "request_n",
    "share_demand",
    "stop_and_wait",
    "windowed",
]

T = TypeVar("T")
Operator = Callable[[Observable[T]], Observable[T]]


def windowed(size: int, *, refill: int | None = None, acks: Observable[int] | None = None) -> Operator[T]:
    """Keep at most ``size`` items in flight (granted, not yet consumed).

    ::

        upstream:  r(4) a b c d ---------- r(2) e f ----
                           ^ ^            (consumed)
        windowed(4, refill=2)

    Args:
        size: the window, in items.
        refill: grant more once this many slots are free (default a quarter of ``size``).
        acks: an Observable of counts from an asynchronous sink; items then count as
            consumed when acknowledged, not when ``on_next`` returns.

    **The rule**: an item is consumed when the downstream ``on_next`` returns. Operators
    that hand items to another scheduler or thread (reactivex's ``observe_on``,
    ``delay``, ``buffer_with_time``...) return at once, so the window no longer bounds
    what piles up behind them: change schedulers with :func:`observe_on` from this
    module, or acknowledge with ``acks=``.

    Raises:
        ValueError: ``size`` < 1 or ``refill`` outside 1..size.
    """
    return windowed_(size, refill=refill, acks=acks)


def stop_and_wait(*, acks: Observable[int] | None = None) -> Operator[T]:
    """One item at a time: the next is requested when the previous is consumed (``windowed(1)``).

    ::

        upstream:  r(1) a ---- r(1) b ---- r(1) c |
                          ^          ^          ^
    """
    return windowed_(1, acks=acks)


def limit_rate(high: int, low: int | None = None, *, acks: Observable[int] | None = None) -> Operator[T]:
    """Request ``high`` items, then top up to ``high`` whenever ``low`` remain in flight.

    Fewer, larger REQUEST_N frames than ``windowed``::

        upstream:  r(8) a b c d e f ------ r(6) g h ...
        limit_rate(8, 2)   (6 consumed, 2 left in flight: top up by 6)

    Raises:
        ValueError: not ``0 <= low < high``.
    """
    return limit_rate_(high, low, acks=acks)


def adaptive(
    initial: int = 4, *, max_window: int = 1 << 16, max_bytes: int = 64 << 20, acks: Observable[int] | None = None
) -> Operator[T]:
    """A window tuned from the measured round-trip time and consumption rate.

    Aims at 1.5x the bandwidth-delay product seen by the consumer, growing while the
    window limits throughput and following the consumer down when it slows; bounded by
    ``max_window`` items and ``max_bytes`` of average-sized items. No latency needs to be
    known in advance (see :class:`rxchannel.core.Adaptive`).
    """
    return adaptive_(initial, max_window=max_window, max_bytes=max_bytes, acks=acks)


def request_n(demand: Observable[int], *, acks: Observable[int] | None = None) -> Operator[T]:
    """Grant exactly what ``demand`` emits (manual ``request(n)``); nothing is requested before.

    ::

        demand:    --3---------2------
        upstream:  --r(3) a b c r(2) d e

    A count ``n <= 0`` is delivered to the subscriber as an error (Reactive Streams 3.9).
    """
    return request_n_(demand, acks=acks)


def observe_on(scheduler: abc.SchedulerBase) -> Operator[T]:
    """Deliver on ``scheduler`` (a thread pool, the asyncio loop...) and keep the demand.

    reactivex's own ``observe_on`` returns from ``on_next`` as soon as the item is queued
    for the other scheduler, so the item counts as consumed at once and the demand above
    no longer bounds anything (a ``windowed(8)`` let ~300 items pile up in its queue).
    This one acknowledges each item only when the scheduler has delivered it downstream,
    so at most the window is in flight, whatever the scheduler's speed::

        source.pipe(windowed(8), observe_on(ThreadPoolScheduler(4)), ops.map(work))

    Put it right after the demand operator (which must not take ``acks=``). The rule in
    general: an item is consumed when ``on_next`` returns; any operator that hands items
    to another scheduler or thread returns early, so switch schedulers with this.

    Raises:
        TypeError: not right after a demand source, or the demand operator has ``acks=``.
    """
    return observe_on_(scheduler)


def on_backpressure_buffer(
    capacity: int, overflow: str = "error", *, on_drop: Callable[[T], object] | None = None
) -> Operator[T]:
    """Make a hot Observable a demand source by buffering at most ``capacity`` items.

    ``overflow``: ``"error"`` (fail with BufferOverflowError), ``"drop_oldest"`` or
    ``"drop_latest"`` when the buffer is full and nobody is asking::

        hot:       a b c d e f
        buffer(2, "drop_oldest") with demand 1 after f:  emits e then f

    ``on_drop`` is called with each item dropped (on the thread that emitted it), so every
    item is either delivered or accounted for. The hot source may emit from any thread:
    items are taken under a lock and handed to the event loop safely.

    Raises:
        ValueError: a negative capacity or an unknown overflow policy.
    """
    return on_backpressure_buffer_(capacity, overflow, on_drop)


def on_backpressure_drop(*, on_drop: Callable[[T], object] | None = None) -> Operator[T]:
    """Pass hot items only while demand is waiting for one; drop the rest (``on_drop`` sees them)::

    hot:      a b c d e
    demand:   ^     ^          -> emits a, d
    """
    return on_backpressure_drop_(on_drop)


def on_backpressure_latest(*, on_drop: Callable[[T], object] | None = None) -> Operator[T]:
    """Keep only the most recent undelivered hot item (``on_drop`` sees those it replaces)::

    hot:      a b c d e
    demand:   ^       ^        -> emits a, d... then the latest when asked
    """
    return on_backpressure_latest_(on_drop)


def share_demand(max_lag: int, *, patience: float = 1.0, join_window: float = 0.0) -> Operator[T]:
    """Broadcast a demand source to every subscriber, reading each item once.

    The source is pulled when a subscriber asks for an item nobody has yet, and never
    more than ``max_lag`` items past the slowest attached subscriber: the fast are paced
    by the slow, and ``max_lag`` items is all it keeps. A subscriber that has held the
    others back at that edge for ``patience`` seconds in total is detached: its
    ``on_error`` gets :class:`~rxchannel.runtime.LaggedError` (with ``.position``, the
    items it had); the others go on. Subscribers join while the first item is still kept
    (``join_window`` seconds at least); a later one gets
    :class:`~rxchannel.runtime.JoinedLateError`. Each subscriber's demand is the operator
    after it (``windowed``, ``acks=``); the operator before sets how far the shared source
    may read ahead of these pulls.

    ::

        source:   a   b   c   d   e   f          (read once)
        fast:     a   b   c  ....wait.... d      max_lag=3: d waits for slow to take a
        slow:     a ------------------- b c...   (or, past patience: slow -x LaggedError)

    Raises:
        ValueError: ``max_lag`` < 1, ``patience`` not finite and >= 0, ``join_window`` < 0.
    """
    return share_demand_(max_lag, patience=patience, join_window=join_window)


def balance() -> Operator[T]:
    """Share a demand source among subscribers, each item to exactly one: the first that
    asks for it with demand to take it (work goes to whoever is ready).

    ::

        source:    a b c d e
        w1 (window 2, slow):  a b ---------- e
        w2 (window 1, fast):      c d

    An item a subscriber took is its own: disposing of it with items unprocessed loses
    them (use :meth:`rxchannel.Router.queue` for redelivery across processes).
    """
    return balance_()
