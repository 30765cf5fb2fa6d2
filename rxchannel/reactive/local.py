"""Local demand sources: iterables, async iterables and hot Observables, pulled only on demand."""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

from reactivex import Observable

from rxchannel.core import InboundDemand, ReplenishPolicy, RxChannelError

from .observable import PENDING, DemandObservable, PullStream

__all__ = [
    "BufferOverflowError",
    "HotBuffer",
    "LocalPull",
    "check_overflow",
    "from_async_iterable",
    "from_hot",
    "from_iterable",
]

T = TypeVar("T")


class BufferOverflowError(RxChannelError):
    """A hot source outran its demand and its ``on_backpressure_buffer`` was full (overflow="error")."""


class LocalPull(Generic[T]):
    """Pulls from a local source only within the demand its :class:`InboundDemand` allows.

    The same demand engine as a remote stream (rxchannel.core), without a wire. A
    synchronous iterable is pulled synchronously, a batch at a time (:meth:`try_batch`), so
    an in-process pipeline pays no await per item.

    Completion needs no demand (Reactive Streams §2.9): when demand runs out, the next
    item is pulled and held (at most one ahead of demand) so that the end of a cold
    source is found at once. A hot source is never pulled ahead (a held item would go
    stale under ``latest``); its end is signalled by the :class:`HotBuffer` itself.
    """

    def __init__(
        self,
        items: AsyncIterator[T] | None,
        policy: ReplenishPolicy | None,
        auto_ack: bool,
        *,
        sync: Iterator[T] | None = None,
    ):
        self._items = items
        self._sync = sync
        self._loop = asyncio.get_running_loop()
        self.demand = InboundDemand(policy, auto_ack=auto_ack)
        self._held: Any = PENDING
        self._exhausted = False
        self._wake: asyncio.Event = asyncio.Event()
        self._closed = False
        self._hot = items if isinstance(items, HotBuffer) else None
        if self._hot is not None:
            self._hot.on_end = self._wake.set
        self.demand.start(self._loop.time())

    def _ended(self) -> StopAsyncIteration:
        self.demand.end()
        return StopAsyncIteration()

    def try_batch(self, limit: int = 1024) -> list[T]:
        """The next items of a synchronous source, as many as demand allows now (at most
        ``limit``), or ``PENDING`` when none may be taken.

        Raises:
            StopAsyncIteration: the source has ended (whatever the demand).
        """
        if self._closed or self._sync is None:
            return PENDING  # type: ignore[no-any-return]
        if self._held is PENDING:
            if self._exhausted:
                raise self._ended()
            try:
                self._held = next(self._sync)
            except StopIteration:
                raise self._ended() from None
        taken = self.demand.take(limit, self._loop.time())
        if not taken:
            return PENDING  # type: ignore[no-any-return]
        items = [self._held]
        self._held = PENDING
        for item in itertools.islice(self._sync, taken - 1):
            items.append(item)
        if len(items) < taken:
            self._exhausted = True  # delivered first, then completed
        return items

    async def next(self) -> T:
        while self._sync is not None:
            items = self.try_batch(1)
            if items is not PENDING:
                return items[0]
            if self._closed:
                raise StopAsyncIteration
            self._wake.clear()
            await self._wake.wait()
        assert self._items is not None
        demand = self.demand
        try:
            if self._held is PENDING and self._hot is None:
                self._held = await self._items.__anext__()  # one ahead: finds the end without demand
            while not demand.take(1, self._loop.time()):
                if self._closed:
                    raise StopAsyncIteration
                if self._hot is not None and self._hot.drained:
                    await self._items.__anext__()  # the hot source ended: its end (or error) needs no demand
                self._wake.clear()
                await self._wake.wait()
            if self._held is PENDING:
                item = await self._items.__anext__()
            else:
                item, self._held = self._held, PENDING
        except StopAsyncIteration:
            raise self._ended() from None
        return item

    def ack(self, count: int = 1) -> None:
        if not self._closed and self.demand.ack(count, self._loop.time()):
            self._wake.set()

    def request(self, n: int) -> None:
        self.demand.request(n, self._loop.time())
        self._wake.set()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._held = PENDING
            self.demand.end()
            self._wake.set()
            aclose = getattr(self._items, "aclose", None)
            if aclose is not None:
                await aclose()


def from_async_iterable(factory: Callable[[], AsyncIterable[T]] | AsyncIterable[T]) -> DemandObservable[T]:
    """A demand source over an async iterable (pass a factory for a re-subscribable source)."""

    def opener(policy: ReplenishPolicy | None, auto_ack: bool) -> PullStream[T]:
        items = factory() if callable(factory) else factory
        return LocalPull(_managed(items), policy, auto_ack)

    return DemandObservable(opener, description="async iterable")


async def _managed(items: AsyncIterable[T]) -> AsyncIterator[T]:
    """Iterate ``items``, entering its iterator's context if it has one (aiostream's
    streamers must be iterated inside ``async with``), and close it when done."""
    iterator: Any = items.__aiter__()
    if hasattr(iterator, "__aenter__"):
        async with iterator as entered:
            async for item in entered:
                yield item
        return
    try:
        async for item in iterator:
            yield item
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


def from_iterable(items: Iterable[T]) -> DemandObservable[T]:
    """A demand source over an iterable: each item is taken only when demanded."""

    def opener(policy: ReplenishPolicy | None, auto_ack: bool) -> PullStream[T]:
        return LocalPull(None, policy, auto_ack, sync=iter(items))

    return DemandObservable(opener, description="iterable")


class HotBuffer(Generic[T]):
    """An async iterator over a hot Observable with a bounded buffer and an overflow policy.

    An item arriving while a consumer waits is handed over directly; otherwise it is
    buffered up to ``capacity``, and past that the overflow policy decides: ``"error"``
    fails the stream, ``"drop_oldest"`` evicts the oldest, ``"drop_latest"`` drops the
    newcomer. ``dropped`` counts what was lost.
    """

    OVERFLOWS = ("error", "drop_oldest", "drop_latest")

    def __init__(self, source: Observable[T], capacity: int, overflow: str):
        check_overflow(capacity, overflow)
        self.capacity = capacity
        self.overflow = overflow
        self.dropped = 0
        self._buffer: deque[T] = deque()
        self._waiter: asyncio.Future[T] | None = None
        self._error: BaseException | None = None
        self._done = False
        #: called once the source has ended (a puller waiting for credit learns it needs none)
        self.on_end: Callable[[], object] | None = None
        self._subscription = source.subscribe(on_next=self._on_next, on_error=self._on_error, on_completed=self._end)

    def _on_next(self, item: T) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(item)
            return
        if len(self._buffer) < self.capacity:
            self._buffer.append(item)
        elif self.overflow == "drop_oldest" and self.capacity:
            self._buffer.popleft()
            self._buffer.append(item)
            self.dropped += 1
        elif self.overflow == "error":
            self._on_error(BufferOverflowError(f"a hot source overflowed its buffer of {self.capacity} items"))
            self._subscription.dispose()
        else:
            self.dropped += 1

    def _on_error(self, error: BaseException) -> None:
        self._error = error
        self._end()

    def _end(self) -> None:
        self._done = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(StopAsyncIteration() if self._error is None else self._error)
        if self.on_end is not None:
            self.on_end()

    @property
    def drained(self) -> bool:
        """The source has ended and every buffered item was taken: only its end remains."""
        return self._done and not self._buffer

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        if self._buffer:
            return self._buffer.popleft()
        if self._done:
            if self._error is not None:
                raise self._error
            raise StopAsyncIteration
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            return await self._waiter
        finally:
            self._waiter = None

    async def aclose(self) -> None:
        self._subscription.dispose()
        self._done = True


def check_overflow(capacity: int, overflow: str) -> None:
    if capacity < 0 or overflow not in HotBuffer.OVERFLOWS:
        raise ValueError(
            f"capacity must be >= 0 and overflow one of {HotBuffer.OVERFLOWS}, got {capacity}, {overflow!r}"
        )


def from_hot(source: Observable[T], capacity: int, overflow: str) -> DemandObservable[T]:
    """A demand source over a hot Observable (see :class:`HotBuffer`); used by on_backpressure_*."""

    def opener(policy: ReplenishPolicy | None, auto_ack: bool) -> PullStream[T]:
        return LocalPull(HotBuffer(source, capacity, overflow), policy, auto_ack)

    check_overflow(capacity, overflow)  # arguments are checked when the operator is built
    return DemandObservable(opener, description=f"hot source ({overflow}, {capacity})")
