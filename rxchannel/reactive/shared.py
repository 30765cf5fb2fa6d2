"""One demand source, many subscribers: every item to all of them (broadcast) or to one (balance).

Both subscribe to their source once and pull it only on their subscribers' demand; each
subscriber's demand is set, as for any demand source, by the operator after it
(``windowed``, ``request_n``, ``acks=``). The source's own demand (the operator before)
bounds how far it reads ahead of these pulls.

* :func:`share_demand` — a :class:`~rxchannel.runtime.Broadcast`: every subscriber gets
  every item, read once; the newest item is never more than ``max_lag`` ahead of the
  slowest attached subscriber; a laggard is detached with
  :class:`~rxchannel.runtime.LaggedError` once it has held the others back for
  ``patience`` seconds in total.
* :func:`balance` — each item goes to exactly one subscriber: the one that has waited
  longest among those with demand to take it (Akka's ``Balance``, in turn). A subscriber
  with no demand is skipped, so work flows to those ready for it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, Generic, TypeVar

from rxchannel.core import ReplenishPolicy
from rxchannel.fanout import Broadcast, JoinedLateError
from rxchannel.fanout.broadcast import check_broadcast
from rxchannel.runtime.ahead import Ahead

from .local import LocalPull
from .observable import DemandObservable, PullStream

__all__ = ["balance", "share_demand"]

T = TypeVar("T")


def share_demand(
    source: DemandObservable[T], max_lag: int, *, patience: float = 1.0, join_window: float = 0.0
) -> DemandObservable[T]:
    """``source`` broadcast to every subscriber, read once (see the module docstring).

    Subscribers that subscribe before the first item is dropped share one subscription
    to ``source``; a later one gets :class:`~rxchannel.runtime.JoinedLateError` as its
    ``on_error`` (never a stream with its beginning missing). Once every subscriber is
    gone the source is disposed; the next subscriber starts a new broadcast.

    Raises:
        ValueError: bad ``max_lag``, ``patience`` or ``join_window`` (checked now).
    """
    check_broadcast(max_lag, patience, join_window)
    current: list[Broadcast[T]] = []

    def opener(policy: ReplenishPolicy | None, auto_ack: bool) -> PullStream[T]:
        if not current or current[0].closed:
            current[:] = [
                Broadcast(
                    source,
                    max_lag=max_lag,
                    patience=patience,
                    join_window=join_window,
                    name=f"share_demand({source.description})",
                )
            ]
        try:
            subscription = current[0].subscribe()
        except JoinedLateError as exc:
            return LocalPull(_failing(exc), policy, auto_ack)
        return LocalPull(subscription, policy, auto_ack)

    return DemandObservable(opener, description=f"share_demand({source.description}, max_lag={max_lag})")


async def _failing(error: BaseException) -> AsyncIterator[Any]:
    raise error
    yield  # pragma: no cover - makes this an async generator


class _Balancer(Generic[T]):
    """One subscription to the source, shared; at most one item read ahead of every member's demand.

    Members that have demand queue for items in the order they asked (``queue``): the
    longest waiting takes the next one, so ready members share the work in turn.
    """

    def __init__(self, source: AsyncIterable[T]):
        self._source = source
        self._ahead: Ahead[T] | None = None
        self._fetch: asyncio.Task[None] | None = None
        self.members: set[_BalancedPull[T]] = set()
        self.queue: deque[_BalancedPull[T]] = deque()
        self.closed = False

    def join(self, policy: ReplenishPolicy | None, auto_ack: bool) -> _BalancedPull[T]:
        member = _BalancedPull(self, policy, auto_ack)
        self.members.add(member)
        return member

    def ensure_fetch(self) -> None:
        """Read the next item ahead (one at most: :class:`~rxchannel.runtime.ahead.Ahead`), so
        that the end is found without demand; members wait for it, none of them reads."""
        if self._ahead is None:
            self._ahead = Ahead(self._source.__aiter__())
        ahead = self._ahead
        if not ahead.holding and not ahead.ended and self._fetch is None and not self.closed:
            self._fetch = asyncio.get_running_loop().create_task(self._fetch_one(ahead))

    async def _fetch_one(self, ahead: Ahead[T]) -> None:
        try:
            await ahead.fill(catch=True)  # a failure is the end every member sees
        finally:
            self._fetch = None
            self.changed()

    @property
    def has_item(self) -> bool:
        return self._ahead is not None and self._ahead.holding

    @property
    def exhausted(self) -> bool:
        return self._ahead is not None and self._ahead.exhausted

    def take(self) -> T:
        assert self._ahead is not None
        item = self._ahead.take()
        self.ensure_fetch()
        return item

    def end(self) -> BaseException:
        error = self._ahead.error if self._ahead is not None else None
        return error if error is not None else StopAsyncIteration()

    def changed(self) -> None:
        for member in self.members:
            member.wake.set()

    async def leave(self, member: _BalancedPull[T]) -> None:
        self.members.discard(member)
        if member in self.queue:
            self.queue.remove(member)
            self.changed()  # the next in line may take what it waited for
        if not self.members and not self.closed:
            self.closed = True  # the last one out disposes the source; an unclaimed item ahead is dropped
            fetch, self._fetch = self._fetch, None
            if fetch is not None:
                fetch.cancel()
                await asyncio.gather(fetch, return_exceptions=True)
            if self._ahead is not None:
                await self._ahead.aclose()


class _BalancedPull(LocalPull[T]):
    """One member's pull: takes the shared next item when its own demand allows and its turn comes."""

    def __init__(self, balancer: _Balancer[T], policy: ReplenishPolicy | None, auto_ack: bool):
        super().__init__(None, policy, auto_ack)
        self._balancer = balancer

    async def next(self) -> T:
        balancer, demand = self._balancer, self.demand
        demand.wants_next(self._loop.time())  # with auto-ack: done with the items taken before
        while True:
            if self._closed:
                raise StopAsyncIteration
            balancer.ensure_fetch()
            queue = balancer.queue
            if demand.can_receive:
                if self not in queue:
                    queue.append(self)
                if balancer.has_item and queue[0] is self:
                    queue.popleft()
                    demand.take(1, self._loop.time())
                    item = balancer.take()
                    balancer.changed()  # the next in line
                    return item
            if balancer.exhausted:
                if self in queue:
                    queue.remove(self)
                demand.end()
                raise balancer.end()
            self.wake.clear()
            await self.wake.wait()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self.demand.end()
            self.wake.set()
            await self._balancer.leave(self)


def balance(source: DemandObservable[T]) -> DemandObservable[T]:
    """``source`` shared by its subscribers, each item to exactly one of them (see the module docstring).

    An item taken by a subscriber belongs to it: one that is disposed with items it has not
    processed loses them (for at-least-once delivery across processes use
    :meth:`rxchannel.Router.queue`). Once every subscriber is gone the source is disposed;
    the next subscriber starts over.
    """
    current: list[_Balancer[T]] = []

    def opener(policy: ReplenishPolicy | None, auto_ack: bool) -> PullStream[T]:
        if not current or current[0].closed:
            current[:] = [_Balancer(source)]
        return current[0].join(policy, auto_ack)

    return DemandObservable(opener, description=f"balance({source.description})")
